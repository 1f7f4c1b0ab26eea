"""biounet's napari reader: layer data, and the layers in a real napari window."""

from __future__ import annotations

import json
import warnings

import numpy as np
import tifffile
import zarr

from biounet.napari.reader import get_reader, read
from tests.napari.conftest import canvas_shot, coloured_where


def by_name(layer_data) -> dict:
    return {kwargs["name"] if isinstance(kwargs["name"], str) else kwargs["name"][0]: (data, kwargs, kind)
            for data, kwargs, kind in layer_data}


def test_layer_data(nuclei, nuclei_output):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about (the .biounet folder included)
        assert get_reader(str(nuclei_output)) is not None
        layers = by_name(read(str(nuclei_output)))
    assert list(layers) == ["field", "classes", "instances"]
    image, classes, instances = layers["field"], layers["classes"], layers["instances"]
    assert [kind for _, _, kind in layers.values()] == ["image", "labels", "labels"]
    for data, kwargs, _ in layers.values():
        assert kwargs["multiscale"] and len(data) == 2  # 256 x 320: levels of 320 and 160 px
        assert all(type(level).__name__ == "Array" and type(level).__module__.startswith("dask") for level in data)
        assert kwargs["scale"] == [1.0, 1.0] and kwargs["axis_labels"] == ["y", "x"]
        assert kwargs.get("visible", True)
    low, high = image[1]["contrast_limits"]
    assert nuclei[0].min() <= low < high <= nuclei[0].max()
    # classes: colours and class names from the labels metadata
    meta = json.loads((nuclei_output / "labels" / "classes" / ".zattrs").read_text())["image-label"]
    for colour in meta["colors"][1:]:
        assert classes[1]["colormap"][colour["label-value"]] == [v / 255 for v in colour["rgba"]]
    assert list(classes[1]["features"]["class"]) == ["background", "interior", "boundary"]
    # instances: bright colours, features = the object table, by id
    colours = instances[1]["colormap"]
    assert np.all(colours[0] == 0) and np.all(colours[1:, :3].max(axis=1) == 1.0)
    table = instances[1]["features"]
    ids = np.unique(np.asarray(instances[0][0]))
    assert set(table["index"]) == set(ids[ids > 0]) and len(table) > 10
    assert {"area_px", "centroid_y", "centroid_x", "bbox_y0", "bbox_x1", "mean_intensity"} <= set(table.columns)


def test_no_image_ngff05_pixel_size_and_channels(tmp_path, tiny_model):
    """--no-image outputs have no image layer; NGFF 0.5 (zarr v3) scale and units; a c axis."""
    from biounet.pipeline.segment import segment

    image = np.random.default_rng(0).integers(0, 255, (3, 200, 180), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "s.ome.tif", image, metadata={
        "axes": "CYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25, "PhysicalSizeXUnit": "µm",
        "PhysicalSizeYUnit": "µm"})
    segment(tmp_path / "s.ome.tif", tmp_path / "s.ome.zarr", model=tiny_model, channel=["0"], ngff="0.5",
            save_probabilities="uint8", progress=False)
    layers = read(str(tmp_path / "s.ome.zarr"))
    kinds = [(kwargs["name"], kind, kwargs.get("visible")) for _, kwargs, kind in layers]
    assert kinds[0] == (["s 0", "s 1", "s 2"], "image", None)
    assert kinds[1] == (["probability background", "probability foreground"], "image", [False, False])
    assert kinds[2:] == [("classes", "labels", True), ("instances", "labels", True)]
    assert layers[0][1]["channel_axis"] == 0
    assert layers[0][1]["scale"] == [[0.25, 0.25]] * 3 and layers[0][1]["units"] == [["micrometer"] * 2] * 3
    assert layers[2][1]["scale"] == [0.25, 0.25] and layers[2][1]["units"] == ["micrometer"] * 2

    segment(tmp_path / "s.ome.tif", tmp_path / "labels-only.ome.zarr", model=tiny_model, channel=["0"],
            write_image=False, progress=False)
    assert [kwargs["name"] for _, kwargs, _ in read(str(tmp_path / "labels-only.ome.zarr"))] == ["classes", "instances"]


