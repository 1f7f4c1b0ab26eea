"""The output OME-Zarr: its arrays (every pyramid level), block writes and reads.

Layout of an output:

    OUT/0, 1, ...                 the input image (its dtype, all channels), 2x2-mean pyramid
    OUT/labels/classes/0, 1, ...  class map (uint8), nearest-pixel pyramid
    OUT/labels/instances/0, ...   instance ids (int32), nearest-pixel pyramid
    OUT/probabilities/0, ...      optional per-class probabilities (c axis), 2x2-mean pyramid
    OUT/.biounet                  the run folder (`biounet.write.runfolder`)

Every array of every level is created when the run starts, so block tasks
only ever write whole chunks (NGFF 0.4) or whole shards (NGFF 0.5) of arrays
that exist: no two tasks touch the same file, on any number of machines.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from biounet.plan.blocks import Block
from biounet.plan.layout import OutputLayout

IMAGE, CLASSES, INSTANCES, PROBABILITIES = "", "labels/classes", "labels/instances", "probabilities"

# zarr by default compares every chunk written with the fill value, to skip empty
# ones: that check cost more than compressing (6.3 against 2.8 ms of CPU for a
# 1024^2 uint8 chunk of classes). biounet writes each chunk once, whole: empty
# chunks are written too (a few bytes each).
WRITE_CONFIG = {"write_empty_chunks": True}


class OutputError(ValueError):
    """An output location that cannot be used."""


@dataclass(frozen=True)
class ArraySpec:
    """One array of the output: where, what type, channels (0: none) and how its
    pyramid is made (`labels`: every second pixel; otherwise 2x2 means)."""

    path: str
    dtype: str
    channels: int = 0
    labels: bool = True

    @property
    def name(self) -> str:
        return self.path.split("/")[-1] if self.path else "image"


def _default_compressor():
    """zarr's default for v2 arrays (zstd at its default level), which labels keep."""
    import numcodecs

    return numcodecs.Zstd(level=0)


def write_array_v2(path: Path, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: str, compressor,
                   root: Path) -> None:
    """Create an empty zarr v2 array (chunk keys "i/j", fill 0): its `.zarray` and `.zattrs`,
    and `.zgroup` in every parent folder up to `root` that lacks one."""
    import json

    meta = {"shape": list(shape), "chunks": list(chunks), "dtype": np.dtype(dtype).str, "fill_value": 0,
            "order": "C", "filters": None, "dimension_separator": "/",
            "compressor": compressor.get_config() if compressor is not None else None, "zarr_format": 2}
    path.mkdir(parents=True, exist_ok=True)
    (path / ".zarray").write_text(json.dumps(meta, indent=2))
    (path / ".zattrs").write_text("{}")
    for parent in path.parents:
        if (parent / ".zgroup").exists() or not parent.is_relative_to(root):
            break
        (parent / ".zgroup").write_text(json.dumps({"zarr_format": 2}, indent=2))


def level_path(group_path: str, level: int) -> str:
    """Path of a pyramid level inside the store ("" is the root group: the image)."""
    return f"{group_path}/{level}" if group_path else str(level)


def image_compressor(zarr_format: int):
    """Blosc lz4 with bit shuffling, for grey values: on 16-bit microscopy about as
    small as zarr's default zstd at a tenth of its CPU (a 1024^2 uint16 chunk: encode
    1.0 ms, decode 1.0 ms, 1017 kB; Blosc zstd-1 bit-shuffled: 2.5 / 3.1 ms, 922 kB;
    default zstd: 20 / 3.2 ms, 1065 kB). The image is read back for pyramids and the
    object table, so decoding speed counts twice. Labels keep zarr's default zstd,
    which suits their long runs."""
    if zarr_format == 2:
        import numcodecs

        return numcodecs.Blosc("lz4", 5, numcodecs.Blosc.BITSHUFFLE)
    return zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")


