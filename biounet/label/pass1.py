"""Label pass 1: one block's window labelled, and the small facts the merge needs.

The window is the block's class map with `halo` pixels of its neighbours
(`biounet.label.window`). Inside it: seeds (4-connected components of the seed
class), grown up to `expand` pixels to the nearest seed, and orphans
(foreground no seed reaches) labelled in the block's core only (outside it, a
seed beyond the window may reach a pixel, so whether it is an orphan is not
known there). For each window id it notes its pixel count in the core, one
representative pixel (its first seed or orphan pixel in the window) and the
slide-wide raster position of its first core pixel, and it keeps the core's
rim: the outer `halo` rows and columns of ids and the seed flags of the
outermost ones. That is all the merge reads (`BlockLabels`, tens of kilobytes);
pass 2 labels the window again, which costs less than storing the ids.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from biounet.label import kernels
from biounet.label.rules import InstanceRule, disc_offsets
from biounet.plan.blocks import Block

SIDES = ("top", "bottom", "left", "right")
_EDGE = (0, -1, (slice(None), 0), (slice(None), -1))
NO_KEY = np.iinfo(np.int64).max


def grow(seeds: np.ndarray, mask: np.ndarray, distance: int) -> np.ndarray:
    """Give every `mask` pixel within `distance` of a seed the label of its nearest seed
    pixel (skimage's `expand_labels`, restricted to `mask`); among equally near seed
    pixels the first offset in raster order wins, so the result depends only on the
    seeds around a pixel (exact over blocks)."""
    seeds = np.ascontiguousarray(seeds, np.int32)
    mask = np.ascontiguousarray(mask, np.bool_)
    if distance <= 0:
        return np.where(mask, seeds, 0).astype(np.int32)
    return kernels.grow(seeds, mask, disc_offsets(distance))


def label_window(classes: np.ndarray, rule: InstanceRule, core: tuple[slice, slice] | None = None) -> tuple[np.ndarray, int]:
    """Seeded expansion inside one window: int32 labels, seeds first (ids 1..n_seeds),
    then orphans of `core` (default: the whole window) in raster order."""
    classes = np.ascontiguousarray(classes)
    seeds = classes == rule.seed_class
    local, n_seeds = kernels.label4(seeds)
    foreground = classes > 0
    if rule.expand > 0:
        local = kernels.grow(local, foreground, disc_offsets(rule.expand))
    if kernels.any_other(classes, rule.seed_class):  # else every foreground pixel is a seed: no orphans
        ys, xs = core or (slice(0, classes.shape[0]), slice(0, classes.shape[1]))
        kernels.add_orphans(local, foreground, ys.start, ys.stop, xs.start, xs.stop, n_seeds + 1)
    return local, int(n_seeds)


@dataclass(frozen=True)
class Rim:
    """The outer rows and columns of a block's core: local ids (top, bottom, left,
    right), each `width` pixels deep (less in smaller blocks), and the seed flags of
    the outermost row or column of each side. Copies, in the smallest dtype that
    holds the ids."""

    ids: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    seed: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

    @classmethod
    def of(cls, ids: np.ndarray, seed: np.ndarray, width: int) -> "Rim":
        dtype = np.uint16 if ids.size == 0 or ids.max() < 2**16 else np.int32
        bands = tuple(b.astype(dtype) for b in (ids[:width], ids[-width:], ids[:, :width], ids[:, -width:]))
        return cls(bands, tuple(np.array(seed[at], copy=True, order="C") for at in _EDGE))

    def edge(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, seed) along one outermost row or column: "top", "bottom", "left", "right"."""
        i = SIDES.index(side)
        return self.ids[i][_EDGE[i]], self.seed[i]

    def at(self, block: Block, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Local ids at slide pixels (ys, xs) of `block` that lie in this rim."""
        top, bottom, left, right = self.ids
        out = np.full(len(ys), -1, np.int64)
        y, x = ys - block.y0, xs - block.x0
        from_bottom = y - (block.y1 - block.y0 - len(bottom))
        from_right = x - (block.x1 - block.x0 - right.shape[1])
        for band, where, yy, xx in ((top, y < len(top), y, x), (bottom, from_bottom >= 0, from_bottom, x),
                                    (left, x < left.shape[1], y, x), (right, from_right >= 0, y, from_right)):
            where = where & (out < 0)
            out[where] = band[yy[where], xx[where]]
        if (out < 0).any():
            raise ValueError("a representative lies outside its block's rim")
        return out


@dataclass
class BlockLabels:
    """Pass-1 result of one block: how many local ids, their sizes, kinds,
    representatives, first-pixel keys, and the core's rim."""

    block: Block
    count: int
    n_seeds: int
    sizes: np.ndarray  # pixels in the core of local ids 1..count
    reps: np.ndarray  # (count, 2) slide (y, x) of each id's representative
    keys: np.ndarray  # slide-wide raster position of each id's first core pixel (NO_KEY if absent)
    rim: Rim

    @property
    def is_seed(self) -> np.ndarray:
        """By local id, [0] = background."""
        out = np.arange(self.count + 1) <= self.n_seeds
        out[0] = False
        return out

    def to_bytes(self) -> bytes:
        """A compact record (npz) for the run folder."""
        arrays = {"head": np.array([self.block.index, self.count, self.n_seeds], np.int64),
                  "sizes": self.sizes.astype(np.int64), "reps": self.reps.astype(np.int64), "keys": self.keys}
        for side, ids, seed in zip(SIDES, self.rim.ids, self.rim.seed):
            arrays[f"ids_{side}"], arrays[f"seed_{side}"] = ids, seed
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, block: Block) -> "BlockLabels":
        with np.load(io.BytesIO(data)) as f:
            index, count, n_seeds = (int(v) for v in f["head"])
            if index != block.index:
                raise ValueError(f"pass-1 record of block {index} read for block {block.index}")
            rim = Rim(tuple(f[f"ids_{s}"] for s in SIDES), tuple(f[f"seed_{s}"] for s in SIDES))
            return cls(block, count, n_seeds, f["sizes"], f["reps"], f["keys"], rim)


