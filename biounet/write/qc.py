"""Quality control next to the output: a per-object table, a summary line and an
overlay thumbnail, all computed block by block (memory: one block at a time)."""

from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from scipy import ndimage as ndi

from biounet.plan.blocks import Block, plan_blocks


@dataclass
class ObjectTable:
    """Per-object measurements, index = object id (row 0 unused)."""

    area: np.ndarray
    sum_y: np.ndarray
    sum_x: np.ndarray
    y0: np.ndarray
    x0: np.ndarray
    y1: np.ndarray
    x1: np.ndarray
    intensity: np.ndarray
    plane: np.ndarray

    @classmethod
    def empty(cls, n: int) -> "ObjectTable":
        big = np.iinfo(np.int64).max
        return cls(
            np.zeros(n + 1, np.int64), np.zeros(n + 1), np.zeros(n + 1),
            np.full(n + 1, big), np.full(n + 1, big), np.full(n + 1, -1), np.full(n + 1, -1),
            np.zeros(n + 1), np.full(n + 1, -1),
        )

    def grow(self, n: int) -> None:
        """Make room for ids up to `n` (new rows empty)."""
        have = len(self.area) - 1
        if n <= have:
            return
        more = ObjectTable.empty(max(n, 2 * have) - have - 1)
        for name in self.__dataclass_fields__:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(more, name)]))

    def add(self, block: Block, part: tuple | None, planes_shape: tuple[int, ...] = ()) -> None:
        """Add one block's `block_measures` (objects cut by blocks add up)."""
        if part is None:
            return
        ids, area, (sy, sx, si), boxes = part
        self.grow(int(ids.max()))
        self.area[ids] += area
        self.sum_y[ids] += sy
        self.sum_x[ids] += sx
        self.intensity[ids] += si
        np.minimum.at(self.y0, ids, boxes[:, 0])
        np.minimum.at(self.x0, ids, boxes[:, 1])
        np.maximum.at(self.y1, ids, boxes[:, 2])
        np.maximum.at(self.x1, ids, boxes[:, 3])
        self.plane[ids] = np.ravel_multi_index(block.plane, planes_shape) if block.plane else 0


def measure(labels, image_plane, count: int, block: int, planes_shape: tuple[int, ...] = (), threads: int = 2) -> ObjectTable:
    """Measure every object of `labels` (..., Y, X) block by block.

    `image_plane(block)` returns the block's intensity image (Y, X).
    """
    shape = labels.shape
    blocks = plan_blocks(shape[:-2], shape[-2], shape[-1], block, 1)

    def one(b: Block):
        lab = np.asarray(labels[b.plane + (slice(b.y0, b.y1), slice(b.x0, b.x1))])
        return b, block_measures(lab, lambda: image_plane(b), b.y0, b.x0)

    with ThreadPoolExecutor(threads) as pool:
        return table_of(pool.map(one, blocks), count, planes_shape)


def table_of(parts: Iterable[tuple[Block, tuple | None]], count: int, planes_shape: tuple[int, ...] = ()) -> ObjectTable:
    """The object table from each block's `block_measures`."""
    table = ObjectTable.empty(count)
    for b, part in parts:
        table.add(b, part, planes_shape)
    return table


def block_measures(lab: np.ndarray, intensity, y0: int = 0, x0: int = 0, at: np.ndarray | None = None):
    """Per-object sums of one block of labels: (ids, area, (sum y, sum x, sum intensity),
    boxes (n, 4) as y0, x0, y1, x1), or None if the block holds no object.

    `intensity()` gives the block's image, read only if there are objects; `at`, the
    flat indices of the labelled pixels in raster order, if the caller has them.
    Works on the labelled pixels sorted by id, so the cost follows the block, not
    the number of objects on the slide.
    """
    flat = lab.ravel()
    if at is None:
        at = np.flatnonzero(flat)
    if not at.size:
        return None
    values = flat[at]
    order = np.argsort(values, kind="stable")  # raster order kept within each object
    at, values = at[order], values[order]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    ids = values[starts].astype(np.int64)
    area = np.diff(np.r_[starts, at.size])
    rows, cols = at // lab.shape[1], at % lab.shape[1]
    img = np.asarray(intensity()).ravel()[at].astype(np.float64)
    sums = [np.add.reduceat(v, starts) + offset * area for v, offset in ((rows, y0), (cols, x0))]
    sums = [s.astype(np.float64) for s in sums] + [np.add.reduceat(img, starts)]
    ends = np.r_[starts[1:], at.size] - 1
    boxes = np.stack([rows[starts] + y0, np.minimum.reduceat(cols, starts) + x0,
                      rows[ends] + 1 + y0, np.maximum.reduceat(cols, starts) + 1 + x0], axis=1)
    return ids, area, sums, boxes


def write_table(table: ObjectTable, path: Path, pixel_size: float | None = None, rows_per_batch: int = 8192) -> None:
    """CSV: id, plane, centroid (y, x), area, bounding box, mean intensity (pixels; and µm² if known)."""
    ids = np.flatnonzero(table.area)
    area = table.area[ids]
    header = ["id", "plane", "centroid_y", "centroid_x", "area_px", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1",
              "mean_intensity"]
    columns = [ids, table.plane[ids], np.round(table.sum_y[ids] / area, 2), np.round(table.sum_x[ids] / area, 2),
               area, table.y0[ids], table.x0[ids], table.y1[ids], table.x1[ids],
               np.round(table.intensity[ids] / area, 3)]
    if pixel_size:
        header.append("area_um2")
        columns.append(np.round(area * pixel_size**2, 3))
    # Python numbers a batch of rows at a time (repr of a float64 is its shortest exact
    # form): a whole slide's rows as Python objects would take ~350 bytes per object.
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for start in range(0, len(ids), rows_per_batch):
            w.writerows(zip(*(c[start : start + rows_per_batch].tolist() for c in columns)))


def summary(table: ObjectTable) -> str:
    """One line: object count and area distribution."""
    areas = table.area[table.area > 0]
    if not areas.size:
        return "0 objects"
    q = np.percentile(areas, [5, 50, 95])
    return (f"{areas.size} objects; area px: median {q[1]:.0f}, 5-95% {q[0]:.0f}-{q[2]:.0f}, "
            f"min {areas.min()}, max {areas.max()}")


def overlay_png(image: np.ndarray, labels: np.ndarray, path: Path) -> None:
    """Grey image (percentile-stretched) with instance outlines in colour."""
    from skimage.io import imsave
    from skimage.segmentation import find_boundaries

    img = image.astype(np.float32)
    finite = img[np.isfinite(img)]
    lo, hi = np.percentile(finite, [1, 99.8]) if finite.size else (0.0, 1.0)
    grey = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=2)
    edges = find_boundaries(labels, mode="inner")
    palette = np.array([[255, 80, 80], [80, 255, 80], [80, 160, 255], [255, 220, 0], [255, 80, 255], [0, 230, 230]], np.uint8)
    rgb[edges] = palette[labels[edges] % len(palette)]
    imsave(path, rgb, check_contrast=False)
