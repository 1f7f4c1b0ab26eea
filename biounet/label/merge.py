"""The merge: the one global step of labelling, over what pass 1 kept of each block.

Union ids of seed (or orphan) pixels that touch across a block face, and union
each id whose representative lies in another block with the id found there
(both read from the rims: representatives lie within the halo, hence in a
neighbour's rim). Every object is then one set; small sets are dropped and the
rest numbered in raster order of their first pixel, so the ids do not depend
on the block layout. The cost follows the ids and the block faces, never the
pixels inside blocks.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from biounet.label.pass1 import NO_KEY, BlockLabels
from biounet.label.rules import InstanceRule


@dataclass
class Merge:
    """Final id of every provisional id (block i's local id l is offsets[i] + l)."""

    offsets: np.ndarray  # (blocks + 1,) int64
    lut: np.ndarray  # (total + 1,) int32; 0 = dropped or background
    count: int  # objects kept

    def block_lut(self, i: int) -> np.ndarray:
        """Final id by local id of block i (int32, [0] = 0)."""
        return np.concatenate([[0], self.lut[self.offsets[i] + 1 : self.offsets[i + 1] + 1]]).astype(np.int32)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, offsets=self.offsets, lut=self.lut, count=np.array([self.count]))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Merge":
        with np.load(io.BytesIO(data)) as f:
            return cls(f["offsets"], f["lut"], int(f["count"][0]))


def merged_roots(count: int, pairs: np.ndarray) -> np.ndarray:
    """For ids 0..count-1 joined by `pairs` (n, 2): the smallest id of each one's set
    (connected components of the graph, in C: no Python loop over objects)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(count, count))
    _, component = connected_components(graph, directed=False)
    smallest = np.full(component.max() + 1, count, np.int64)
    np.minimum.at(smallest, component, np.arange(count))
    return smallest[component]


def merge(results: Sequence[BlockLabels], shape: tuple[int, ...], rule: InstanceRule) -> Merge:
    """Join the blocks' pass-1 results (one per block of a grid covering every plane of
    `shape`, in any order) into final ids."""
    offsets = np.cumsum([0] + [r.count for r in results]).astype(np.int64)
    index = {(r.block.plane, r.block.y0, r.block.x0): i for i, r in enumerate(results)}
    starts_y = np.array(sorted({r.block.y0 for r in results}))
    starts_x = np.array(sorted({r.block.x0 for r in results}))
    grid: dict[tuple, np.ndarray] = {}  # per plane: result index of each (block row, block column)
    for i, r in enumerate(results):
        at = grid.setdefault(r.block.plane, np.full((len(starts_y), len(starts_x)), -1, np.int64))
        at[np.searchsorted(starts_y, r.block.y0), np.searchsorted(starts_x, r.block.x0)] = i
    seeds = [r.is_seed for r in results]

    def face(i: int, down: bool) -> np.ndarray:
        """(n, 2) provisional ids of same-kind pixels touching across block i's lower or right face."""
        b = results[i].block
        j = index[(b.plane, b.y1, b.x0) if down else (b.plane, b.y0, b.x1)]
        lab_a, seed_a = results[i].rim.edge("bottom" if down else "right")
        lab_b, seed_b = results[j].rim.edge("top" if down else "left")
        orphan_a = (lab_a > 0) & ~seeds[i][lab_a]
        orphan_b = (lab_b > 0) & ~seeds[j][lab_b]
        both = (seed_a & seed_b & (lab_a > 0) & (lab_b > 0)) | (orphan_a & orphan_b)
        # Repeated pairs (a run of touching pixels) are harmless for the union.
        return np.stack([lab_a[both].astype(np.int64) + offsets[i], lab_b[both].astype(np.int64) + offsets[j]], 1)

    def lookups(i: int) -> list[np.ndarray]:
        """(n, 2) provisional ids: each representative of block i that lies in another
        block j, and the id block j holds at its pixel (from j's rim)."""
        r, b = results[i], results[i].block
        ys, xs = r.reps[:, 0], r.reps[:, 1]
        away = np.flatnonzero((ys < b.y0) | (ys >= b.y1) | (xs < b.x0) | (xs >= b.x1))
        ys, xs = ys[away], xs[away]
        owner = grid[b.plane][np.searchsorted(starts_y, ys, side="right") - 1,
                              np.searchsorted(starts_x, xs, side="right") - 1]
        out = []
        for j in np.unique(owner).tolist():
            on = owner == j
            other = results[j].rim.at(results[j].block, ys[on], xs[on])
            ids = away[on] + 1 + offsets[i]
            out.append(np.stack([ids[other > 0], other[other > 0] + offsets[j]], 1))
        return out

    height, width = shape[-2:]
    faces = [face(i, down) for i, r in enumerate(results) for down in (True, False)
             if (r.block.y1 < height if down else r.block.x1 < width)]
    parts = [*faces, *(p for i in range(len(results)) for p in lookups(i))]
    total = int(offsets[-1])  # provisional global id = offset + local id
    roots = merged_roots(total + 1, np.concatenate([np.zeros((0, 2), np.int64), *parts]))
    sizes = np.zeros(total + 1, np.int64)
    keys = np.full(total + 1, NO_KEY, np.int64)
    for i, r in enumerate(results):
        sizes[offsets[i] + 1 : offsets[i + 1] + 1] = r.sizes
        keys[offsets[i] + 1 : offsets[i + 1] + 1] = r.keys
    root_sizes = np.bincount(roots, weights=sizes, minlength=total + 1)
    keep = root_sizes >= max(rule.min_size, 1)  # ids merged into another root have size 0
    keep[0] = False
    # Number objects by their first pixel in raster order: the same ids whatever the blocks.
    root_keys = np.full(total + 1, NO_KEY, np.int64)
    np.minimum.at(root_keys, roots, keys)
    kept_roots = np.flatnonzero(keep)
    kept_roots = kept_roots[np.argsort(root_keys[kept_roots], kind="stable")]
    if len(kept_roots) >= 2**31:
        raise OverflowError("more than 2^31 objects")
    final_of_root = np.zeros(total + 1, np.int32)
    final_of_root[kept_roots] = np.arange(1, len(kept_roots) + 1)
    lut = final_of_root[roots]
    lut[0] = 0
    return Merge(offsets, lut, len(kept_roots))
