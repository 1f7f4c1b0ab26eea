"""Compiled per-pixel loops of the labelling steps (numba, GIL released).

Each is a plain loop over one block's pixels. They release the GIL, so the
block tasks of a run label blocks on every core at once from threads of one
process. Compiled once per machine and cached next to this file (or in
NUMBA_CACHE_DIR where that is not writable).

Why numba: scipy.ndimage holds the GIL and needs several full-size passes
(label, distance transform, bincount, argsort); one compiled pass per step is
3-5x faster here and runs on both cores from threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from biounet.label.sums import sum_dtype, summands

_OPTIONS = {"cache": True, "nogil": True}


@njit(**_OPTIONS)
def _find(parent: np.ndarray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        parent[i], i = root, parent[i]
    return root


@njit(**_OPTIONS)
def label4(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of a 2-D boolean mask: int32 ids 1..n numbered in
    raster order of each component's first pixel (as scipy.ndimage.label)."""
    h, w = mask.shape
    out = np.zeros((h, w), np.int32)
    parent = np.empty((h * w) // 2 + w + 2, np.int32)  # bound on first pixels: none 4-adjacent
    n = 0
    for y in range(h):
        for x in range(w):
            if not mask[y, x]:
                continue
            up = out[y - 1, x] if y > 0 else 0
            left = out[y, x - 1] if x > 0 else 0
            if up == 0 and left == 0:
                n += 1
                parent[n] = n
                out[y, x] = n
            elif up == 0 or left == 0 or up == left:
                out[y, x] = up if left == 0 else left
            else:
                a, b = _find(parent, up), _find(parent, left)
                if a < b:
                    parent[b] = a
                elif b < a:
                    parent[a] = b
                out[y, x] = left
    # The smallest provisional id of a set is its first pixel's: number roots in order.
    final = np.zeros(n + 1, np.int32)
    count = 0
    for i in range(1, n + 1):
        r = _find(parent, i)
        if r == i:
            count += 1
            final[i] = count
        else:
            final[i] = final[r]
    for y in range(h):
        for x in range(w):
            if out[y, x]:
                out[y, x] = final[out[y, x]]
    return out, count


@njit(**_OPTIONS)
def grow(seeds: np.ndarray, mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Labels of `seeds` (int32) spread to `mask` pixels: each mask pixel without a seed
    takes the seed label at the first of `offsets` (k, 2), nearest first, that holds
    one (0 if none); pixels outside `mask` are 0."""
    h, w = seeds.shape
    out = np.zeros((h, w), np.int32)
    k = offsets.shape[0]
    for y in range(h):
        for x in range(w):
            if not mask[y, x]:
                continue
            s = seeds[y, x]
            if s == 0:
                for i in range(k):
                    yy, xx = y + offsets[i, 0], x + offsets[i, 1]
                    if 0 <= yy < h and 0 <= xx < w and seeds[yy, xx] != 0:
                        s = seeds[yy, xx]
                        break
            out[y, x] = s
    return out


@njit(**_OPTIONS)
def any_other(classes: np.ndarray, seed_class: int) -> bool:
    """Whether any pixel is foreground of another class than `seed_class`."""
    flat = classes.ravel()
    for i in range(flat.size):
        if flat[i] != 0 and flat[i] != seed_class:
            return True
    return False


@njit(**_OPTIONS)
def add_orphans(local: np.ndarray, foreground: np.ndarray, y0: int, y1: int, x0: int, x1: int, first_id: int) -> int:
    """Number the 4-connected components of foreground that `local` leaves at 0 inside
    rows y0:y1, columns x0:x1, from `first_id` on, in raster order (in place).
    Returns the number of components."""
    h, w = y1 - y0, x1 - x0
    free = np.zeros((h, w), np.bool_)
    for y in range(h):
        for x in range(w):
            free[y, x] = foreground[y0 + y, x0 + x] and local[y0 + y, x0 + x] == 0
    ids, n = label4(free)
    for y in range(h):
        for x in range(w):
            if ids[y, x]:
                local[y0 + y, x0 + x] = ids[y, x] + first_id - 1
    return n


@njit(**_OPTIONS)
def describe_ids(local: np.ndarray, classes: np.ndarray, seed_class: int, n_seeds: int, count: int,
                 y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For window ids 1..count: pixels inside the core (rows y0:y1, columns x0:x1), the
    flat index (in the core) of their first core pixel, and the flat index (in the
    window) of their first seed pixel (seed ids) or first pixel (orphan ids).
    Absent entries are the array sizes. Index 0 is the background."""
    h, w = local.shape
    sizes = np.zeros(count + 1, np.int64)
    first_core = np.full(count + 1, (y1 - y0) * (x1 - x0), np.int64)
    first = np.full(count + 1, h * w, np.int64)
    cw = x1 - x0
    for y in range(h):
        inside_y = y0 <= y < y1
        for x in range(w):
            v = local[y, x]
            if v == 0:
                continue
            if first[v] == h * w and (classes[y, x] == seed_class or v > n_seeds):
                first[v] = y * w + x
            if inside_y and x0 <= x < x1:
                if sizes[v] == 0:
                    first_core[v] = (y - y0) * cw + x - x0
                sizes[v] += 1
    return sizes, first_core, first


@njit(**_OPTIONS)
def relabel_and_measure(local: np.ndarray, lut: np.ndarray, image: np.ndarray, high: np.ndarray, y0: int, x0: int,
                        total: np.ndarray, total_high: np.ndarray):
    """Final ids of a block (`lut` maps its local ids; 0 drops one) and, per local id,
    the sums the object table needs: pixels, sum of rows, sum of columns (slide
    coordinates), and the bounding box (y0, x0, y1, x1); `image` values are added to
    `total` and, if `high` has pixels, its values to `total_high` (both by local id,
    in place: their types make the sums exact, see biounet.label.sums)."""
    h, w = local.shape
    n = lut.shape[0]
    split = high.size > 0
    final = np.zeros((h, w), np.int32)
    area = np.zeros(n, np.int64)
    sum_y = np.zeros(n, np.int64)
    sum_x = np.zeros(n, np.int64)
    box = np.empty((n, 4), np.int64)
    for i in range(n):
        box[i, 0], box[i, 1], box[i, 2], box[i, 3] = 1 << 62, 1 << 62, -1, -1
    for y in range(h):
        for x in range(w):
            v = local[y, x]
            if v == 0:
                continue
            f = lut[v]
            if f == 0:
                continue
            final[y, x] = f
            area[v] += 1
            sum_y[v] += y + y0
            sum_x[v] += x + x0
            total[v] += image[y, x]
            if split:
                total_high[v] += high[y, x]
            box[v, 0] = min(box[v, 0], y + y0)
            box[v, 1] = min(box[v, 1], x + x0)
            box[v, 2] = max(box[v, 2], y + y0 + 1)
            box[v, 3] = max(box[v, 3], x + x0 + 1)
    return final, area, sum_y, sum_x, box


@njit(**_OPTIONS)
def relabel(local: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """`lut[local]` as int32 (pass 2 without measuring)."""
    h, w = local.shape
    final = np.zeros((h, w), np.int32)
    for y in range(h):
        for x in range(w):
            v = local[y, x]
            if v:
                final[y, x] = lut[v]
    return final


def warm_up() -> None:
    """Load every kernel's compiled code (numba's first call in a process takes about
    0.5 s): `segment` calls this on a side thread while it sets the run up."""
    mask = np.zeros((4, 4), np.bool_)
    ids = np.zeros((4, 4), np.int32)
    classes = np.zeros((4, 4), np.uint8)
    label4(mask)
    grow(ids, mask, np.zeros((1, 2), np.int64))
    any_other(classes, 1)
    add_orphans(ids, mask, 0, 4, 0, 4, 1)
    describe_ids(ids, classes, 1, 0, 0, 0, 4, 0, 4)
    lut = np.zeros(1, np.int32)
    for dtype in (np.uint16, np.uint8, np.float32):
        values, high = summands(np.zeros((4, 4), dtype))
        relabel_and_measure(ids, lut, values, high, 0, 0, np.zeros(1, sum_dtype(dtype)), np.zeros(1, np.int64))
    relabel(ids, lut)
    import scipy.sparse.csgraph  # noqa: F401 - the merge's, imported while nothing waits for it