def test_not_mine(tmp_path):
    """Plain zarr arrays, TIFFs and other folders are left to other readers."""
    zarr.create_array(store=str(tmp_path / "a.zarr"), shape=(4, 4), dtype="uint8")
    (tmp_path / "folder.zarr").mkdir()
    tifffile.imwrite(tmp_path / "x.tif", np.zeros((4, 4), np.uint8))
    for path in ("a.zarr", "folder.zarr", "x.tif", "missing.zarr"):
        assert get_reader(str(tmp_path / path)) is None


def test_viewer_shows_labels(make_napari_viewer, qtbot, nuclei_output, tmp_path):
    """A real window: three visible layers with the right names, scale and features, and the
    screenshot coloured where the objects are."""
    viewer = make_napari_viewer(show=True)
    viewer.open(str(nuclei_output), plugin="biounet")
    assert [layer.name for layer in viewer.layers] == ["field", "classes", "instances"]
    assert all(layer.visible and layer.multiscale for layer in viewer.layers)
    assert [type(layer).__name__ for layer in viewer.layers] == ["Image", "Labels", "Labels"]
    instances = viewer.layers["instances"]
    assert tuple(instances.scale) == (1.0, 1.0)
    mask = np.asarray(zarr.open_array(str(nuclei_output / "labels" / "instances" / "0"), mode="r")[:])
    ys, xs = np.nonzero(mask)
    centre = (float(ys[len(ys) // 2]), float(xs[len(xs) // 2]))
    status = instances.get_status(centre, world=True)["coordinates"]
    assert f"id: {mask[int(centre[0]), int(centre[1])]}" in status and "area_px" in status

    shot = canvas_shot(viewer, qtbot, tmp_path / "reader.png")
    on_objects, on_background = coloured_where(shot, mask > 0, viewer)
    assert on_objects > 0.9 and on_background < 0.1, (on_objects, on_background)


def test_viewer_shows_the_tissue_mask(make_napari_viewer, qtbot, tmp_path):
    """An H&E slide segmented with --tissue auto, in a real window: the `tissue` labels layer
    is there, hidden, at 8 slide pixels per mask pixel over the image; shown alone, it colours
    the canvas where the mask marks tissue and its context and leaves the glass clear."""
    from benchmarks.common import threshold_model
    from benchmarks.he_slide import HESlide
    from biounet.pipeline.segment import segment

    tifffile.imwrite(tmp_path / "he.tif", HESlide(768, 1024, tissue=0.35, seed=4).image(), photometric="rgb",
                     tile=(256, 256))
    model = threshold_model(tmp_path / "dark.pt", 0.5, {"method": "fixed", "low": 0, "high": 255}, in_channels=3,
                            dark=True)
    out = segment(tmp_path / "he.tif", tmp_path / "he.ome.zarr", model=model, block=256, progress=False).output
    viewer = make_napari_viewer(show=True)
    viewer.open(str(out), plugin="biounet")
    assert [layer.name for layer in viewer.layers] == ["he", "classes", "instances", "tissue"]
    assert viewer.layers["he"].rgb  # the scan in its colours, one layer
    tissue = viewer.layers["tissue"]
    assert type(tissue).__name__ == "Labels" and not tissue.visible and tuple(tissue.scale) == (8.0, 8.0)
    for layer in viewer.layers:
        layer.visible = layer is tissue
    mask = np.asarray(zarr.open_array(str(out / "labels" / "tissue" / "0"), mode="r")[:])
    assert 0.2 < (mask == 1).mean() < 0.6 and (mask == 0).mean() > 0.1
    shot = canvas_shot(viewer, qtbot, tmp_path / "tissue.png")
    on_mask, on_glass = coloured_where(shot, mask > 0, viewer, scale=(8.0, 8.0))
    assert on_mask > 0.9 and on_glass < 0.05, (on_mask, on_glass)
