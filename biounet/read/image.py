"""Open a slide lazily: named axes, pixel size, pyramid levels, regions read on demand.

TIFF family files (TIFF, OME-TIFF, BigTIFF, pyramids in series levels or
SubIFDs, and the whole-slide variants Aperio SVS, Hamamatsu NDPI, Leica SCN,
Philips TIFF, Ventana BIF) go through tifffile (tiled pages tile by tile,
others through its zarr interface), zarr arrays / OME-Zarr images through
zarr, and slides only OpenSlide reads (MRXS, ...) through OpenSlide, so
nothing is read until a region is asked for. Axes are always
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

from biounet.read import slide_meta, tiff_formats
from biounet.read.levels import downsamples
from biounet.read.tiff_tiles import TiffTiles, cache_for, tiles_supported

CANONICAL = "tczyx"
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders
READS = ("biounet reads TIFF (OME-TIFF, BigTIFF, Aperio SVS, Hamamatsu NDPI, Leica SCN, Philips TIFF, Ventana BIF), "
         "zarr, OME-Zarr and, with OpenSlide, MRXS and other whole-slide formats")
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
    pixel_size: {"y": (size, unit), "x": (size, unit), ...} of level 0 where known, from
        whatever the format stores (OME-XML, a scanner's metadata, TIFF resolution tags,
        OpenSlide's properties, NGFF scales).
    objective_power: the scanner's objective magnification (40.0 for a 40x scan), or None.
    metadata_source: where pixel_size and objective_power were read ("" if nowhere).
    rgb: the channels are a colour image's red, green and blue (a brightfield scan: TIFF
        samples stored as RGB or YCbCr, or a slide OpenSlide reads), not stains or channels.
    data, levels: level 0 and every level as dask arrays, made on first use.
    """

    path: Path
    axes: str
    readers: list["CanonicalReader"]
    pixel_size: dict[str, tuple[float, str]] = field(default_factory=dict)
    format: str = ""
    channel_names: list[str] | None = None
    objective_power: float | None = None
    metadata_source: str = ""
    rgb: bool = False

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

    @property
    def downsamples(self) -> list[tuple[float, float]]:
        """Each level's (y, x) downsample factor relative to level 0 (real, not rounded)."""
        return downsamples([(self.size_of(level, "y"), self.size_of(level, "x")) for level in range(len(self.readers))])

    def size_of(self, level: int, axis: str) -> int:
        """Length of `axis` at `level`, 1 if the image has no such axis."""
        return self.readers[level].shape[self.axes.index(axis)] if axis in self.axes else 1

    def level_pixel_size(self, level: int) -> dict[str, tuple[float, str]]:
        """The pixel size at `level`: level 0's times the level's downsample in y and x."""
        fy, fx = self.downsamples[level]
        out = dict(self.pixel_size)
        for axis, factor in (("y", fy), ("x", fx)):
            if axis in out:
                out[axis] = (out[axis][0] * factor, out[axis][1])
        return out

    def microns_per_pixel(self, level: int = 0) -> float | None:
        """The mean of y and x pixel size at `level` in micrometres, None where unknown."""
        sizes = [_to_microns(*self.level_pixel_size(level)[a]) for a in "yx" if a in self.pixel_size]
        sizes = [s for s in sizes if s is not None]
        return sum(sizes) / len(sizes) if sizes else None

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


_MICRONS = {"micrometer": 1.0, "nanometer": 1e-3, "millimeter": 1e3, "centimeter": 1e4, "meter": 1e6, "angstrom": 1e-4}


def _to_microns(size: float, unit: str) -> float | None:
    factor = _MICRONS.get(unit)
    return size * factor if factor is not None else None


