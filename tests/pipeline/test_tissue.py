"""`segment --tissue`: blocks without tissue are not predicted, and inside the tissue the
result is the one of `--tissue none`, bit for bit.

The slide is real H&E (MoNuSeg tiles) in irregular pieces on glass with noise and dust
(`benchmarks.he_slide`), 1536 x 2048 px in 6 x 8 blocks of 256 px, a tiled TIFF without a
pyramid (the thumbnail is read strip by strip). The model is a hand-set U-Net whose
foreground is dark pixels (hematoxylin: nuclei), so the objects are nuclei-like and the
glass, dust specks included, holds none.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image as PILImage

from benchmarks.common import threshold_model
from benchmarks.he_slide import HESlide
from biounet.pipeline.segment import segment
from biounet.plan.blocks import plan_blocks
from biounet.plan.run import UsageError
from biounet.write.store import OutputError
from tests.conftest import invoke, zarr_arrays

H, W, BLOCK, MARGIN = 1536, 2048, 256, 92
ARGS = {"block": BLOCK, "device": "cpu", "progress": False}
BLOCKS = plan_blocks((), H, W, BLOCK, 16)


@pytest.fixture(scope="module")
def he(tmp_path_factory):
    """The slide's file and where its tissue truly is."""
    slide = HESlide(H, W, tissue=0.35, seed=4)
    path = tmp_path_factory.mktemp("tissue") / "he.tif"
    tifffile.imwrite(path, slide.image(), photometric="rgb", tile=(256, 256), compression="zlib")
    return path, slide.tissue_mask(0, H, 0, W)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return threshold_model(tmp_path_factory.mktemp("model") / "dark.pt", 0.5, {"method": "fixed", "low": 0, "high": 255},
                           in_channels=3, dark=True)


@pytest.fixture(scope="module")
def outputs(he, model, tmp_path_factory):
    """The slide segmented with the default (auto: an RGB scan) and with --tissue none."""
    folder = tmp_path_factory.mktemp("out")
    auto = segment(he[0], folder / "auto.ome.zarr", model=model, **ARGS)
    none = segment(he[0], folder / "none.ome.zarr", model=model, tissue="none", **ARGS)
    return auto, none


def read(out, path: str) -> np.ndarray:
    return zarr.open_array(str(out), path=path, mode="r")[...]


def table(result) -> dict[str, dict]:
    with open(result.output.with_name(result.output.name.replace(".ome.zarr", ".objects.csv"))) as f:
        return {row["id"]: row for row in csv.DictReader(f)}


def tissue_pixels(out) -> np.ndarray:
    """The stored mask's tissue (value 1) at slide resolution."""
    factor = json.loads((out / ".biounet" / ".zattrs").read_text())["run"]["tissue"]["factor"]
    layer = read(out, "labels/tissue/0")
    return np.repeat(np.repeat(layer == 1, factor, 0), factor, 1)[:H, :W]


