"""Image and label files as training and evaluation read them: pairs matched by name,
whole images as (C, H, W), label images as instance ids.

Pairs come from two folders whose files are matched by name stem (`a.tif`,
`a.ome.tif`, `a.png`, `a.zarr` all have stem `a`), or from one image file and
one label file. Labels are instance ids (0 = background) or class masks (only 0
and 1, e.g. ISBI 2012: 1 = cell interior, 0 = membrane); a class mask becomes
instances by its 8-connected components.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

from biounet.read.image import ImageReadError, open_image
from biounet.read.sample import sample_for_stats

SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".png", ".zarr")
INTERNAL_IGNORE = -1
"""Ignore value of the internal instance images (never an instance id)."""


class DataError(ValueError):
    """Training or evaluation data that cannot be used (with a message saying why)."""


# ---------------------------------------------------------------- files


def stem(path: str | os.PathLike) -> str:
    """File name without a known image suffix: `a.ome.tif` -> `a`."""
    name = Path(path).name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def is_image_path(path: Path) -> bool:
    """An image file or zarr store by its name."""
    name = path.name.lower()
    if name.startswith("."):
        return False
    return name.endswith(SUFFIXES) and (path.is_file() or name.endswith(".zarr"))


def is_folder(path: Path) -> bool:
    """A folder of images (not itself a zarr store)."""
    return path.is_dir() and not path.name.lower().endswith(".zarr") and not any(
        (path / marker).exists() for marker in (".zgroup", ".zarray", "zarr.json")
    )


def image_files(folder: str | os.PathLike) -> dict[str, Path]:
    """{stem: path} of the images in a folder."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"folder not found: {folder}")
    if not is_folder(folder):
        raise DataError(f"{folder} is not a folder of images")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if is_image_path(path):
            key = stem(path)
            if key in files:
                raise DataError(f"two files named {key!r} in {folder}: {files[key].name}, {path.name}")
            files[key] = path
    if not files:
        raise DataError(f"no images (TIFF, PNG, zarr) in {folder}")
    return files


def find_pairs(images: str | os.PathLike, labels: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """(name, image, labels) for every image with a label file of the same stem.

    A file path (or zarr store) on both sides is one pair.
    """
    images, labels = Path(images), Path(labels)
    for path in (images, labels):
        if not path.exists():
            raise DataError(f"not found: {path}")
    if not is_folder(images) and not is_folder(labels):
        return [(stem(images), images, labels)]
    if is_folder(images) != is_folder(labels):
        raise DataError(f"pass two folders or two files: {images} and {labels}")
    image_map, label_map = image_files(images), image_files(labels)
    names = sorted(set(image_map) & set(label_map))
    if not names:
        raise DataError(f"no image in {images} has a label file of the same name in {labels}")
    return [(name, image_map[name], label_map[name]) for name in names]


def _png(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    return np.asarray(iio.imread(path))


def _as_cyx(arr, axes: str, channels: Sequence[int] | None, path: Path):
    """(C, H, W) view of an array in NGFF axis order (numpy or dask)."""
    for axis in "tz":
        if axis in axes:
            i = axes.index(axis)
            if arr.shape[i] != 1:
                raise DataError(f"{path} has a {axis} axis of size {arr.shape[i]}; training takes 2-D images")
            arr = arr[(slice(None),) * i + (0,)]
            axes = axes.replace(axis, "")
    if "c" not in axes:
        arr = arr[None]
    if channels is not None:
        if max(channels) >= arr.shape[0] or min(channels) < 0:
            raise DataError(f"{path} has {arr.shape[0]} channel(s); cannot take channels {list(channels)}")
        arr = arr[list(channels)]
    return arr


def open_cyx(path: Path, channels: Sequence[int] | None = None):
    """Lazy (C, H, W) array of an image (dask; numpy for PNG) and the opened Image (None for PNG)."""
    if path.name.lower().endswith(".png"):
        arr = _png(path)
        axes = "yxc" if arr.ndim == 3 else "yx"
        arr = np.moveaxis(arr, -1, 0) if arr.ndim == 3 else arr
        return _as_cyx(arr, "cyx" if axes == "yxc" else "yx", channels, path), None
    try:
        img = open_image(path)
    except ImageReadError as err:
        raise DataError(str(err)) from None
    return _as_cyx(img.data, img.axes, channels, path), img


def read_image(path: str | os.PathLike, channels: Sequence[int] | None = None) -> np.ndarray:
    """A whole image as (C, H, W)."""
    arr, _ = open_cyx(Path(path), channels)
    return np.asarray(arr.compute() if hasattr(arr, "compute") else arr)


def image_sample(path: str | os.PathLike, channels: Sequence[int] | None = None) -> np.ndarray:
    """(C, N) pixel values for normalisation statistics, taken as `segment` takes them.

    The whole of a small image; of a large one a low-resolution level or
    evenly spread chunks (`sample_for_stats`).
    """
    arr, img = open_cyx(Path(path), channels)
    if img is not None:
        return sample_for_stats(img, list(channels) if channels is not None and "c" in img.axes else None)
    return np.asarray(arr).reshape(arr.shape[0], -1).astype(np.float64)


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """A whole label image as (H, W)."""
    path = Path(path)
    arr, _ = open_cyx(path)
    if arr.shape[0] != 1:
        raise DataError(f"label image {path} has {arr.shape[0]} channels; expected one (instance ids, 0 = "
                        "background): pass the label images, not the images")
    arr = arr[0]
    return np.asarray(arr.compute() if hasattr(arr, "compute") else arr)


def is_class_mask(labels: np.ndarray, ignore: int | None = None) -> bool:
    """Whether the annotated values are only 0 and 1."""
    labels = np.asarray(labels)
    if ignore is not None:
        labels = labels[labels != ignore]
    return labels.size == 0 or (labels.min() >= 0 and labels.max() <= 1)


def to_instances(labels: np.ndarray, ignore: int | None = None, kind: str = "auto") -> np.ndarray:
    """int64 instance ids, ignored pixels `INTERNAL_IGNORE` (-1).

    A class mask (kind "classes", or "auto" and only 0/1) becomes its
    8-connected components.
    """
    labels = np.asarray(labels)
    ignored = labels == ignore if ignore is not None else None
    if kind == "auto":
        kind = "classes" if is_class_mask(labels, ignore) else "instances"
    if kind == "classes":
        foreground = labels != 0 if ignored is None else (labels != 0) & ~ignored
        inst = ndi.label(foreground, structure=np.ones((3, 3), bool))[0].astype(np.int64)
    else:
        values = labels if ignored is None else labels[~ignored]
        if values.size and values.min() < 0:
            raise DataError("instance labels must be >= 0 (or the ignore value)")
        if not np.issubdtype(labels.dtype, np.integer) and not np.array_equal(values, np.round(values)):
            raise DataError(f"labels must be integers, got {labels.dtype} values")
        inst = labels.astype(np.int64)
    if ignored is not None:
        inst[ignored] = INTERNAL_IGNORE
    return inst
