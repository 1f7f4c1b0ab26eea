"""Regions of a tiled TIFF page read straight from its tiles, with a cache of decoded tiles.

A block's window reaches 92 px (the network's margin) into its neighbours, so
with 256 px tiles it touches 36 tiles for 16 of its own: decoding each tile
once, and keeping it until the neighbouring blocks (the next block, and the
next row of blocks) have read it, halves the decoding. Tiles are read with
`os.pread` (no shared file position, so any number of threads read at once)
and decoded by tifffile's own decoder of the page (every compression and
predictor tifffile knows; the decoders release the GIL).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

MIN_CACHE = 64 * 1024**2
MAX_CACHE = 512 * 1024**2


def tiles_supported(series, level: int) -> bool:
    """Whether a TIFF series level is one tiled 2-D page (samples contiguous), which this
    reader handles; anything else goes through tifffile's zarr store."""
    try:
        pages = series.levels[level].pages
        page = pages[0]
    except (IndexError, AttributeError):
        return False
    return (len(pages) == 1 and page is not None and page.is_tiled and page.tiledepth == 1
            and page.planarconfig == 1 and not getattr(page, "is_ndpi", False)
            and tuple(series.levels[level].shape) == tuple(page.shape) and len(page.shape) in (2, 3))


class TileCache:
    """Decoded tiles of one file (every level), least recently used dropped first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 0
        self._tiles: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
            return tile

    def put(self, key, tile: np.ndarray) -> None:
        with self._lock:
            if key in self._tiles:
                return
            self._tiles[key] = tile
            self.size += tile.nbytes
            while self.size > self.capacity and len(self._tiles) > 1:
                _, old = self._tiles.popitem(last=False)
                self.size -= old.nbytes


def cache_for(page) -> TileCache:
    """A cache holding three rows of tiles of the largest level (so the tiles a row of
    blocks shares with the next one are still there), within MIN_CACHE..MAX_CACHE."""
    row = page.shape[1] * page.tilelength * page.samplesperpixel * page.dtype.itemsize
    return TileCache(int(min(MAX_CACHE, max(MIN_CACHE, 3 * row))))


class TiffTiles:
    """One tiled page as an array: shape (Y, X) or (Y, X, S), regions by indexing."""

    def __init__(self, path: Path, page, level: int, cache: TileCache) -> None:
        self.path, self.level, self.cache = Path(path), level, cache
        self.shape = tuple(page.shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(page.dtype)
        self.tile = (page.tilelength, page.tilewidth)
        self.chunks = self.tile + self.shape[2:]
        self.offsets, self.counts = page.dataoffsets, page.databytecounts
        self.across = -(-self.shape[1] // page.tilewidth)
        self._decode = page.decode
        self._jpegtables = page.jpegtables
        self._fd = os.open(self.path, os.O_RDONLY)

    def __del__(self) -> None:
        try:
            os.close(self._fd)
        except (OSError, AttributeError):
            pass

    def _tile(self, row: int, col: int) -> np.ndarray:
        """Tile (row, col), (tilelength, tilewidth, samples), decoded or from the cache."""
        index = row * self.across + col
        key = (self.level, index)
        tile = self.cache.get(key)
        if tile is None:
            count = int(self.counts[index])
            data = os.pread(self._fd, count, int(self.offsets[index])) if count else None
            if count and len(data) != count:
                raise ValueError(f"tile {index} is cut short ({len(data)} of {count} bytes)")
            segment, _, _ = self._decode(data, index, jpegtables=self._jpegtables, _fullsize=True)
            if segment is None:
                raise ValueError(f"tile {index} could not be decoded")
            tile = np.asarray(segment).reshape(self.tile + (-1,))
            self.cache.put(key, tile)
        return tile

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        ys, xs, rest = key[0], key[1], key[2:]
        if isinstance(ys, slice) and isinstance(xs, slice) and (ys.step or 1) == 1 and (xs.step or 1) == 1:
            y0, y1, _ = ys.indices(self.shape[0])
            x0, x1, _ = xs.indices(self.shape[1])
            out = self._region(y0, max(y0, y1), x0, max(x0, x1))
        else:  # steps or single rows/columns: the needed rows and columns, tile row by tile row
            yi = np.arange(self.shape[0])[ys]
            xi = np.arange(self.shape[1])[xs]
            ya, xa = np.atleast_1d(yi), np.atleast_1d(xi)
            out = np.empty((len(ya), len(xa), self._samples()), self.dtype)
            if len(ya) and len(xa):
                for r in np.unique(ya // self.tile[0]):
                    rows = np.flatnonzero(ya // self.tile[0] == r)
                    band = self._region(int(r) * self.tile[0], min((int(r) + 1) * self.tile[0], self.shape[0]),
                                        int(xa.min()), int(xa.max()) + 1)
                    out[rows] = band[np.ix_(ya[rows] - int(r) * self.tile[0], xa - int(xa.min()))]
            out = out[(0 if np.ndim(yi) == 0 else slice(None), 0 if np.ndim(xi) == 0 else slice(None))]
        if self.ndim == 2:
            return out[..., 0]
        return out[(Ellipsis,) + rest] if rest else out

    def _samples(self) -> int:
        return self.shape[2] if self.ndim == 3 else 1

    def _region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        th, tw = self.tile
        out = np.empty((y1 - y0, x1 - x0, self._samples()), self.dtype)
        for row in range(y0 // th, -(-y1 // th)):
            ty0, ty1 = max(y0, row * th), min(y1, (row + 1) * th)
            for col in range(x0 // tw, -(-x1 // tw)):
                tx0, tx1 = max(x0, col * tw), min(x1, (col + 1) * tw)
                tile = self._tile(row, col)
                out[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0] = tile[ty0 - row * th : ty1 - row * th,
                                                                     tx0 - col * tw : tx1 - col * tw]
        return out
