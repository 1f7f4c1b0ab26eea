"""Pyramid levels and scale: each level's downsample factor, and the level to read for a
wanted pixel size. Pure functions of sizes."""

from __future__ import annotations

import math
from typing import Sequence

TOLERANCE = 0.05
"""How much coarser than wanted a level's pixels may be (5 %): a scale change that small
costs the network nothing, and reading the level saves the resampling."""


def downsamples(shapes: Sequence[tuple[int, int]]) -> list[tuple[float, float]]:
    """Each level's (y, x) downsample factor relative to level 0, from the levels' (height,
    width). Real factors: scanners floor the sizes, so an SVS level "4x" below a
    46001 px wide level 0 is 11500 px wide, a factor of 4.000087."""
    h0, w0 = shapes[0]
    return [(h0 / h, w0 / w) for h, w in shapes]


def choose_level(pixel_sizes: Sequence[float], wanted: float, tolerance: float = TOLERANCE) -> tuple[int, float]:
    """The pyramid level to read for pixels of size `wanted`, and the scale left to apply.

    pixel_sizes: each level's pixel size (any one unit, that of `wanted` too), level 0 first.
    Returns (level, scale): the coarsest level whose pixels are at most `tolerance` coarser
    than `wanted` (so that resampling it only shrinks the image, or changes its scale by
    little), and scale = its pixel size / wanted, the factor to resize the level by (0.5:
    to half its size; 1.0: use as it is). When every level is coarser than that (wanted
    finer than level 0), level 0 and a scale above 1 + tolerance: the image must be enlarged.
    """
    if not pixel_sizes:
        raise ValueError("no pyramid levels to choose from")
    for size in (*pixel_sizes, wanted):
        if not (isinstance(size, (int, float)) and math.isfinite(size) and size > 0):
            raise ValueError(f"pixel sizes must be positive numbers, got {size!r}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    fitting = [i for i, size in enumerate(pixel_sizes) if size <= wanted * (1 + tolerance)]
    level = max(fitting, key=lambda i: pixel_sizes[i]) if fitting else min(
        range(len(pixel_sizes)), key=lambda i: pixel_sizes[i])
    return level, pixel_sizes[level] / wanted