def prepare_output(path: Path, overwrite: bool, exist_ok: bool = False) -> None:
    """Check an output location: refuse an existing one unless `overwrite` (which
    removes it) or `exist_ok` (a resume); the parent folder must be writable."""
    path = Path(path)
    if path.exists() and not exist_ok:
        if not overwrite:
            raise OutputError(f"output {path} exists; pass --overwrite to replace it")
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    elif path.exists() and not path.is_dir():
        raise OutputError(f"output {path} exists and is not a folder; pass --overwrite or choose another -o")
    parent = path.resolve().parent
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"cannot write {path}: {parent} is a file, not a folder; choose another -o")
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {parent} does not exist; create it or choose another -o")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into {parent} (permission denied); choose another -o")


class OutputStore:
    """The arrays of one output and block-wise access to them (one per process)."""

    def __init__(self, root: str | os.PathLike, layout: OutputLayout, specs: list[ArraySpec]) -> None:
        self.root = Path(root)
        self.layout = layout
        self.specs = {s.path: s for s in specs}
        self._open: dict[tuple[str, int], zarr.Array] = {}
        self._lock = threading.Lock()

    def create(self) -> None:
        """The root group and every level of every array (empty)."""
        zf = self.layout.zarr_format
        zarr.open_group(str(self.root), mode="a", zarr_format=zf)
        for spec in self.specs.values():
            for level in range(self.layout.levels):
                self._create(spec, level)
        if any(p.startswith("labels/") for p in self.specs):
            zarr.open_group(str(self.root), path="labels", mode="a", zarr_format=zf)

    def _create(self, spec: ArraySpec, level: int) -> None:
        zf = self.layout.zarr_format
        axes, shape = self.layout.array_shape(level, spec.channels)
        chunks, shards = self.layout.chunking(level, spec.channels)
        if zf == 2:  # the metadata file as zarr writes it, without zarr's machinery (~6 ms an array)
            compressor = image_compressor(2) if spec.path == IMAGE else _default_compressor()
            write_array_v2(self.root / level_path(spec.path, level), shape, chunks, spec.dtype, compressor, self.root)
            return
        kwargs: dict = {"compressors": image_compressor(zf)} if spec.path == IMAGE else {}
        if zf == 2:
            kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        else:
            kwargs["dimension_names"] = list(axes)
        if shards is not None:
            kwargs["shards"] = shards
        zarr.create_array(store=str(self.root), name=level_path(spec.path, level), shape=shape, chunks=chunks,
                          dtype=spec.dtype, fill_value=0, zarr_format=zf, overwrite=True, **kwargs)

    def array(self, path: str, level: int = 0) -> zarr.Array:
        """An array of the output, opened once per process, to read and write blocks."""
        key = (path, level)
        with self._lock:
            if key not in self._open:
                arr = zarr.open_array(str(self.root), path=level_path(path, level), mode="r+")
                self._open[key] = arr.with_config(WRITE_CONFIG)
            return self._open[key]

    def index(self, path: str, block: Block) -> tuple:
        """Index of `block` (a block of any level) in an array: all of its channels."""
        axes, _ = self.layout.array_shape(0, self.specs[path].channels)
        return block.index_in(axes)

    def write(self, path: str, level: int, block: Block, data: np.ndarray) -> None:
        """Write a whole block (all channels; the block's region in the array's axes).

        With NGFF 0.4 a block is one chunk: it is encoded and written as a file
        directly (atomically), without zarr's per-call machinery (an event loop and
        a thread hop per chunk, several milliseconds of CPU per block)."""
        arr = self.array(path, level)
        index = self.index(path, block)
        if arr.metadata.zarr_format == 2:
            _write_chunk_v2(self.root / level_path(path, level), arr, index, np.asarray(data))
        else:
            arr[index] = data

    def read(self, path: str, level: int, block: Block, ys: slice | None = None, xs: slice | None = None,
             channel=slice(None)) -> np.ndarray:
        """A block (or rows `ys` and columns `xs` of its plane) of an array."""
        axes, _ = self.layout.array_shape(0, self.specs[path].channels)
        index = block.index_in(axes, ys, xs, channel)
        return read_index(self.array(path, level), self.root / level_path(path, level), index)

    def file_count(self) -> int:
        """Files in the output folder (the run folder included)."""
        return sum(len(files) for _, _, files in os.walk(self.root))


