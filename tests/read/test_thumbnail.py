"""Thumbnails for tissue detection (means of factor x factor pixels, strip by strip, from a
pyramid level where the slide has one) and tissue mask images brought onto them."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from biounet.read import thumbnail as th
from biounet.read.image import open_image
from tests.read import wsi_files as w


def cell_means(image: np.ndarray, factor: int) -> np.ndarray:
    """(C, ceil(H/f), ceil(W/f)) means of the pixels in each factor x factor cell (partial at the
    ends), the obvious way."""
    h, w_ = -(-image.shape[0] // factor), -(-image.shape[1] // factor)
    out = np.zeros((image.shape[2], h, w_))
    for i in range(h):
        for j in range(w_):
            out[:, i, j] = image[i * factor:(i + 1) * factor, j * factor:(j + 1) * factor].mean(axis=(0, 1))
    return out


def test_thumbnail_of_a_slide_without_pyramid_is_the_cell_means(tmp_path, monkeypatch):
    image = w.he_mosaic(300, 410)
    tifffile.imwrite(tmp_path / "s.tif", image, photometric="rgb", tile=(64, 64))
    slide = open_image(tmp_path / "s.tif")
    expected = cell_means(image, 8)
    assert np.allclose(th.thumbnail(slide, 0, 8), expected)
    monkeypatch.setattr(th, "STRIP_BYTES", 1)  # one thumbnail row at a time: the same
    assert np.allclose(th.thumbnail(slide, 0, 8), expected)
    assert np.allclose(th.thumbnail(slide, 0, 8, channels=[2]), expected[2:])
    assert np.array_equal(th.thumbnail(slide, 0, 8, reduce=np.maximum)[:, 0, 0], image[:8, :8].max(axis=(0, 1)))


def test_thumbnail_reads_the_pyramid_level_that_fits(tmp_path):
    """An SVS with 4x and 16x levels: a factor of 16 reads the 16x level (its pixels as they are),
    a factor of 32 pools it 2 x 2, a factor of 8 pools the 4x level."""
    levels = w.pyramid(w.he_mosaic(1024, 1536), (4, 16))
    w.write_svs(tmp_path / "s.svs", levels, compression="zlib")
    slide = open_image(tmp_path / "s.svs")
    assert [th.source_level(slide, 0, f) for f in (2, 4, 8, 16, 32)] == [0, 1, 1, 2, 2]
    assert np.array_equal(th.thumbnail(slide, 0, 16), levels[2].transpose(2, 0, 1))
    assert np.allclose(th.thumbnail(slide, 0, 32), cell_means(levels[2], 2))
    assert np.allclose(th.thumbnail(slide, 0, 8), cell_means(levels[1], 2))
    assert np.array_equal(th.thumbnail(slide, 1, 4), levels[2].transpose(2, 0, 1))  # --level 1: factors from it


def test_mask_images_of_any_size_cover_the_slide(tmp_path):
    """A mask coarser or finer than the grid, as PNG or TIFF: a grid pixel is tissue if any mask
    pixel in it is (one set pixel of a large mask is not lost)."""
    coarse = np.zeros((30, 40), np.uint8)
    coarse[10:20, 5:15] = 255
    PILImage.fromarray(coarse).save(tmp_path / "coarse.png")
    grid = th.mask_image(tmp_path / "coarse.png", 60, 80)
    assert np.array_equal(grid, np.repeat(np.repeat(coarse > 0, 2, 0), 2, 1))
    fine = np.zeros((600, 800), np.uint8)
    fine[333, 517] = 1
    tifffile.imwrite(tmp_path / "fine.tif", fine)
    grid = th.mask_image(tmp_path / "fine.tif", 60, 80)
    assert grid.sum() == 1 and grid[33, 51]
    rgb = np.zeros((60, 80, 3), np.uint8)
    rgb[5, 7, 1] = 9  # nonzero in any channel
    PILImage.fromarray(rgb).save(tmp_path / "rgb.png")
    assert np.argwhere(th.mask_image(tmp_path / "rgb.png", 60, 80)).tolist() == [[5, 7]]
    rgba = np.zeros((60, 80, 4), np.uint8)
    rgba[..., 3] = 255  # opaque black: no tissue
    rgba[9, 9] = [255, 0, 0, 255]
    rgba[20, 20] = [255, 0, 0, 0]  # transparent: no tissue
    PILImage.fromarray(rgba).save(tmp_path / "rgba.png")
    assert np.argwhere(th.mask_image(tmp_path / "rgba.png", 60, 80)).tolist() == [[9, 9]]


def test_mask_images_that_do_not_fit_are_refused(tmp_path):
    PILImage.fromarray(np.zeros((50, 50), np.uint8)).save(tmp_path / "square.png")
    with pytest.raises(th.MaskShapeError, match="50 x 50 px .* the slide is 80 x 60"):
        th.mask_image(tmp_path / "square.png", 60, 80)
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 60, 80), np.uint8), metadata={"axes": "ZYX"})
    with pytest.raises(th.MaskShapeError, match="3 planes"):
        th.mask_image(tmp_path / "stack.tif", 60, 80)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    from biounet.read.image import ImageReadError

    with pytest.raises(ImageReadError, match="cannot read tissue mask"):
        th.mask_image(tmp_path / "broken.png", 60, 80)
    th.check_aspect((61, 80), (600, 800))  # a pixel off (floored sizes) is fine
