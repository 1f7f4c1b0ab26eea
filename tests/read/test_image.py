import numpy as np
import pytest
import tifffile
import zarr

from biounet.read.image import ImageReadError, InputNotFoundError, open_image


@pytest.fixture
def stack():
    return np.random.default_rng(1).integers(0, 4000, (2, 300, 410), dtype=np.uint16)


def test_real_bbbc039_tiff(shared_data):
    path = next((shared_data / "bbbc039" / "train" / "images").glob("*.tif"))
    img = open_image(path)
    assert img.axes == "yx" and img.shape == (520, 696) and img.dtype == np.uint16
    assert np.array_equal(img.data[100:110, 200:220].compute(), tifffile.imread(path)[100:110, 200:220])


def test_ome_tiff_pyramid_with_pixel_size(tmp_path, stack):
    path = tmp_path / "p.ome.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(stack, tile=(128, 128), subifds=2, metadata={"axes": "CYX", "PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65})
        tw.write(stack[:, ::2, ::2], tile=(128, 128), subfiletype=1)
        tw.write(stack[:, ::4, ::4], tile=(128, 128), subfiletype=1)
    img = open_image(path)
    assert img.axes == "cyx"
    assert [lvl.shape for lvl in img.levels] == [(2, 300, 410), (2, 150, 205), (2, 75, 103)]
    assert img.pixel_size["x"] == (0.65, "micrometer")
    assert img.chunks == (1, 128, 128)
    assert np.array_equal(img.levels[1][1, 10:20, 30:40].compute(), stack[1, ::2, ::2][10:20, 30:40])


def test_resolution_tags(tmp_path, stack):
    path = tmp_path / "r.tif"
    tifffile.imwrite(path, stack[0], resolution=(1 / 0.0002, 1 / 0.0002), resolutionunit="CENTIMETER")
    assert open_image(path).pixel_size["y"] == pytest.approx((2.0, "micrometer"))


def test_rgb_and_zstack_axes(tmp_path):
    rgb = np.zeros((64, 80, 3), np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    img = open_image(tmp_path / "rgb.tif")
    assert img.axes == "cyx" and img.shape == (3, 64, 80)
    tifffile.imwrite(tmp_path / "z.ome.tif", np.zeros((2, 5, 3, 40, 50), np.uint8), metadata={"axes": "TZCYX"})
    img = open_image(tmp_path / "z.ome.tif")
    assert img.axes == "tczyx" and img.shape == (2, 3, 5, 40, 50)


def test_zarr_array_and_axes_override(tmp_path, stack):
    zarr.save_array(str(tmp_path / "a.zarr"), stack)
    img = open_image(tmp_path / "a.zarr")
    assert img.axes == "cyx"
    img = open_image(tmp_path / "a.zarr", axes="zyx")
    assert img.axes == "zyx"
    with pytest.raises(ImageReadError, match="3 dimensions"):
        open_image(tmp_path / "a.zarr", axes="yx")


def test_errors(tmp_path):
    with pytest.raises(InputNotFoundError):
        open_image(tmp_path / "nope.tif")
    (tmp_path / "dir").mkdir()
    with pytest.raises(ImageReadError, match="not a zarr"):
        open_image(tmp_path / "dir")
    (tmp_path / "x.tif").write_text("hello")
    with pytest.raises(ImageReadError, match="not a readable TIFF"):
        open_image(tmp_path / "x.tif")