def read_index(arr: zarr.Array, folder: Path, index: tuple) -> np.ndarray:
    """The region `index` (ints and unit-step slices) of an array stored in `folder`: zarr
    v2 chunk files decoded directly (`_read_v2`), zarr v3 through zarr."""
    if arr.metadata.zarr_format == 2:
        return _read_v2(folder, arr, index)
    return np.asarray(arr[index])


def _chunk_grid(arr: zarr.Array, index: tuple) -> list[tuple[int, ...]]:
    """Chunk coordinates of every chunk an index (ints and unit-step slices) touches."""
    from itertools import product

    ranges = []
    for key, n, c in zip(index, arr.shape, arr.chunks):
        if isinstance(key, slice):
            start, stop, _ = key.indices(n)
            ranges.append(range(start // c, max(start // c, -(-stop // c))))
        else:
            ranges.append(range(int(key) // c, int(key) // c + 1))
    return list(product(*ranges))


_MADE: set[Path] = set()  # chunk folders known to exist (zarr v2 keys "i/j" are nested folders)


def _chunk_path(folder: Path, coords: tuple[int, ...]) -> Path:
    return folder.joinpath(*map(str, coords))


def _write_chunk_v2(folder: Path, arr: zarr.Array, index: tuple, data: np.ndarray) -> None:
    """Write `data` at `index`, which covers exactly one chunk (clipped to the array):
    padded to the chunk's shape with the fill value, encoded, written atomically."""
    (coords,) = _chunk_grid(arr, index)
    full = np.zeros(arr.chunks, arr.dtype)
    origin = [k * c for k, c in zip(coords, arr.chunks)]
    region = tuple(slice(0, min(c, n - o)) for c, n, o in zip(arr.chunks, arr.shape, origin))
    full[region] = data.reshape(tuple(r.stop for r in region))
    compressor = arr.metadata.compressor
    payload = compressor.encode(full) if compressor is not None else full.tobytes()
    path = _chunk_path(folder, coords)
    if path.parent not in _MADE:
        path.parent.mkdir(parents=True, exist_ok=True)
        _MADE.add(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        f = open(tmp, "wb")
    except FileNotFoundError:  # the output was removed and made again since (--overwrite)
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(tmp, "wb")
    with f:
        f.write(payload)
    os.replace(tmp, path)


def _read_v2(folder: Path, arr: zarr.Array, index: tuple) -> np.ndarray:
    """The region `index` (ints and unit-step slices) of a zarr v2 array, chunk files
    decoded directly (missing chunks are the fill value 0)."""
    starts, sizes, keep = [], [], []
    for key, n in zip(index, arr.shape):
        if isinstance(key, slice):
            start, stop, _ = key.indices(n)
            starts.append(start)
            sizes.append(max(0, stop - start))
            keep.append(True)
        else:
            starts.append(int(key))
            sizes.append(1)
            keep.append(False)
    out = np.zeros(sizes, arr.dtype)
    compressor = arr.metadata.compressor
    for coords in _chunk_grid(arr, index):
        path = _chunk_path(folder, coords)
        try:
            payload = path.read_bytes()
        except FileNotFoundError:
            continue
        raw = compressor.decode(payload) if compressor is not None else payload
        chunk = np.frombuffer(raw, arr.dtype).reshape(arr.chunks)
        src, dst = [], []
        for k, c, start, size in zip(coords, arr.chunks, starts, sizes):
            lo, hi = max(start, k * c), min(start + size, (k + 1) * c)
            src.append(slice(lo - k * c, hi - k * c))
            dst.append(slice(lo - start, hi - start))
        out[tuple(dst)] = chunk[tuple(src)]
    return out[tuple(slice(None) if k else 0 for k in keep)]
