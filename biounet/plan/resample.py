"""Resampling between two pixel grids as a pure function of position.

A grid whose pixels are `ratio` source pixels wide (ratio 0.5: twice as many pixels,
2.0: half as many) takes each pixel's value from the source pixels around its centre:
bilinear when enlarging, and when shrinking a tent `ratio` source pixels wide (the
antialiased bilinear of PIL and torch), so that a pixel averages the source pixels it
covers instead of picking two of them. Both grids start at the same corner; source
indices may lie outside the source (the caller reads them mirrored).

Which source pixels a target pixel takes, and their weights, depend only on the target
pixel's global index, computed element by element and summed in a fixed order: a
region resampled alone equals the same region cut from a larger resampled one, bit
for bit, which keeps a rescaled run independent of tile and block sizes.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


class Taps(NamedTuple):
    """Source pixels and weights of target pixels `start`..`stop` - 1 along one axis:
    `index` (n, k) global source indices, `weight` (n, k) float32, each row summing to 1
    (up to rounding). `lo` and `hi` bound the indices: the source range [lo, hi) to read."""

    index: np.ndarray
    weight: np.ndarray

    @property
    def lo(self) -> int:
        return int(self.index.min())

    @property
    def hi(self) -> int:
        return int(self.index.max()) + 1


def radius(ratio: float) -> float:
    """Half-width of the kernel in source pixels: 1 (bilinear) when enlarging or keeping
    the size, `ratio` when shrinking."""
    return max(1.0, float(ratio))


def taps(start: int, stop: int, ratio: float) -> Taps:
    """The kernel of target pixels [start, stop) of a grid whose pixels are `ratio` source
    pixels wide (see the module docstring)."""
    if not (math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"resampling ratio must be a positive number, got {ratio!r}")
    if stop <= start:
        raise ValueError(f"empty target range [{start}, {stop})")
    r = radius(ratio)
    centre = (np.arange(start, stop, dtype=np.float64) + 0.5) * ratio - 0.5  # in source pixel indices
    first = np.floor(centre - r).astype(np.int64) + 1  # the first source pixel strictly inside the kernel
    width = math.ceil(2 * r)
    index = first[:, None] + np.arange(width, dtype=np.int64)
    weight = np.maximum(0.0, 1.0 - np.abs(index - centre[:, None]) / r)
    total = weight[:, 0].copy()
    for k in range(1, width):  # a fixed order: the same sum for the same pixel, whatever the range
        total += weight[:, k]
    return Taps(index, (weight / total[:, None]).astype(np.float32))


def resample_axis(values, kernel: Taps, axis: int, origin: int):
    """`values` (a numpy array or a torch tensor) resampled along `axis` by `kernel`;
    `values` holds source pixels origin, origin + 1, ... along that axis. Each output is
    its taps' weighted sum in tap order, so it does not depend on the array's extent."""
    index = kernel.index - origin
    if index.min() < 0 or index.max() >= values.shape[axis]:
        raise ValueError(f"source pixels {kernel.lo}..{kernel.hi - 1} are not all in the {values.shape[axis]} "
                         f"given from {origin}")
    shape = [1] * values.ndim
    shape[axis] = index.shape[0]
    tensor = not isinstance(values, np.ndarray)
    out = None
    for k in range(index.shape[1]):
        weight = kernel.weight[:, k].reshape(shape)
        if tensor:
            import torch

            rows = torch.from_numpy(index[:, k]).to(values.device)
            term = values.index_select(axis, rows) * torch.from_numpy(np.ascontiguousarray(weight)).to(values.device)
        else:
            term = np.take(values, index[:, k], axis=axis) * weight
        out = term if out is None else out + term
    return out
