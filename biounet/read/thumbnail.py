"""A slide's thumbnail for tissue detection, and a tissue mask image brought onto it.

Each thumbnail pixel is the mean of `factor` x `factor` pixels of the level being
segmented. It is read from the coarsest pyramid level not coarser than that (where the
scanner made one) or else from the level itself, strip by strip: never more than
STRIP_BYTES of the slide in memory.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from biounet.read.image import Image

STRIP_BYTES = 64 * 1024**2  # pixels read at once, at most (and at least one thumbnail row)
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


class MaskShapeError(ValueError):
    """A tissue mask that does not cover the slide (3-D, or another aspect ratio)."""


def starts(size: int, count: int, ratio: float) -> np.ndarray:
    """First source index of each of `count` thumbnail pixels along an axis, each thumbnail
    pixel taking `ratio` source pixels (the last ones clipped to `size`)."""
    return np.minimum(np.floor(np.arange(count) * ratio).astype(np.int64), size - 1)


def pool(region: np.ndarray, rows: np.ndarray, cols: np.ndarray, reduce: Callable) -> np.ndarray:
    """`region` (..., Y, X) reduced over the runs of rows and columns starting at `rows` and `cols`
    (`np.add` sums, `np.maximum` maxima): one value per (row run, column run)."""
    return reduce.reduceat(reduce.reduceat(region, rows, axis=-2), cols, axis=-1)


def counts(starts_: np.ndarray, size: int) -> np.ndarray:
    """Source pixels in each run (a run whose start equals the next one's still holds one)."""
    return np.maximum(np.diff(np.append(starts_, size)), 1)


def source_level(image: "Image", level: int, factor: int) -> int:
    """The coarsest level of `image` no coarser than `factor` times `level` (1 % slack for
    scanners' floored level sizes)."""
    base = image.downsamples[level]
    best = level
    for k in range(level, len(image.readers)):
        fy, fx = (d / b for d, b in zip(image.downsamples[k], base))
        if fy <= factor * 1.01 and fx <= factor * 1.01:
            best = k
    return best


def thumbnail(image: "Image", level: int, factor: int, plane: tuple[int, ...] = (),
              channels: list[int] | None = None, reduce: Callable = np.add) -> np.ndarray:
    """(C, h, w) float64 thumbnail of one plane (t, z indices) of `level`: means of `factor` x
    `factor` pixels (`reduce=np.maximum`: maxima), h and w rounded up; `channels` picks some."""
    axes = image.axes
    height, width = image.size_of(level, "y"), image.size_of(level, "x")
    h, w = -(-height // factor), -(-width // factor)
    source = source_level(image, level, factor)
    sh, sw = image.size_of(source, "y"), image.size_of(source, "x")
    rows, cols = starts(sh, h, factor * sh / height), starts(sw, w, factor * sw / width)
    row_counts, col_counts = counts(rows, sh), counts(cols, sw)
    c = image.size("c")
    per_row = sw * c * image.dtype.itemsize * max(1, math.ceil(factor * sh / height))
    step = max(1, STRIP_BYTES // per_row)  # thumbnail rows per strip
    out = np.empty((c if channels is None else len(channels), h, w), np.float64)
    for i0 in range(0, h, step):
        i1 = min(i0 + step, h)
        y0, y1 = int(rows[i0]), int(rows[i1]) if i1 < h else sh
        plane_index = iter(plane)
        key = tuple(next(plane_index, 0) if a in "tz" else slice(None) if a == "c" else slice(y0, y1) if a == "y"
                    else slice(None) for a in axes)
        region = np.asarray(image.read(source, key))
        region = region if "c" in axes else region[None]
        if channels is not None:
            region = region[channels]
        region = region.astype(np.float64 if reduce is np.add else region.dtype, copy=False)
        pooled = pool(region, rows[i0:i1] - y0, cols, reduce)
        if reduce is np.add:
            pooled = pooled / (row_counts[i0:i1, None] * col_counts[None, :])
        out[:, i0:i1] = pooled
    return out


def mask_image(path: str | os.PathLike, height: int, width: int, slide: tuple[int, int] | None = None) -> np.ndarray:
    """A tissue mask file (nonzero = tissue; TIFF, zarr, OME-Zarr, or an image PIL reads: PNG,
    JPEG, ...) of a slide of `slide` (height, width; default: the grid's) as a boolean (height,
    width) grid: a grid pixel is tissue if any mask pixel within it is (`resized`).
    MaskShapeError (saying why) for a mask that does not cover the slide: 3-D, or another
    aspect ratio; ImageReadError for one that cannot be read."""
    path = Path(path)
    slide = slide or (height, width)
    if path.suffix.lower() in PIL_SUFFIXES:
        mask = _pil_mask(path)
    else:
        from biounet.read.image import open_image

        image = open_image(path)
        if any(image.size(a) > 1 for a in "tz"):
            raise MaskShapeError(f"has {image.size('t')} time points and {image.size('z')} planes: give one 2-D mask")
        mh, mw = image.size_of(0, "y"), image.size_of(0, "x")
        check_aspect((mh, mw), slide)  # before reading it
        factor = max(1, min(mh // height, mw // width))  # whole mask pixels per grid pixel, read strip-wise
        mask = thumbnail(image, 0, factor, reduce=np.maximum).max(axis=0) != 0
    check_aspect(mask.shape, slide)
    return resized(mask, height, width)


def resized(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A boolean mask (H, W) of any size onto a (height, width) grid covering the same area:
    a grid pixel is set if any mask pixel within it is (a nearest pixel when the mask is coarser)."""
    out = mask
    for axis, n in ((0, height), (1, width)):
        size = out.shape[axis]
        first = np.minimum(np.arange(n) * size // n, size - 1)
        out = np.maximum.reduceat(out, first, axis=axis)
    return out.astype(bool)


def check_aspect(mask_shape: tuple[int, int], slide_shape: tuple[int, int]) -> None:
    """MaskShapeError unless a mask of `mask_shape` (height, width) covers a slide of `slide_shape`
    with the same aspect ratio (within a pixel of the mask, or 2 %)."""
    (mh, mw), (sh, sw) = mask_shape, slide_shape
    expected = sh / sw * mw  # the mask's height if it had the slide's aspect ratio
    if abs(mh - expected) > max(1.0, 0.02 * mh):
        raise MaskShapeError(f"is {mw} x {mh} px (width x height) but the slide is {sw} x {sh}: a tissue mask "
                             "must cover the whole slide (any size, the same aspect ratio)")


def _pil_mask(path: Path) -> np.ndarray:
    from PIL import Image as PILImage

    from biounet.read.image import ImageReadError

    try:
        with PILImage.open(path) as picture:
            grey = picture.mode in ("1", "L", "I", "I;16", "F")
            data = np.asarray(picture if grey else picture.convert("RGBA"))  # palettes as colours
    except (OSError, ValueError, PILImage.DecompressionBombError) as err:
        raise ImageReadError(f"cannot read tissue mask {path} ({err}); give a PNG, JPEG or TIFF image") from None
    if grey:
        return data != 0
    return (data[..., :3] != 0).any(axis=-1) & (data[..., 3] != 0)  # a colour, where not transparent