def open_image(path: str | os.PathLike, axes: str | None = None, *, check_pixels: bool = True,
               openslide: bool = False) -> Image:
    """Open `path` lazily (see module docstring); `axes` overrides a guessed axis order.

    `check_pixels`: refuse pixel types biounet cannot segment (PixelTypeError), so a
    run stops before it writes anything. `openslide`: read a file through OpenSlide even
    where tifffile reads it (to compare the two; OpenSlide composes a Leica SCN's regions
    into the whole slide, where tifffile gives the main image alone).
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
        if openslide:
            image = _open_openslide(path, axes, _openslide_format(path))
        else:
            image = _open_tiff(path, axes) if _is_tiff(path) else _open_other(path, axes)
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


def _raise_if_broken(path: Path, messages: list[str]) -> None:
    """Refuse a TIFF whose structure tifffile logged as broken: a truncated file loses its
    later pages (pyramid levels) silently otherwise."""
    broken = tiff_formats.broken_structure(messages)
    if broken:
        raise ImageReadError(f"{path} is truncated or corrupt (tifffile: {_first_line(ValueError(broken))}); "
                             "check it or copy it again")


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in TIFF_MAGIC


def _open_other(path: Path, axes: str | None) -> Image:
    """A file that is no TIFF: a slide OpenSlide reads, else an error saying what biounet reads."""
    from biounet.read import openslide_levels

    vendor = openslide_levels.detect(path)
    if vendor is not None:
        return _open_openslide(path, axes, vendor)
    if path.suffix.lower() in openslide_levels.ONLY_OPENSLIDE and not openslide_levels.installed():
        raise ImageReadError(f"{path} is a slide only OpenSlide reads, and OpenSlide is not installed: "
                             f"{openslide_levels.INSTALL}")
    return _open_tiff(path, axes)  # fails, saying why it is no TIFF


def _open_tiff(path: Path, axes: str | None) -> Image:
    with tiff_formats.kept_log() as messages:
        try:
            with tifffile.TiffFile(path) as tif:
                index = tiff_formats.main_series(tif)
                series = tif.series[index]
                _raise_if_broken(path, messages)
                if 0 in series.shape:
                    _raise_zero_sized(path, series.shape)
                if tiff_formats.has_tile_joints(tif, series):
                    return _stitched_by_openslide(path, axes)
                tiff_axes = "".join(_TIFF_AXES.get(a, a.lower()) for a in series.axes)
                nlevels = len(series.levels)
                scan = tiff_formats.scan_info(tif, series)
                channel_names = _ome_channel_names(tif)
                fmt = tiff_formats.format_name(tif, series)
                if nlevels > 1:
                    fmt += f", pyramid of {nlevels}"
                page = series.keyframe
                rgb = "S" in series.axes and page.photometric in (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.YCBCR)
                chunked = page.is_tiled or bool(getattr(page, "is_ndpi", False) and len(page.dataoffsets) > 1)
                tiled = {}  # levels read tile by tile, sharing one cache of decoded tiles
                if all(tiles_supported(series, level) for level in range(nlevels)):
                    cache = cache_for(series.levels[0].pages[0])
                    tiled = {level: TiffTiles(path, series.levels[level].pages[0], level, cache)
                             for level in range(nlevels)}
        except ImageReadError:
            raise
        except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError, struct_error()) as err:
            _raise_if_broken(path, messages)
            raise ImageReadError(
                f"{path} is not a readable TIFF ({_first_line(err)}); {READS}: check the file or convert it"
            ) from None
    readers = []
    for level in range(nlevels):
        try:
            arr = tiled.get(level)
            if arr is None:
                with tiff_formats.kept_log():  # logged when the file was opened above
                    arr = zarr.open(tifffile.imread(path, aszarr=True, series=index, level=level), mode="r")
        except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError, struct_error()) as err:
            raise ImageReadError(f"{path} is not a readable TIFF (level {level}: {_first_line(err)}); check the file") from None
        source = _CheckedArray(arr, path, level)
        readers.append(CanonicalReader(source, _check_axes(axes, source.ndim) if axes else tiff_axes))
    if any(s == 0 for s in readers[0].shape):
        _raise_zero_sized(path, readers[0].shape)
    if not chunked:
        fmt += ", striped"
    return Image(path, readers[0].axes, readers, scan.pixel_size, fmt, channel_names, scan.objective_power,
                 scan.source, rgb)


def _openslide_format(path: Path) -> str:
    """OpenSlide's name for the format of `path`; an ImageReadError if it has none."""
    from biounet.read import openslide_levels

    if not openslide_levels.installed():
        raise ImageReadError(f"reading {path} through OpenSlide needs OpenSlide: {openslide_levels.INSTALL}")
    vendor = openslide_levels.detect(path)
    if vendor is None:
        raise ImageReadError(f"OpenSlide cannot read {path}: it is in no format OpenSlide knows, or truncated or "
                             "corrupt; check it or copy it again")
    return vendor


