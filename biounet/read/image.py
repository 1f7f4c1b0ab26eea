"""Open a slide lazily: named axes, pixel size, pyramid levels, regions read on demand.

TIFF family files (TIFF, OME-TIFF, BigTIFF, pyramids in series levels or
SubIFDs) go through tifffile's zarr interface and zarr arrays / OME-Zarr images
through zarr, so nothing is read until a region is asked for. Axes are always
returned in NGFF order, a subset of "tczyx"; RGB samples become the "c" axis.
Regions are read straight from the file's chunks (`Image.read`); dask arrays
of the levels (`Image.data`, `Image.levels`) are made only when asked for, so
that `segment` never imports dask.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from biounet.read.tiff_tiles import TiffTiles, cache_for, tiles_supported

CANONICAL = "tczyx"
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2", ".ome.tif", ".ome.tiff", ".svs", ".ndpi")
_TIFF_AXES = {"T": "t", "C": "c", "S": "c", "Z": "z", "Y": "y", "X": "x", "I": "t", "Q": "t", "E": "c"}


class ImageReadError(ValueError):
    """A path that cannot be read as an image (with a message saying why)."""


class ImageUsageError(ImageReadError):
    """An input argument that cannot name an image: a folder that is no zarr
    store, or --axes that do not fit (a usage error, exit code 2 in the CLI)."""


class InputNotFoundError(ImageUsageError):
    """The input path does not exist (a usage error)."""


class PixelTypeError(ImageReadError):
    """Pixels of a type biounet cannot segment (complex, structured, text, dates...)."""


SEGMENTABLE_KINDS = "biuf"  # bool, signed and unsigned integers, floats up to 64 bits (float16 included)
_KIND_NAMES = {"c": "complex numbers", "V": "structured records", "O": "Python objects", "M": "dates and times",
               "m": "time intervals", "S": "byte strings", "U": "text", "T": "text"}


def check_pixel_type(dtype: Any, what: str) -> None:
    """Refuse pixel types some stage cannot take, naming the type: bool, integers and
    floats up to 64 bits pass (every stage takes them, in either byte order); extended
    precision floats (float128), which no zarr array holds, do not."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise PixelTypeError(f"{what} has pixel type {dtype}, which biounet cannot segment: "
                             "convert it to integers or floats first") from None
    if dtype.kind in SEGMENTABLE_KINDS and dtype.itemsize <= 8:
        return
    if dtype.kind == "f":
        raise PixelTypeError(f"{what} has pixel type {dtype} (extended precision floats), which biounet cannot "
                             "segment: convert it to float64 first")
    hint = {"c": " (e.g. to its magnitude or real part)", "V": " (e.g. one numeric field)"}.get(dtype.kind, "")
    raise PixelTypeError(
        f"{what} has pixel type {dtype} ({_KIND_NAMES.get(dtype.kind, 'not numbers')}), which biounet cannot "
        f"segment: it takes bool, integer and floating-point pixels; convert the image first{hint}"
    )


@dataclass
class Image:
    """A lazily opened slide.

    axes: the levels' axes, a subset of "tczyx" in that order.
    readers: every pyramid level (readers[0] is full resolution), read region by region.
    pixel_size: {"y": (size, unit), "x": (size, unit), ...} where known.
    data, levels: level 0 and every level as dask arrays, made on first use.
    """

    path: Path
    axes: str
    readers: list["CanonicalReader"]
    pixel_size: dict[str, tuple[float, str]] = field(default_factory=dict)
    format: str = ""
    channel_names: list[str] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.readers[0].shape

    @property
    def dtype(self) -> np.dtype:
        return self.readers[0].dtype

    @property
    def chunks(self) -> tuple[int, ...]:
        """Chunk shape of level 0 (in `axes` order)."""
        return self.readers[0].chunks

    def level_shape(self, level: int) -> tuple[int, ...]:
        return self.readers[level].shape

    def size(self, axis: str) -> int:
        """Length of `axis`, 1 if the image has no such axis."""
        return self.shape[self.axes.index(axis)] if axis in self.axes else 1

    def read(self, level: int, key: tuple) -> np.ndarray:
        """The region `key` (ints and slices in `axes` order) of a level, read now,
        straight from the file's chunks (about 3x faster per block than a dask graph)."""
        return self.readers[level][key]

    @cached_property
    def levels(self) -> list:
        """Every level as a lazy dask array (imports dask)."""
        return [reader.dask() for reader in self.readers]

    @property
    def data(self):
        """Level 0 as a lazy dask array."""
        return self.levels[0]