def first_pass(window: np.ndarray, origin: tuple[int, int], block: Block, rule: InstanceRule,
               shape: tuple[int, ...]) -> BlockLabels:
    """Pass 1 of `block` from its halo `window` of classes at slide position `origin`;
    `shape` is the labels array's (..., Y, X)."""
    y0, x0 = origin
    cy0, cx0 = block.y0 - y0, block.x0 - x0
    cy1, cx1 = cy0 + block.y1 - block.y0, cx0 + block.x1 - block.x0
    window = np.ascontiguousarray(window)
    local, n_seeds = label_window(window, rule, (slice(cy0, cy1), slice(cx0, cx1)))
    count = int(local.max()) if local.size else 0  # ids only in the halo get size 0
    sizes, first_core, first = kernels.describe_ids(local, window, rule.seed_class, n_seeds, count, cy0, cy1, cx0, cx1)
    sizes, first_core, first = sizes[1:], first_core[1:], first[1:]
    absent = sizes == 0
    wide = local.shape[1]
    first[absent] = cy0 * wide + cx0  # inside the block: never looked up elsewhere
    reps = np.stack([first // wide + y0, first % wide + x0], axis=1)
    width = block.x1 - block.x0
    plane = int(np.ravel_multi_index(block.plane, shape[:-2])) if block.plane else 0
    keys = (plane * shape[-2] + block.y0 + first_core // width) * shape[-1] + block.x0 + first_core % width
    keys[absent] = NO_KEY
    core = local[cy0:cy1, cx0:cx1]
    rim = Rim.of(core, window[cy0:cy1, cx0:cx1] == rule.seed_class, rule.halo)
    return BlockLabels(block, count, n_seeds, sizes, reps, keys, rim)
