"""Label pass 2: a block's final ids, and the sums of its objects for the object table.

The block's window is labelled again exactly as in pass 1 (the same local ids:
cheaper than storing them), then its local ids are mapped to the merge's final
ids. The same pass sums what the object table needs per local id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from biounet.label import kernels
from biounet.label.pass1 import label_window
from biounet.label.rules import InstanceRule
from biounet.label.sums import sum_dtype, summands
from biounet.plan.blocks import Block


@dataclass
class LocalSums:
    """Per local id of a block: final id, pixels, sum of rows and columns (slide
    coordinates), sum of intensities and bounding box (y0, x0, y1, x1). Intensity
    sums are exact (see biounet.label.sums): int64 for integer pixels, with
    `intensity_high` the sums of 64-bit pixels' high halves (zero otherwise); float64
    for float pixels."""

    final: np.ndarray
    area: np.ndarray
    sum_y: np.ndarray
    sum_x: np.ndarray
    intensity: np.ndarray
    intensity_high: np.ndarray
    box: np.ndarray


def relabel_measured(local: np.ndarray, lut: np.ndarray, image: np.ndarray, y0: int, x0: int
                     ) -> tuple[np.ndarray, LocalSums]:
    """Final int32 ids of a block's `local` ids (`lut` maps them; 0 drops one) and their
    sums over `image` (any accepted pixel type), the block's origin at slide (y0, x0)."""
    values, high = summands(image)
    n = lut.shape[0]
    total, total_high = np.zeros(n, sum_dtype(values.dtype)), np.zeros(n, np.int64)
    final, area, sum_y, sum_x, box = kernels.relabel_and_measure(local, lut, values, high, y0, x0, total, total_high)
    return final, LocalSums(lut, area, sum_y, sum_x, total, total_high, box)


def second_pass(window: np.ndarray, origin: tuple[int, int], block: Block, rule: InstanceRule, lut: np.ndarray,
                intensity: Callable[[], np.ndarray] | None = None) -> tuple[np.ndarray, LocalSums | None]:
    """Final int32 ids of `block` (its halo `window` of classes at slide `origin`, `lut`
    the merge's final id by local id) and, if `intensity()` (the block's image) is
    given, the sums of its objects (None when it holds none)."""
    y0, x0 = origin
    cy0, cx0 = block.y0 - y0, block.x0 - x0
    core = (slice(cy0, cy0 + block.y1 - block.y0), slice(cx0, cx0 + block.x1 - block.x0))
    local, _ = label_window(window, rule, core)
    local = np.ascontiguousarray(local[core])
    lut = np.ascontiguousarray(lut, np.int32)
    if intensity is None or not lut.any():
        return kernels.relabel(local, lut), None
    final, sums = relabel_measured(local, lut, intensity(), block.y0, block.x0)
    return final, sums if sums.area.any() else None