def open_image(path: str | os.PathLike, axes: str | None = None, *, check_pixels: bool = True) -> Image:
    """Open `path` lazily (see module docstring); `axes` overrides a guessed axis order.

    `check_pixels`: refuse pixel types biounet cannot segment (PixelTypeError), so a
    run stops before it writes anything.
    """
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"input not found: {path}; check the path")
    if path.is_dir():
        if not (path / ".zgroup").exists() and not (path / ".zarray").exists() and not (path / "zarr.json").exists():
            raise ImageUsageError(f"{path} is a directory but not a zarr store; pass an image file or a .zarr folder")
        image = _open_zarr(path, axes)
    else:
        if path.stat().st_size == 0:
            raise ImageReadError(f"{path} is empty (0 bytes); check the file (an interrupted copy?)")
        image = _open_tiff(path, axes)
    if check_pixels:
        check_pixel_type(image.dtype, str(path))
    return image


def _canonical(axes: str) -> str:
    return "".join(a for a in CANONICAL if a in axes)


def _to_canonical(arr, axes: str) -> tuple[Any, str, list[int | None]]:
    """Transpose to NGFF order, squeezing duplicate singleton axes.

    Also returns, for each axis of `arr`, the canonical axis it became (None: squeezed).
    """
    axes = axes.lower()
    positions: list[int | None] = list(range(len(axes)))  # source axis -> axis of the squeezed array
    while len(set(axes)) != len(axes):
        dup = next(a for a in axes if axes.count(a) > 1)
        idx = [i for i, a in enumerate(axes) if a == dup]
        ones = [i for i in idx if arr.shape[i] == 1]
        if not ones:
            raise ImageUsageError(f"axes {axes!r} name {dup!r} twice with sizes > 1; pass --axes")
        arr = arr.squeeze(axis=ones[0])
        axes = axes[: ones[0]] + axes[ones[0] + 1 :]
        positions = [None if p is None or p == ones[0] else p - (p > ones[0]) for p in positions]
    if "y" not in axes or "x" not in axes or set(axes) - set(CANONICAL):
        raise ImageUsageError(f"cannot interpret axes {axes!r}: need y and x, and only t, c, z, y, x; pass --axes")
    order = _canonical(axes)
    perm = [axes.index(a) for a in order]
    return arr.transpose(perm), order, [None if p is None else perm.index(p) for p in positions]


class CanonicalReader:
    """Regions of a source array addressed in canonical axes (see `_to_canonical`)."""

    def __init__(self, source: Any, source_axes: str) -> None:
        shape_only = np.lib.stride_tricks.as_strided(np.zeros(1, bool), source.shape, (0,) * len(source.shape))
        view, self.axes, self.canonical_of = _to_canonical(shape_only, source_axes)
        self.source, self.source_axes = source, source_axes
        self.shape = tuple(view.shape)
        self.dtype = np.dtype(source.dtype)
        chunks = tuple(getattr(source, "chunks", source.shape))
        self.chunks = tuple(next(min(chunks[i], n) for i, c in enumerate(self.canonical_of) if c == j)
                            for j, n in enumerate(self.shape))

    def dask(self):
        """This level as a lazy dask array in canonical axes."""
        return _to_canonical(checked_dask(self.source), self.source_axes)[0]

    def __getitem__(self, key: tuple) -> np.ndarray:
        src_key = tuple(0 if c is None else key[c] for c in self.canonical_of)
        out = np.asarray(self.source[src_key])
        kept = [c for c, k in zip(self.canonical_of, src_key) if c is not None and not isinstance(k, (int, np.integer))]
        return out.transpose(np.argsort(kept)) if kept != sorted(kept) else out


def _guess_axes(shape: tuple[int, ...]) -> str:
    """Axis names for an array without metadata (documented in the README)."""
    nd = len(shape)
    if nd == 2:
        return "yx"
    if nd == 3:
        if shape[-1] in (3, 4) and shape[0] > 4:
            return "yxc"
        return "cyx" if shape[0] <= 4 else "zyx"
    if nd == 4:
        return "czyx"
    if nd == 5:
        return "tczyx"
    raise ImageUsageError(f"cannot guess the axes of a {nd}-D array with shape {shape}; pass --axes")


def _check_axes(axes: str, ndim: int) -> str:
    axes = axes.lower()
    if len(axes) != ndim:
        raise ImageUsageError(f"--axes {axes!r} has {len(axes)} letters but the image has {ndim} dimensions")
    return axes