def _stitched_by_openslide(path: Path, axes: str | None) -> Image:
    """A Ventana BIF whose tiles overlap: OpenSlide stitches them (tifffile would not)."""
    from biounet.read import openslide_levels

    if not openslide_levels.installed():
        raise ImageReadError(f"{path} is a Ventana BIF whose tiles overlap; biounet stitches them with OpenSlide, "
                             f"which is not installed: {openslide_levels.INSTALL}")
    return _open_openslide(path, axes, "ventana")


OPENSLIDE_NAMES = {"aperio": "Aperio SVS", "hamamatsu": "Hamamatsu VMS/NDPI", "leica": "Leica SCN",
                   "mirax": "3DHISTECH MRXS",
                   "philips": "Philips TIFF", "sakura": "Sakura SVSLIDE", "trestle": "Trestle TIFF",
                   "ventana": "Ventana BIF", "generic-tiff": "TIFF", "dicom": "DICOM WSI", "zeiss": "Zeiss CZI"}


def _open_openslide(path: Path, axes: str | None, vendor: str) -> Image:
    """A slide through OpenSlide: its levels as RGB (y, x, c) arrays read region by region."""
    from biounet.read import openslide_levels

    name = OPENSLIDE_NAMES.get(vendor, vendor)
    try:
        slide = openslide_levels.Slide(path)
        levels = slide.levels()
        properties = dict(slide.slide.properties)
    except openslide_levels.errors() as err:
        raise ImageReadError(f"{path} is a {name} slide OpenSlide cannot open ({_first_line(err)}); "
                             "the file may be truncated or corrupt: check it or copy it again") from None
    if any(0 in level.shape for level in levels[:1]):
        _raise_zero_sized(path, levels[0].shape)
    readers = [CanonicalReader(_CheckedArray(level, path, i), _check_axes(axes, 3) if axes else "yxc")
               for i, level in enumerate(levels)]
    scan = slide_meta.openslide(properties)
    fmt = f"{name} (OpenSlide)" + (f", pyramid of {len(levels)}" if len(levels) > 1 else "")
    return Image(path, readers[0].axes, readers, scan.pixel_size, fmt, None, scan.objective_power, scan.source,
                 rgb=True)


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
            region = ", ".join(f"{_bound(k.start)}:{_bound(k.stop)}" if isinstance(k, slice) else str(k) for k in
                               (key if isinstance(key, tuple) else (key,)))
            where = f"level {self.level}, " if self.level else ""
            raise ImageReadError(
                f"cannot read {self.path} ({where}region [{region}]: {_first_line(err)}); "
                "the file may be truncated or corrupt: check it or copy it again"
            ) from err


def _bound(value: Any) -> str:
    return "" if value is None else str(value)


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
        "downsamples": [round((fy + fx) / 2, 4) for fy, fx in image.downsamples],
        "pixel_size": {k: list(v) for k, v in image.pixel_size.items()},
        "objective_power": image.objective_power,
        "metadata_source": image.metadata_source or None,
        "channels": image.channel_names,
    }


__all__ = ["Image", "ImageReadError", "ImageUsageError", "InputNotFoundError", "PixelTypeError", "check_pixel_type",
           "open_image", "describe"]
