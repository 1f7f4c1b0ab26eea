"""Every input format biounet promises segments end to end (issue 6, part 1).

Each file is generated here with tifffile / zarr / ome-zarr-py, segmented with
the random width-4 model into an OME-Zarr, and its class map compared with one
pass of the network over the whole mirror-padded plane (`forward_whole`), plane
by plane, with the labels' shape and NGFF axes checked.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr
from click.testing import CliRunner

from biounet.cli import main
from biounet.model.file import load_model
from biounet.model.geometry import Geometry
from biounet.pipeline.segment import segment
from biounet.runtime.notices import BiounetWarning
from biounet.write.runfolder import read_run_record
from tests.conftest import make_model
from tests.reference import forward_whole

H, W = 200, 230
BLOCK = 128

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def net(tiny_model):
    return load_model(tiny_model)[0]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("fmt-models")
    percentile = {"method": "percentile", "low": 1.0, "high": 99.8}
    return {
        "rgb": make_model(d / "rgb.pt", seed=1, in_channels=3),
        "two": make_model(d / "two.pt", seed=2, in_channels=2),
        "percentile": make_model(d / "pct.pt", seed=3, normalization=percentile),
    }


def image(shape=(H, W), dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.floating):
        return rng.normal(100.0, 30.0, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -3000), min(info.max, 4000), shape, endpoint=True).astype(dtype)


def run(path, out, model, **kw):
    kw = {"block": BLOCK, "device": "cpu", "progress": False, **kw}
    return segment(path, out, model=model, **kw)


def expected(net, plane):
    """Class map of one (C, H, W) or (H, W) plane by one pass over the whole plane."""
    plane = np.asarray(plane, dtype=np.float32)
    plane = plane[None] if plane.ndim == 2 else plane
    return forward_whole(net, plane, Geometry()).argmax(0)


def labels(out):
    """(level-0 class map, axes names, multiscales datasets) of an output."""
    group = zarr.open_group(str(out), mode="r")
    assert group.attrs["biounet"]["status"] == "complete"
    attrs = group["labels/classes"].attrs.asdict()
    ms = attrs.get("ome", attrs)["multiscales"][0]
    return group["labels/classes/0"][...], "".join(a["name"] for a in ms["axes"]), ms["datasets"]


def check(out, net, planes, axes):
    """The labels have `axes` and equal forward_whole for every (C, H, W) plane in `planes`."""
    classes, label_axes, _ = labels(out)
    assert label_axes == axes
    assert classes.shape == planes.shape[:-3] + planes.shape[-2:]
    for index in np.ndindex(planes.shape[:-3]):
        assert np.array_equal(classes[index], expected(net, planes[index])), index


# --- dtypes -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
def test_dtypes(tmp_path, tiny_model, net, dtype):
    data = image(dtype=dtype)
    tifffile.imwrite(tmp_path / "s.tif", data, tile=(64, 64))
    run(tmp_path / "s.tif", tmp_path / "o.ome.zarr", tiny_model)
    check(tmp_path / "o.ome.zarr", net, data[None], "yx")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_are_background(tmp_path, models, dtype):
    """Documented: non-finite pixels are left out of the percentile statistics and set to
    0 after normalisation; the run warns with their count."""
    data = image(dtype=dtype, seed=4)
    bad = np.zeros(data.shape, bool)
    bad[10:20, 30:33] = True  # 30 pixels, across a block border below
    data[10:20, 30] = np.nan
    data[10:20, 31] = np.inf
    data[10:20, 32] = -np.inf
    data[120:130, 127:129] = np.nan  # on a block edge
    bad[120:130, 127:129] = True
    tifffile.imwrite(tmp_path / "s.tif", data, tile=(64, 64))
    with pytest.warns(BiounetWarning, match=f"{bad.sum()} of {data.size} sampled pixel values .* NaN or infinite"):
        run(tmp_path / "s.tif", tmp_path / "o.ome.zarr", models["percentile"])
    finite = data[~bad].astype(np.float64)
    low, high = np.percentile(finite, [1.0, 99.8])
    record = read_run_record(tmp_path / "o.ome.zarr")
    assert np.allclose(record["stats"], [[low, high]])
    normalised = (data.astype(np.float32) - np.float32(low)) * np.float32(1.0 / (high - low))
    normalised[bad] = 0.0
    classes, axes, _ = labels(tmp_path / "o.ome.zarr")
    net = load_model(models["percentile"])[0]
    assert axes == "yx" and np.array_equal(classes, expected(net, normalised))


def test_nan_warning_on_the_command_line(tmp_path, tiny_model):
    data = image(dtype=np.float32)
    data[5, 5:12] = np.nan
    tifffile.imwrite(tmp_path / "s.tif", data)
    r = CliRunner().invoke(main, ["segment", str(tmp_path / "s.tif"), "-o", str(tmp_path / "o.ome.zarr"),
                                  "--model", str(tiny_model), "--block", "128", "--quiet"])
    assert r.exit_code == 0, r.stderr
    warning = [line for line in r.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and warning[0].startswith("biounet: warning: 7 of 46000 sampled pixel values")
    assert "treated as background" in warning[0]


# --- axes -------------------------------------------------------------------------------


def test_cyx_ome_tiff_channel_by_name_and_index(tmp_path, tiny_model, models, net):
    data = np.stack([image(seed=1), image(seed=2)])
    path = tmp_path / "c.ome.tif"
    tifffile.imwrite(path, data, tile=(64, 64), metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "GFP"]}})
    run(path, tmp_path / "a.ome.zarr", tiny_model, channel=["GFP"])
    check(tmp_path / "a.ome.zarr", net, data[1:], "yx")
    run(path, tmp_path / "b.ome.zarr", models["two"], channel=["1", "DAPI"])  # order as given
    check(tmp_path / "b.ome.zarr", load_model(models["two"])[0], data[[1, 0]], "yx")


def test_yxc_rgb_and_rgba(tmp_path, tiny_model, models, net):
    rgb = image((H, W, 3), np.uint8, seed=5)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb", tile=(64, 64))
    run(tmp_path / "rgb.tif", tmp_path / "rgb.ome.zarr", models["rgb"])
    check(tmp_path / "rgb.ome.zarr", load_model(models["rgb"])[0], rgb.transpose(2, 0, 1), "yx")
    rgba = image((H, W, 4), np.uint8, seed=6)
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    run(tmp_path / "rgba.tif", tmp_path / "rgba.ome.zarr", tiny_model, channel=["2"])
    check(tmp_path / "rgba.ome.zarr", net, rgba.transpose(2, 0, 1)[2:3], "yx")
    zarr.save_array(str(tmp_path / "rgb.zarr"), rgb)  # no metadata: guessed yxc
    run(tmp_path / "rgb.zarr", tmp_path / "rgbz.ome.zarr", models["rgb"])
    check(tmp_path / "rgbz.ome.zarr", load_model(models["rgb"])[0], rgb.transpose(2, 0, 1), "yx")


@pytest.mark.parametrize("axes", ["ZYX", "TYX"])
def test_stacks_are_segmented_plane_by_plane(tmp_path, tiny_model, net, axes):
    data = image((3, 90, 110), seed=7)
    path = tmp_path / "s.ome.tif"
    tifffile.imwrite(path, data, metadata={"axes": axes})
    run(path, tmp_path / "o.ome.zarr", tiny_model, block=64)
    check(tmp_path / "o.ome.zarr", net, data[:, None], axes.lower())


def test_tczyx_ome_tiff(tmp_path, tiny_model, models, net):
    data = image((2, 3, 2, 70, 90), seed=8)  # t, c, z, y, x
    path = tmp_path / "s.ome.tif"
    tifffile.imwrite(path, data, metadata={"axes": "TCZYX", "Channel": {"Name": ["a", "b", "c"]},
                                            "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3, "PhysicalSizeZ": 2.0})
    run(path, tmp_path / "o.ome.zarr", tiny_model, channel=["c"], block=64)
    planes = data[:, 2:3].transpose(0, 2, 1, 3, 4)  # t, z, c, y, x
    check(tmp_path / "o.ome.zarr", net, planes, "tzyx")
    _, _, datasets = labels(tmp_path / "o.ome.zarr")
    assert datasets[0]["coordinateTransformations"][0]["scale"] == pytest.approx([1.0, 2.0, 0.3, 0.3])
    run(path, tmp_path / "two.ome.zarr", models["two"], channel=["0", "b"], block=64)
    check(tmp_path / "two.ome.zarr", load_model(models["two"])[0], data[:, :2].transpose(0, 2, 1, 3, 4), "tzyx")


# --- layouts ----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", [
    {"rowsperstrip": 16},
    {"tile": (64, 64), "bigtiff": True},
    {"tile": (64, 64), "compression": "zlib"},
    {"rowsperstrip": 32, "compression": "lzw"},
    {"tile": (64, 64), "compression": "zstd"},
    {"tile": (64, 64), "compression": "jpeg"},
], ids=["striped", "bigtiff", "zlib", "lzw", "zstd", "jpeg"])
def test_tiff_layouts_and_compression(tmp_path, tiny_model, net, layout):
    data = image(dtype=np.uint8, seed=9)
    tifffile.imwrite(tmp_path / "s.tif", data, **layout)
    decoded = tifffile.imread(tmp_path / "s.tif")  # JPEG is lossy: compare with what the file holds
    if layout.get("compression") != "jpeg":
        assert np.array_equal(decoded, data)
    run(tmp_path / "s.tif", tmp_path / "o.ome.zarr", tiny_model)
    check(tmp_path / "o.ome.zarr", net, decoded[None], "yx")


@pytest.mark.parametrize("kind", ["subifds", "pages"])
def test_tiff_pyramid_levels(tmp_path, tiny_model, net, kind):
    data = image((2 * H, 2 * W), seed=10)
    path = tmp_path / "p.ome.tif"
    with tifffile.TiffWriter(path) as tw:
        if kind == "subifds":
            tw.write(data, tile=(64, 64), subifds=1, metadata={"axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
            tw.write(data[::2, ::2], tile=(64, 64), subfiletype=1)
        else:  # reduced-resolution pages after the full one: tifffile's series levels
            path = tmp_path / "p.tif"
            tw.close()
            with tifffile.TiffWriter(path) as tw2:
                tw2.write(data, tile=(64, 64))
                tw2.write(data[::2, ::2], tile=(64, 64), subfiletype=1)
    result = run(path, tmp_path / "o.ome.zarr", tiny_model, level=1)
    assert result.shape == (H, W)
    check(tmp_path / "o.ome.zarr", net, data[::2, ::2][None], "yx")
    if kind == "subifds":  # the pixel size of level 1 is twice that of level 0
        _, _, datasets = labels(tmp_path / "o.ome.zarr")
        assert datasets[0]["coordinateTransformations"][0]["scale"] == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_arrays(tmp_path, tiny_model, net, zarr_format):
    data = image(dtype=np.int16, seed=11)
    arr = zarr.create_array(str(tmp_path / "a.zarr"), shape=data.shape, chunks=(64, 64), dtype=data.dtype,
                            zarr_format=zarr_format)
    arr[...] = data
    run(tmp_path / "a.zarr", tmp_path / "o.ome.zarr", tiny_model)
    check(tmp_path / "o.ome.zarr", net, data[None], "yx")


@pytest.mark.parametrize("ngff", ["0.4", "0.5"])
def test_ome_zarr_images_and_level(tmp_path, tiny_model, net, ngff):
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    data = image(dtype=np.uint16, seed=12)
    fmt = FormatV04() if ngff == "0.4" else FormatV05()
    group = zarr.open_group(str(tmp_path / "in.ome.zarr"), mode="w", zarr_format=2 if ngff == "0.4" else 3)
    write_image(data, group, scale_factors=[2], axes="yx", fmt=fmt, storage_options={"chunks": (128, 128)},
                scale={"y": 0.25, "x": 0.25})
    run(tmp_path / "in.ome.zarr", tmp_path / "l0.ome.zarr", tiny_model, ngff=ngff)
    check(tmp_path / "l0.ome.zarr", net, data[None], "yx")
    run(tmp_path / "in.ome.zarr", tmp_path / "l1.ome.zarr", tiny_model, level=1, ngff=ngff)
    ms = group.attrs.asdict()
    ms = ms.get("ome", ms)["multiscales"][0]
    level1 = group[ms["datasets"][1]["path"]][...]
    check(tmp_path / "l1.ome.zarr", net, level1[None], "yx")
    _, _, datasets = labels(tmp_path / "l1.ome.zarr")
    assert datasets[0]["coordinateTransformations"][0]["scale"] == pytest.approx([0.5, 0.5])


@pytest.mark.parametrize("ngff", ["0.4", "0.5"])
def test_biounet_output_as_input(tmp_path, tiny_model, net, ngff):
    """An output of biounet (image pyramid at its root) is itself an OME-Zarr input."""
    data = image(dtype=np.uint8, seed=13)
    tifffile.imwrite(tmp_path / "s.tif", data)
    run(tmp_path / "s.tif", tmp_path / "first.ome.zarr", tiny_model, ngff=ngff)
    run(tmp_path / "first.ome.zarr", tmp_path / "second.ome.zarr", tiny_model, ngff=ngff)
    check(tmp_path / "second.ome.zarr", net, data[None], "yx")
    assert np.array_equal(labels(tmp_path / "second.ome.zarr")[0], labels(tmp_path / "first.ome.zarr")[0])


# --- sizes ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 7), (50, 60), (1, 300), (300, 1), (131, 257), (257, 17)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_odd_and_tiny_sizes(tmp_path, tiny_model, net, shape):
    data = image(shape, np.uint16, seed=14)
    tifffile.imwrite(tmp_path / "s.tif", data)
    run(tmp_path / "s.tif", tmp_path / "o.ome.zarr", tiny_model)
    check(tmp_path / "o.ome.zarr", net, data[None], "yx")
    group = zarr.open_group(str(tmp_path / "o.ome.zarr"), mode="r")
    _, _, datasets = labels(tmp_path / "o.ome.zarr")
    for d in datasets:  # a one-pixel axis is never halved, and its scale says so
        level = group["labels/classes"][d["path"]]
        scale = d["coordinateTransformations"][0]["scale"]
        for axis in (0, 1):
            if shape[axis] == 1:
                assert level.shape[axis] == 1 and scale[axis] == 1.0
            else:
                assert level.shape[axis] == -(-shape[axis] // int(scale[axis]))