def _open_tiff(path: Path, axes: str | None) -> Image:
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            if 0 in series.shape:
                _raise_zero_sized(path, series.shape)
            tiff_axes = "".join(_TIFF_AXES.get(a, a.lower()) for a in series.axes)
            nlevels = len(series.levels)
            pixel_size = _tiff_pixel_size(tif, series)
            channel_names = _ome_channel_names(tif)
            fmt = "OME-TIFF" if tif.is_ome else ("BigTIFF" if tif.is_bigtiff else "TIFF")
            if nlevels > 1:
                fmt += f", pyramid of {nlevels}"
            page = series.keyframe
            chunked = page.is_tiled
            tiled = {}  # levels read tile by tile, sharing one cache of decoded tiles
            if all(tiles_supported(series, level) for level in range(nlevels)):
                cache = cache_for(series.levels[0].pages[0])
                tiled = {level: TiffTiles(path, series.levels[level].pages[0], level, cache)
                         for level in range(nlevels)}
    except ImageReadError:
        raise
    except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError, struct_error()) as err:
        raise ImageReadError(
            f"{path} is not a readable TIFF ({_first_line(err)}); biounet reads TIFF, OME-TIFF, zarr and "
            "OME-Zarr: check the file or convert it"
        ) from None
    readers = []
    for level in range(nlevels):
        try:
            arr = tiled.get(level)
            if arr is None:
                arr = zarr.open(tifffile.imread(path, aszarr=True, series=0, level=level), mode="r")
        except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError, struct_error()) as err:
            raise ImageReadError(f"{path} is not a readable TIFF (level {level}: {_first_line(err)}); check the file") from None
        source = _CheckedArray(arr, path, level)
        readers.append(CanonicalReader(source, _check_axes(axes, source.ndim) if axes else tiff_axes))
    if any(s == 0 for s in readers[0].shape):
        _raise_zero_sized(path, readers[0].shape)
    if not chunked:
        fmt += ", striped"
    return Image(path, readers[0].axes, readers, pixel_size, fmt, channel_names)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _raise_zero_sized(path: Path, shape: tuple[int, ...]) -> None:
    raise ImageReadError(f"{path} has a zero-sized dimension (shape {tuple(shape)}): there is nothing to segment; check the file")


class _CheckedArray:
    """A zarr array whose reads fail with an ImageReadError naming the file.

    A truncated or corrupt slide often opens fine (only the header is read) and
    fails when a tile is decoded, deep inside dask and a worker thread; this turns
    whatever the decoder raised into a one-line message saying which file and
    which region could not be read.
    """

    def __init__(self, arr: Any, path: Path, level: int) -> None:
        self.arr, self.path, self.level = arr, path, level
        self.shape, self.dtype, self.ndim = tuple(arr.shape), np.dtype(arr.dtype), arr.ndim
        self.chunks = tuple(arr.chunks)

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            return np.asarray(self.arr[key])
        except Exception as err:  # noqa: BLE001 - decoders raise anything (zlib, tifffile, codecs, OSError)
            region = ", ".join(f"{k.start}:{k.stop}" if isinstance(k, slice) else str(k) for k in
                               (key if isinstance(key, tuple) else (key,)))
            where = f"level {self.level}, " if self.level else ""
            raise ImageReadError(
                f"cannot read {self.path} ({where}region [{region}]: {_first_line(err)}); "
                "the file may be truncated or corrupt: check it or copy it again"
            ) from err


def checked_dask(source: "_CheckedArray"):
    """A lazy dask view of a checked zarr array (its chunks)."""
    import dask.array as da

    arr = source.arr
    name = f"biounet-read-{dask_token(source.path, source.level, arr.shape, str(arr.dtype))}"
    return da.from_array(source, chunks=arr.chunks, name=name, inline_array=True,
                         asarray=False, meta=np.empty((0,) * arr.ndim, dtype=arr.dtype))


def dask_token(path: Path, *parts: Any) -> str:
    """A dask name for a file's array: changes when the file does."""
    from dask.base import tokenize

    try:
        stat = Path(path).stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        stamp = None
    return tokenize(str(Path(path).resolve()), stamp, *parts)


def struct_error() -> type:
    import struct

    return struct.error