def test_glass_blocks_skipped_tissue_blocks_predicted(he, outputs):
    _, truth = he
    auto, none = outputs
    entry = auto.extra["tissue"]
    skipped = {i for a, b in entry["skipped"] for i in range(a, b)}
    from scipy import ndimage as ndi

    distance = ndi.distance_transform_cdt(~truth, metric="chessboard")  # slide pixels to the nearest tissue
    far = {b.index for b in BLOCKS if distance[b.y0:b.y1, b.x0:b.x1].min() > MARGIN + 2 * 8}
    near = {b.index for b in BLOCKS if distance[b.y0:b.y1, b.x0:b.x1].min() <= MARGIN}
    assert len(far) >= 10  # the slide has that many blocks of glass only, far from tissue
    assert not skipped & near  # every block with tissue, or within the context of tissue, predicted
    assert far <= skipped
    assert entry["blocks"] == len(BLOCKS) - len(skipped) and entry["of"] == len(BLOCKS) == 48
    assert 0.3 < entry["fraction"] < 0.4  # the tissue is 35 % of the slide
    assert auto.extra["computed"] == len(BLOCKS)  # the skipped blocks' tasks are done too
    assert "tissue" not in none.extra
    classes = read(auto.output, "labels/classes/0")
    for i in skipped:
        b = BLOCKS[i]
        assert not classes[b.y0:b.y1, b.x0:b.x1].any()
        assert not (auto.output / "labels" / "classes" / "0" / str(b.y0 // BLOCK) / str(b.x0 // BLOCK)).exists()


def test_labels_inside_the_tissue_are_those_of_tissue_none(he, outputs):
    auto, none = outputs
    inside = tissue_pixels(auto.output)
    assert inside.mean() > 0.3
    for path in ("labels/classes/0", "labels/instances/0"):
        a, b = read(auto.output, path), read(none.output, path)
        assert np.array_equal(a[inside], b[inside]), path
        assert b[inside].any()
    # --tissue none found nothing in the skipped blocks (the glass holds no objects), so the
    # numbering agrees and the whole label images are equal
    skipped = [BLOCKS[i] for a, b in auto.extra["tissue"]["skipped"] for i in range(a, b)]
    instances = read(none.output, "labels/instances/0")
    assert not any(instances[b.y0:b.y1, b.x0:b.x1].any() for b in skipped)
    assert np.array_equal(read(auto.output, "labels/instances/0"), instances)
    ids = np.unique(read(auto.output, "labels/instances/0")[inside])
    rows_auto, rows_none = table(auto), table(none)
    assert len(ids) > 100
    assert all(rows_auto[str(i)] == rows_none[str(i)] for i in ids[ids > 0])
    assert rows_auto == rows_none


def test_image_copy_and_pyramids_stay_right(outputs):
    auto, none = outputs
    a, b = zarr_arrays(auto.output), zarr_arrays(none.output)
    image_levels = [k for k in b if "/" not in k]
    assert len(image_levels) >= 3
    for key in image_levels:  # the skipped blocks' image copy too
        assert np.array_equal(a[key], b[key]), key
    for name in ("classes", "instances"):
        levels = sorted(k for k in a if k.startswith(f"labels/{name}/"))
        for up, down in zip(levels, levels[1:]):
            assert np.array_equal(a[down], a[up][::2, ::2]), down
    assert sorted(a) == sorted(b) + [f"labels/tissue/{i}" for i in range(len([k for k in a if "tissue" in k]))]


def test_the_tissue_layer_overlays_the_image_in_napari(outputs):
    """napari-ome-zarr's reader (headless) reads `tissue` as a labels layer at 8 px per pixel; its
    NGFF transforms place each mask pixel over the 8 x 8 slide pixels it was made from."""
    from napari_ome_zarr import napari_get_reader

    out = str(outputs[0].output)
    read = napari_get_reader(out)(out)
    assert [c.name for c in read[0][1]["colormap"]] == ["red", "green", "blue"]  # the scan in its colours
    layers = {meta.get("name"): (data, meta, kind) for data, meta, kind in read[1:]}
    data, meta, kind = layers["labels/labels/tissue"]
    assert kind == "labels" and meta["scale"] == [8.0, 8.0]
    level0 = np.asarray(data[0] if isinstance(data, list) else data)
    assert level0.shape == (H // 8, W // 8) and set(np.unique(level0)) == {0, 1, 2}
    attrs = json.loads((outputs[0].output / "labels" / "tissue" / ".zattrs").read_text())
    transforms = attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    assert transforms == [{"type": "scale", "scale": [8.0, 8.0]}, {"type": "translation", "translation": [3.5, 3.5]}]
    assert [p["class"] for p in attrs["image-label"]["properties"]] == ["glass", "tissue", "context"]
    labels = json.loads((outputs[0].output / "labels" / ".zattrs").read_text())["labels"]
    assert labels == ["classes", "instances", "tissue"]
    from biounet.napari.reader import read as biounet_read

    mine = {kw["name"] if isinstance(kw["name"], str) else kw["name"][0]: kw for _, kw, _ in biounet_read(out)}
    assert mine["tissue"]["visible"] is False and mine["tissue"]["translate"] == [3.5, 3.5]


def test_mask_independent_of_block_size_and_resume_keeps_skipped_blocks(he, model, outputs, tmp_path):
    """Blocks of 512 px: the same mask, the same labels. A run stopped after half of its
    blocks (a job-array part) resumes: the skipped blocks it did are kept, and the result is
    the same; a resume with another --tissue is refused."""
    auto, _ = outputs
    out = tmp_path / "big.ome.zarr"
    segment(he[0], out, model=model, **{**ARGS, "block": 512}, part=(1, 2))
    with pytest.raises(OutputError, match=r"other parameters \(tissue\)"):
        segment(he[0], out, model=model, **{**ARGS, "block": 512}, tissue="none")
    result = segment(he[0], out, model=model, **{**ARGS, "block": 512})
    assert result.extra["kept"]["predict"] == 6 and result.extra["stages"]["predict"] == 6  # 12 blocks of 512 px
    skipped = {i for a, b in result.extra["tissue"]["skipped"] for i in range(a, b)}
    assert skipped & set(range(6))  # the part skipped a block: recorded done, kept by the resume
    assert np.array_equal(read(out, "labels/tissue/0"), read(auto.output, "labels/tissue/0"))
    for path in ("labels/classes/0", "labels/instances/0", "0"):
        assert np.array_equal(read(out, path), read(auto.output, path)), path


def test_ngff_05_skipped_shards_read_as_empty(he, model, outputs, tmp_path):
    """NGFF 0.5 (zarr v3, a block a shard of 4 x 4 chunks): the skipped blocks' shards are never
    written and read as 0, and the output equals the NGFF 0.4 one, tissue layer included."""
    auto, _ = outputs
    out = segment(he[0], tmp_path / "v5.ome.zarr", model=model, **{**ARGS, "block": 512}, ngff="0.5").output
    for path in ("labels/classes/0", "labels/instances/0", "labels/tissue/0", "0", "1"):
        assert np.array_equal(read(out, path), read(auto.output, path)), path
    attrs = json.loads((out / "labels" / "tissue" / "zarr.json").read_text())["attributes"]["ome"]
    assert attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [8.0, 8.0]
    shards = {p.name for p in (out / "labels" / "classes" / "0" / "c").glob("*/*")}
    assert 0 < len(shards) < 12  # 12 blocks of 512 px, those without tissue never written


def test_tissue_path_a_mask_image(he, model, tmp_path):
    """--tissue PATH (a PNG a 16th of the slide's size): its blocks and their context are
    predicted, the rest not; the probabilities of skipped blocks are empty; the summary line
    says how many blocks were skipped."""
    _, truth = he
    mask = np.zeros((H // 16, W // 16), np.uint8)
    mask[10:30, 20:40] = 1  # slide rows 160-480, columns 320-640
    PILImage.fromarray(mask * 255).save(tmp_path / "mask.png")
    out = tmp_path / "m.ome.zarr"
    r = invoke("segment", he[0], "-o", out, "--model", model, "--block", BLOCK, "--device", "cpu", "--no-progress",
               "--tissue", tmp_path / "mask.png", "--save-probabilities", "uint8")
    assert r.returncode == 0, r.output
    line = [s for s in r.stdout.splitlines() if s.startswith("wrote")][0]
    # rows 160-480 and columns 320-640, with 92-108 px of context: blocks 0-2 of both: 9 of 48
    assert "tissue: 9 of 48 blocks (81% skipped); objects: " in line
    probabilities = read(out, "probabilities/0")
    classes = read(out, "labels/classes/0")
    assert classes[:768, :768].any() and not classes[768:].any() and not classes[:, 768:].any()
    assert probabilities[:, :768, :768].any() and not probabilities[:, 768:].any()
    params = zarr.open_group(str(out), mode="r").attrs["biounet"]["params"]
    assert params["tissue"] == {"mask": str((tmp_path / "mask.png").resolve()), "bytes": (tmp_path / "mask.png").stat().st_size}


def test_bad_tissue_options_one_line_each(he, model, tmp_path):
    PILImage.fromarray(np.zeros((10, 40), np.uint8)).save(tmp_path / "wide.png")
    for option, code, message in ((tmp_path / "missing.png", 2, "--tissue '.*missing.png': no such file; use auto, none"),
                                  (tmp_path / "wide.png", 2, "--tissue .*wide.png is 40 x 10 px .* the slide is 2048 x 1536"),
                                  ("sometimes", 2, "--tissue 'sometimes': no such file")):
        out = tmp_path / "bad.ome.zarr"
        r = invoke("segment", he[0], "-o", out, "--model", model, "--tissue", option, "--quiet")
        lines = r.stderr.strip().splitlines()
        assert r.returncode == code and len(lines) == 1, r.stderr
        import re

        assert re.search(message, lines[0]), lines[0]
        assert not out.exists()  # nothing half-made
    with pytest.raises(UsageError):
        segment(he[0], tmp_path / "x.ome.zarr", model=model, tissue=tmp_path / "nothing.tif", **ARGS)


def test_fluorescence_default_predicts_every_block(shared_data, tmp_path):
    """A BBBC039 field (fluorescence, one channel): the default is none (every block predicted,
    no tissue layer); --tissue auto there still predicts every block holding a nucleus."""
    field = tifffile.imread(sorted((shared_data / "bbbc039" / "train" / "images").glob("*.tif"))[0])
    tifffile.imwrite(tmp_path / "f.tif", field, tile=(128, 128))
    default = segment(tmp_path / "f.tif", tmp_path / "d.ome.zarr", model="nuclei", **{**ARGS, "block": 128})
    assert "tissue" not in default.extra and not (default.output / "labels" / "tissue").exists()
    assert zarr.open_group(str(default.output), mode="r").attrs["biounet"]["params"]["tissue"] == "none"
    auto = segment(tmp_path / "f.tif", tmp_path / "a.ome.zarr", model="nuclei", tissue="auto", **{**ARGS, "block": 128})
    instances = read(default.output, "labels/instances/0")
    blocks = plan_blocks((), *field.shape, 128, 16)
    kept = {b.index for b in blocks} - {i for a, b in auto.extra["tissue"]["skipped"] for i in range(a, b)}
    with_nuclei = {b.index for b in blocks if instances[b.y0:b.y1, b.x0:b.x1].any()}
    assert with_nuclei <= kept
    assert np.array_equal(read(auto.output, "labels/instances/0"), instances)


def test_glass_only_skips_everything_and_says_so(model, tmp_path):
    """A slide of glass (noise and dust only): no block is predicted, the labels are empty, and a
    warning says so and how to predict anyway."""
    from biounet.runtime.notices import BiounetWarning

    tifffile.imwrite(tmp_path / "glass.tif", HESlide(512, 768, tissue=1e-9, seed=2).image(), photometric="rgb",
                     tile=(256, 256))
    with pytest.warns(BiounetWarning, match="no tissue found in the slide .*pass --tissue none to predict every"):
        result = segment(tmp_path / "glass.tif", tmp_path / "glass.ome.zarr", model=model, **ARGS)
    assert result.extra["tissue"]["blocks"] == 0 and result.extra["objects"] == 0
    assert not read(result.output, "labels/classes/0").any()
    assert read(result.output, "0").min() > 0  # the image copy is there


def test_tissue_at_another_scale(he, tmp_path):
    """A slide given at 0.125 um/px to a model trained at 0.25 (the network runs at half the
    slide's resolution, its context twice as many slide pixels): glass blocks skipped, labels
    inside the tissue those of --tissue none, bit for bit."""
    from tests.test_scale_accuracy import MODEL

    args = {**ARGS, "model": MODEL, "pixel_size": 0.125}
    auto = segment(he[0], tmp_path / "a.ome.zarr", **args)
    none = segment(he[0], tmp_path / "n.ome.zarr", tissue="none", **args)
    assert auto.extra["scale"].startswith("scale 0.50") and 0 < auto.extra["tissue"]["blocks"] < 48
    inside = tissue_pixels(auto.output)
    for path in ("labels/classes/0", "labels/instances/0"):
        a, b = read(auto.output, path), read(none.output, path)
        assert b[inside].any() and np.array_equal(a[inside], b[inside]), path
