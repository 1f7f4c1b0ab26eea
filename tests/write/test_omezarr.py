"""The output opens in napari (image + labels layers) and validates against NGFF."""

import numpy as np
import pytest
import tifffile
import zarr

from biounet.pipeline.segment import segment
from biounet.write.store import OutputError


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    path = tmp_path_factory.mktemp("slide") / "s.ome.tif"
    img = np.random.default_rng(2).integers(0, 4000, (700, 900), dtype=np.uint16)
    tifffile.imwrite(path, img, tile=(256, 256), metadata={"axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
    return path


@pytest.mark.parametrize("ngff", ["0.4", "0.5"])
def test_napari_and_ngff_validation(slide, tiny_model, tmp_path, ngff):
    from napari_ome_zarr import napari_get_reader
    from ome_zarr_models.v04.image import Image as Image04
    from ome_zarr_models.v05.image import Image as Image05

    out = tmp_path / "o.ome.zarr"
    segment(slide, out, model=tiny_model, block=256, ngff=ngff, progress=False)
    model = (Image04 if ngff == "0.4" else Image05).from_zarr(zarr.open_group(str(out), mode="r"))
    assert model.labels is not None
    layers = napari_get_reader(str(out))(str(out))
    kinds = [kind for _, _, kind in layers]
    assert kinds == ["image", "labels", "labels"]  # classes and instances
    (image, _, _), (labels, meta, _), (instances, _, _) = layers
    assert len(instances) == len(labels) and instances[0].dtype == np.int32
    assert len(image) == len(labels) >= 2  # multiscale at every zoom level
    assert labels[0].shape == (700, 900)
    assert np.array_equal(np.asarray(labels[1]), np.asarray(labels[0])[::2, ::2])
    root = zarr.open_group(str(out), mode="r")
    attrs = root.attrs.asdict()
    ms = (attrs["ome"] if ngff == "0.5" else attrs)["multiscales"][0]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [0.5, 0.5]
    assert ms["axes"][0].get("unit") == "micrometer"
    assert attrs["biounet"]["status"] == "complete"


def test_existing_output_refused_then_overwritten(slide, tiny_model, tmp_path):
    out = tmp_path / "o.ome.zarr"
    out.mkdir()
    (out / "keep").write_text("x")
    with pytest.raises(OutputError, match="--overwrite"):
        segment(slide, out, model=tiny_model, progress=False)
    assert (out / "keep").exists()
    segment(slide, out, model=tiny_model, progress=False, overwrite=True, write_image=False)
    assert not (out / "keep").exists()
    assert zarr.open_array(str(out), path="labels/classes/0").shape == (700, 900)


@pytest.mark.parametrize("ngff", ["0.4", "0.5"])
def test_image_copy_every_channel_and_plane_with_mean_levels(tiny_model, tmp_path, ngff):
    """The output's image is the input (all channels, every plane) and its levels are
    2x2 means, placed by a half-pixel translation; blocks copy it as they are predicted."""
    data = np.random.default_rng(4).integers(0, 60000, (3, 2, 300, 410), dtype=np.uint16)  # z c y x
    path = tmp_path / "s.ome.tif"
    tifffile.imwrite(path, data, metadata={"axes": "ZCYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
    out = tmp_path / "o.ome.zarr"
    segment(path, out, model=tiny_model, block=128, channel=["1"], ngff=ngff, progress=False)
    root = zarr.open_group(str(out), mode="r")
    attrs = root.attrs.asdict()
    ms = attrs.get("ome", attrs)["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["c", "z", "y", "x"]
    level0 = root[ms["datasets"][0]["path"]][...]
    assert level0.dtype == np.uint16 and np.array_equal(level0, data.transpose(1, 0, 2, 3))
    level1 = root[ms["datasets"][1]["path"]][...]
    means = level0.astype(np.float64).reshape(2, 3, 150, 2, 205, 2).mean(axis=(3, 5))
    assert np.array_equal(level1, np.rint(means).astype(np.uint16))
    transforms = ms["datasets"][1]["coordinateTransformations"]
    assert transforms[0]["scale"] == pytest.approx([1.0, 1.0, 1.0, 1.0])
    assert transforms[1]["translation"] == pytest.approx([0.0, 0.0, 0.25, 0.25])


@pytest.mark.parametrize("labels", [True, False])
def test_pyramid_levels_equal_whole_array_downsampling(tmp_path, labels):
    """Levels built block by block equal shrinking the whole array, odd sizes included."""
    from biounet.plan.layout import OutputLayout
    from biounet.write.pyramid import pyramid_block, shrink
    from biounet.write.store import ArraySpec, OutputStore

    data = np.random.default_rng(7).integers(0, 50000, (2, 1100, 700)).astype(np.uint16)  # z y x
    layout = OutputLayout("zyx", data.shape, 256, {}, "0.4")
    store = OutputStore(tmp_path, layout, [ArraySpec("labels/x", "uint16", labels=labels)])
    store.create()
    store.array("labels/x", 0)[...] = data
    levels = layout.levels
    assert levels == 4  # 1100 -> 550 -> 275 -> 138 px
    for level in range(1, levels):
        for block in layout.blocks(level):
            pyramid_block(store, "labels/x", level, block)
    expected = data
    root = zarr.open_group(str(tmp_path), mode="r")
    for i in range(levels):
        expected = shrink(expected, labels, (2, 2)) if i else expected
        assert np.array_equal(root[f"labels/x/{i}"][...], expected), i


def test_outputs_open_and_walk_without_warnings(slide, tiny_model, tmp_path):
    """zarr, ome-zarr-py and napari-ome-zarr open and walk a finished output and one a run
    left half-done (its run folder full of records and markers) without a warning: the
    run folder holds only valid zarr nodes."""
    import warnings

    from napari_ome_zarr import napari_get_reader

    done = tmp_path / "done.ome.zarr"
    segment(slide, done, model=tiny_model, block=256, progress=False)
    half = tmp_path / "half.ome.zarr"
    segment(slide, half, model=tiny_model, block=256, part=(1, 2), progress=False)  # resumable, records kept
    assert list((half / ".biounet" / "records").rglob("*.0"))
    for out in (done, half):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            root = zarr.open_group(str(out), mode="r")
            nodes = list(root.members(max_depth=None))
            assert any(name == "labels/classes/0" for name, _ in nodes)
            for _, node in nodes:
                if isinstance(node, zarr.Array):
                    node[(0,) * node.ndim]  # every array reads, the run folder's too
            if out is done:
                assert len(napari_get_reader(str(out))(str(out))) == 3
