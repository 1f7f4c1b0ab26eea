"""QuPath GeoJSON export: every object once, whole, as its exact pixels, with its table row.

A real BBBC039 field segmented by the shipped model in 3 x 3 blocks (objects cut
by block faces), and label arrays written here with holes, pieces, corner
contacts, objects taller than a strip and wider than a chunk, in both NGFF
versions and with z planes.
"""

import gzip
import json
import time

import numpy as np
import pytest
import tifffile
import zarr

from biounet.measure.table import block_part, table_of, write_table
from biounet.plan.outputs import table_path
from biounet.plan.layout import OutputLayout
from biounet.write.geojson import export_geojson
from biounet.write.store import INSTANCES, ArraySpec, OutputStore
from tests.conftest import bbbc039_labels, invoke, run_biounet, single_thread
from tests.measure.test_outline import rasterise, signed_area, square


def features_of(path) -> list[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        collection = json.load(f)
    assert collection["type"] == "FeatureCollection"
    return collection["features"]


def polygons_of(feature) -> list[list[np.ndarray]]:
    geometry = feature["geometry"]
    assert geometry["type"] in ("Polygon", "MultiPolygon")
    coords = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    return [[np.array(ring) for ring in polygon] for polygon in coords]


def table_rows(output) -> dict[int, dict]:
    text = table_path(output).read_text().splitlines()
    header = text[0].split(",")
    return {int(row[0]): dict(zip(header, map(float, row))) for row in (line.split(",") for line in text[1:])}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


def check_export(output, path, labels: np.ndarray, scale: int = 1) -> list[float]:
    """Every object of `labels` exactly once, its polygon rasterised back equal to its pixels
    (the IoU of each), with its table row as measurements."""
    features = features_of(path)
    rows = table_rows(output)
    ids = [f["id"] for f in features]
    assert len(ids) == len(set(ids)) == len(rows) and set(ids) == set(rows) == set(np.unique(labels)[1:].tolist())
    ious = []
    for feature in features:
        i, props = feature["id"], feature["properties"]
        assert props["objectType"] == "detection" and props["name"] == str(i)
        row = rows[i]
        plane = labels[np.unravel_index(int(row["plane"]), labels.shape[:-2])] if labels.ndim > 2 else labels
        if labels.ndim > 2:
            z = int(np.unravel_index(int(row["plane"]), labels.shape[:-2])[-1])
            assert feature["geometry"]["plane"] == {"c": -1, "z": z, "t": 0}
        polys = [[ring / scale for ring in polygon] for polygon in polygons_of(feature)]
        for polygon in polys:
            assert signed_area(polygon[0]) > 0 and all(signed_area(h) < 0 for h in polygon[1:])
        ious.append(iou(rasterise(polys, plane.shape), plane == i))
        m = props["measurements"]
        assert m["Area px"] == row["area_px"] * scale**2
        assert m["Centroid X px"] == pytest.approx((row["centroid_x"] + 0.5) * scale, abs=0.006)
        assert m["Centroid Y px"] == pytest.approx((row["centroid_y"] + 0.5) * scale, abs=0.006)
        assert m["Mean intensity"] == pytest.approx(row["mean_intensity"])
    return ious


# -- a real field, segmented in blocks --------------------------------------------------------


@pytest.fixture(scope="module")
def field(shared_data, tmp_path_factory):
    """A BBBC039 field segmented by the shipped model in 256 px blocks, with --geojson."""
    folder = tmp_path_factory.mktemp("field")
    image = sorted((shared_data / "bbbc039" / "val" / "images").glob("*.tif"))[0]
    slide = folder / "field.tif"
    slide.write_bytes(image.read_bytes())
    with single_thread():
        result = invoke("segment", slide, "--block", "256", "--geojson", "--no-progress")
    assert result.returncode == 0, result.output
    return folder / "field.ome.zarr", folder / "field.geojson", result.output


def test_segment_geojson_every_instance_exact(field):
    output, path, printed = field
    labels = zarr.open_array(str(output), path="labels/instances/0", mode="r")[...]
    ious = check_export(output, path, labels)
    assert len(ious) > 60 and min(ious) == 1.0
    assert f"wrote {path}: {len(ious)} objects" in printed
    # objects across block faces: outlined once, whole
    rows = table_rows(output)
    crossing = [i for i, r in rows.items() if r["bbox_y0"] // 256 != (r["bbox_y1"] - 1) // 256
                or r["bbox_x0"] // 256 != (r["bbox_x1"] - 1) // 256]
    assert len(crossing) >= 5
    feature = next(f for f in features_of(path) if f["id"] == crossing[0])
    assert feature["properties"]["classification"] == {"name": "Nucleus", "color": [255, 64, 64]}


def test_export_geojson_command_gz_and_class_name(field, tmp_path):
    output, path, _ = field
    before = {p: p.stat().st_mtime_ns for p in output.rglob("*")}
    gz = tmp_path / "cells.geojson.gz"
    result = invoke("export-geojson", output, "-o", gz, "--class-name", "Tumour nucleus", "--no-progress")
    assert result.returncode == 0, result.output
    assert result.output.startswith(f"wrote {gz}: ") and "objects/s" in result.output
    plain, packed = features_of(path), features_of(gz)
    assert [f["geometry"] for f in plain] == [f["geometry"] for f in packed]
    assert {f["properties"]["classification"]["name"] for f in packed} == {"Tumour nucleus"}
    assert {p: p.stat().st_mtime_ns for p in output.rglob("*")} == before  # the output is only read
    assert list(tmp_path.iterdir()) == [gz]  # no temporary file left


# -- label arrays written here ----------------------------------------------------------------


def raster_numbered(labels: np.ndarray) -> np.ndarray:
    """Ids renumbered 1..n in raster order of each object's first pixel (planes first), as segment numbers them."""
    ids, first = np.unique(labels.reshape(-1), return_index=True)
    order = ids[ids > 0][np.argsort(first[ids > 0])]
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[order] = np.arange(1, len(order) + 1)
    return lut[labels]


def write_output(path, labels: np.ndarray, block: int, ngff: str = "0.4", params: dict | None = None):
    """A complete output holding `labels` (int32, planes first), written with biounet's writers,
    and its object table (intensity: the label values)."""
    axes = "zyx"[-labels.ndim:]
    layout = OutputLayout(axes, labels.shape, block, {}, ngff, block // 4 if ngff == "0.5" else None)
    store = OutputStore(path, layout, [ArraySpec(INSTANCES, "int32")])
    store.create()
    parts = []
    for b in layout.blocks(0):
        data = labels[b.index_in(axes)]
        store.write(INSTANCES, 0, b, data)
        plane = int(np.ravel_multi_index(b.plane, labels.shape[:-2])) if b.plane else 0
        parts.append(block_part(data, data.astype(np.float64), b.y0, b.x0, plane))
    write_table(table_of(parts, int(labels.max())), table_path(path))
    zarr.open_group(str(path), mode="r+").attrs["biounet"] = {"status": "complete", "params": params or {}}
    return path


def shapes(shared_data) -> np.ndarray:
    """Objects with holes, in pieces, touching at corners, taller than a strip, wider than a
    chunk, next to real nuclei, across chunk faces."""
    labels = np.zeros((260, 330), np.int32)
    nuclei = bbbc039_labels(shared_data, 1, "val")[:150, :180].astype(np.int32)
    labels[40:190, 150:330] = np.where(nuclei > 0, nuclei + 1000, 0)
    square(labels, 50, 50, 30, 1)  # a donut across chunk faces (64) ...
    square(labels, 56, 56, 18, 0)
    square(labels, 60, 60, 10, 1)  # ... with an island of itself in its hole
    square(labels, 62, 62, 3, 0)
    square(labels, 100, 10, 5, 2)  # two pieces touching at a corner
    square(labels, 105, 15, 5, 2)
    labels[130:133, 20:23] = 3  # a pocket closed off by a corner contact
    labels[131, 21] = labels[132, 22] = 0
    labels[5:250, 100:104] = 4  # taller than a strip
    labels[190:196, 5:320] = 5  # wider than several chunks, across a strip face
    labels[140:150, 30:40] = 6  # touching objects
    labels[140:150, 40:50] = 7
    return labels


@pytest.mark.parametrize("ngff", ["0.4", "0.5"])
def test_holes_pieces_and_long_objects_round_trip(shared_data, tmp_path, ngff):
    labels = raster_numbered(shapes(shared_data))
    output = write_output(tmp_path / "shapes.ome.zarr", labels, 64, ngff)  # 0.5: 16 px chunks and strips
    done = export_geojson(output, progress=False)
    assert done.objects == len(np.unique(labels)) - 1 and done.path == tmp_path / "shapes.geojson"
    assert min(check_export(output, done.path, labels)) == 1.0
    by_id = {f["id"]: f for f in features_of(done.path)}
    donut, pieces = by_id[labels[50, 50]], by_id[labels[100, 10]]
    assert donut["geometry"]["type"] == "MultiPolygon" and [len(p) for p in polygons_of(donut)] == [2, 2]
    assert pieces["geometry"]["type"] == "MultiPolygon" and len(polygons_of(pieces)) == 2
    assert [len(p) for p in polygons_of(by_id[labels[130, 20]])] == [2]
    assert by_id[labels[5, 100]]["properties"]["classification"]["name"] == "Object"  # no model, no classes


def test_planes_and_ids_out_of_raster_order(shared_data, tmp_path):
    """A z-stack: QuPath's plane on every geometry. Ids not in raster order (not biounet's
    numbering): the table is sorted in memory instead of streamed, with the same result."""
    flat = raster_numbered(shapes(shared_data))
    stack = raster_numbered(np.stack([flat, np.where(flat[::-1, ::-1] > 0, flat[::-1, ::-1] + flat.max(), 0)]))
    shuffled = np.random.default_rng(1).permutation(int(stack.max())) + 1
    for name, labels in (("ordered", stack), ("shuffled", np.where(stack > 0, shuffled[stack - 1], 0))):
        output = write_output(tmp_path / f"{name}.ome.zarr", labels.astype(np.int32), 64)
        done = export_geojson(output, progress=False)
        assert min(check_export(output, done.path, labels)) == 1.0


def test_level_scaled_to_level_zero(shared_data, tmp_path):
    """A run at pyramid level 1: coordinates and measurements in level-0 pixels of the input."""
    labels = raster_numbered(shapes(shared_data))
    pyramid = tmp_path / "slide.tif"
    with tifffile.TiffWriter(pyramid) as tif:
        tif.write(np.zeros((520, 660), np.uint8), subifds=1)
        tif.write(np.zeros((260, 330), np.uint8), subfiletype=1)
    output = write_output(tmp_path / "slide.ome.zarr", labels, 64, params={"level": 1, "input": str(pyramid)})
    done = export_geojson(output, progress=False)
    assert min(check_export(output, done.path, labels, scale=2)) == 1.0
    pyramid.unlink()
    result = invoke("export-geojson", output, "--overwrite")
    assert result.returncode == 2 and "pyramid level 1" in result.output and result.output.count("\n") == 1


def test_no_objects_gives_an_empty_collection(tmp_path):
    output = write_output(tmp_path / "empty.ome.zarr", np.zeros((2, 100, 90), np.int32), 64)
    done = export_geojson(output, tmp_path / "empty.geojson.gz", progress=False)
    assert done.objects == 0 and features_of(done.path) == []


# -- errors -----------------------------------------------------------------------------------


def test_errors_are_one_line_and_leave_nothing(shared_data, tmp_path):
    labels = raster_numbered(shapes(shared_data))
    output = write_output(tmp_path / "a.ome.zarr", labels, 64)
    cases = [
        ((tmp_path / "missing.ome.zarr",), "not found"),
        ((output, "-o", tmp_path / "no" / "such" / "x.geojson"), "does not exist"),
        ((output, "-o", tmp_path / "x.txt"), "name the GeoJSON file .geojson"),
    ]
    (tmp_path / "a.geojson").write_text("a QuPath export of someone's annotations")
    cases.append(((output,), "exists; pass --overwrite"))
    for args, message in cases:
        result = invoke("export-geojson", *args)
        assert result.returncode == 2 and message in result.output, (args, result.output)
        assert result.output.count("\n") == 1 and result.output.startswith("biounet: error: ")
    assert (tmp_path / "a.geojson").read_text() == "a QuPath export of someone's annotations"
    zarr.open_group(str(output), mode="r+").attrs["biounet"] = {"status": "running", "params": {}}
    result = invoke("export-geojson", output, "-o", tmp_path / "b.geojson")
    assert result.returncode == 2 and "not complete (status running)" in result.output
    # a table that does not belong to the labels: a runtime error, and no file that looks complete
    zarr.open_group(str(output), mode="r+").attrs["biounet"] = {"status": "complete", "params": {}}
    text = table_path(output).read_text().splitlines()
    first = text[1].split(",")
    first[5:9] = ["250", "0", "251", "1"]  # a bounding box where the object is not
    table_path(output).write_text("\n".join([text[0], ",".join(first), *text[2:]]) + "\n")
    result = invoke("export-geojson", output, "-o", tmp_path / "c.geojson")
    assert result.returncode == 1 and "no pixel in labels/instances" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.geojson", "a.objects.csv", "a.ome.zarr"]


def test_usage_errors_answer_fast(tmp_path):
    """A missing output is refused before zarr (or torch) is loaded: about 0.1 s."""
    for _ in range(3):
        start = time.perf_counter()
        result = run_biounet("export-geojson", tmp_path / "missing.ome.zarr")
        took = time.perf_counter() - start
        assert result.returncode == 2 and result.stderr.startswith("biounet: error: output ")
        if took < 1.5:
            return
    raise AssertionError(f"export-geojson took {took:.2f} s to refuse a missing output")


def test_segment_refuses_bad_geojson_before_running(shared_data, tmp_path):
    slide, other = tmp_path / "field.tif", tmp_path / "other.tif"
    slide.write_bytes(sorted((shared_data / "bbbc039" / "val" / "images").glob("*.tif"))[0].read_bytes())
    other.write_bytes(slide.read_bytes())
    (tmp_path / "field.geojson").write_text("{}")
    for args, message in (((slide, "--geojson"), "field.geojson exists; pass --overwrite"),
                          (("--geojson", slide, other), "name the GeoJSON file .geojson"),
                          ((slide, other, "--geojson", tmp_path / "x.geojson"), "--geojson PATH names one file")):
        result = invoke("segment", *args)
        assert result.returncode == 2 and message in result.output, (args, result.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["field.geojson", "field.tif", "other.tif"]