def _tiff_pixel_size(tif: tifffile.TiffFile, series: Any) -> dict[str, tuple[float, str]]:
    if tif.is_ome and tif.ome_metadata:
        try:
            meta = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
            meta = meta[0] if isinstance(meta, list) else meta
            pixels = meta["Pixels"]
            out = {}
            for ax in "xyz":
                size = pixels.get(f"PhysicalSize{ax.upper()}")
                if size:
                    unit = pixels.get(f"PhysicalSize{ax.upper()}Unit", "µm")
                    out[ax] = (float(size), _unit_name(unit))
            if out:
                return out
        except (KeyError, TypeError, ValueError):
            pass
    page = series.keyframe
    tags = page.tags
    if "XResolution" in tags and "ResolutionUnit" in tags:
        unit = tags["ResolutionUnit"].value
        factor = {2: 25400.0, 3: 10000.0}.get(int(unit))  # inch, cm -> micrometre
        if factor:
            out = {}
            for ax, tag in (("x", "XResolution"), ("y", "YResolution")):
                num, den = tags[tag].value
                if num:
                    out[ax] = (factor * den / num, "micrometer")
            if out and not all(abs(v[0] - factor) < 1e-9 for v in out.values()):
                return out
    return {}


def _unit_name(unit: str) -> str:
    return {"µm": "micrometer", "um": "micrometer", "nm": "nanometer", "mm": "millimeter"}.get(unit, unit)


def _ome_channel_names(tif: tifffile.TiffFile) -> list[str] | None:
    if not (tif.is_ome and tif.ome_metadata):
        return None
    try:
        meta = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
        meta = meta[0] if isinstance(meta, list) else meta
        channels = meta["Pixels"].get("Channel", [])
        channels = channels if isinstance(channels, list) else [channels]
        names = [c.get("Name") for c in channels]
        return names if names and all(names) else None
    except (KeyError, TypeError, ValueError):
        return None


def _open_zarr(path: Path, axes: str | None) -> Image:
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as err:  # zarr raises many types for broken stores
        raise ImageReadError(f"{path} is not a readable zarr store ({type(err).__name__}: {_first_line(err)}); check it") from None
    pixel_size: dict[str, tuple[float, str]] = {}
    if isinstance(node, zarr.Array):
        arrays = [node]
        node_axes = _check_axes(axes, node.ndim) if axes else _guess_axes(node.shape)
        fmt = f"zarr v{node.metadata.zarr_format} array"
        names = None
    else:
        attrs = dict(node.attrs)
        ome = attrs.get("ome", attrs)
        multiscales = ome.get("multiscales")
        if not multiscales:
            raise ImageReadError(f"{path} is a zarr group without OME-Zarr multiscales metadata; point at an array inside it")
        ms = multiscales[0]
        try:
            arrays = [node[d["path"]] for d in ms["datasets"]]
        except (KeyError, TypeError) as err:
            raise ImageReadError(f"{path}: OME-Zarr multiscales name a dataset that is missing ({_first_line(err)}); check the store") from None
        node_axes = "".join(a["name"] if isinstance(a, dict) else a for a in ms.get("axes", [])) or _guess_axes(arrays[0].shape)
        if axes:
            node_axes = _check_axes(axes, arrays[0].ndim)
        version = ome.get("version") or ms.get("version", "")
        fmt = f"OME-Zarr {version}".strip()
        if len(arrays) > 1:
            fmt += f", pyramid of {len(arrays)}"
        pixel_size = _ngff_pixel_size(ms, node_axes)
        names = _omero_names(ome)
    readers = [CanonicalReader(_CheckedArray(arr, path, i), node_axes) for i, arr in enumerate(arrays)]
    if any(s == 0 for s in readers[0].shape):
        _raise_zero_sized(path, readers[0].shape)
    return Image(path, readers[0].axes, readers, pixel_size, fmt, names)


def _ngff_pixel_size(ms: dict, axes: str) -> dict[str, tuple[float, str]]:
    try:
        scale = next(t["scale"] for t in ms["datasets"][0]["coordinateTransformations"] if t["type"] == "scale")
    except (KeyError, StopIteration):
        return {}
    units = {a["name"]: a.get("unit", "") for a in ms.get("axes", []) if isinstance(a, dict)}
    return {a: (float(s), units.get(a, "")) for a, s in zip(axes, scale) if a in "zyx"}


def _omero_names(ome: dict) -> list[str] | None:
    channels = ome.get("omero", {}).get("channels")
    names = [c.get("label") for c in channels] if channels else None
    return names if names and all(names) else None


def describe(image: Image) -> dict:
    """A JSON-friendly summary (used by `biounet info`)."""
    return {
        "path": str(image.path),
        "format": image.format,
        "shape": list(image.shape),
        "axes": image.axes,
        "dtype": str(image.dtype),
        "chunks": list(image.chunks),
        "levels": [list(reader.shape) for reader in image.readers],
        "pixel_size": {k: list(v) for k, v in image.pixel_size.items()},
        "channels": image.channel_names,
    }


__all__ = ["Image", "ImageReadError", "ImageUsageError", "InputNotFoundError", "PixelTypeError", "check_pixel_type",
           "open_image", "describe"]
