"""A block's class map with its halo, assembled from the block and its neighbours' bands.

Labelling a block looks `halo` pixels into its neighbours (seeds that grow
across a face, pixels that touch across it). Rather than reading whole
neighbouring chunks, each block keeps the outer `halo` rows and columns of its
own class map (`Bands`, a few kilobytes); a block's window is its own class map
with the facing bands of its (up to eight) neighbours around it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biounet.plan.blocks import Block

SIDES = ("top", "bottom", "left", "right")


@dataclass(frozen=True)
class Bands:
    """The outer `width` rows (top, bottom) and columns (left, right) of a block's class
    map, copied (fewer where the block is smaller)."""

    top: np.ndarray
    bottom: np.ndarray
    left: np.ndarray
    right: np.ndarray

    @classmethod
    def of(cls, classes: np.ndarray, width: int) -> "Bands":
        return cls(classes[:width].copy(), classes[-width:].copy(), classes[:, :width].copy(),
                   classes[:, -width:].copy())

    def arrays(self) -> dict[str, np.ndarray]:
        return {side: getattr(self, side) for side in SIDES}


def halo_window(block: Block, classes: np.ndarray, neighbour_bands, halo: int, height: int,
                width: int) -> tuple[np.ndarray, int, int]:
    """The class map of `block` with `halo` pixels of its neighbours around it (clipped
    to the slide), and the window's origin (y0, x0) in slide coordinates.

    `neighbour_bands(dy, dx)` gives the `Bands` of the block dy rows and dx columns of
    blocks away (dy, dx in -1, 0, 1), for every neighbour inside the slide.
    """
    y0, x0 = max(block.y0 - halo, 0), max(block.x0 - halo, 0)
    y1, x1 = min(block.y1 + halo, height), min(block.x1 + halo, width)
    out = np.zeros((y1 - y0, x1 - x0), classes.dtype)
    top, left = block.y0 - y0, block.x0 - x0
    h, w = classes.shape
    out[top : top + h, left : left + w] = classes
    rows = {-1: (0, top), 0: (top, top + h), 1: (top + h, out.shape[0])}
    cols = {-1: (0, left), 0: (left, left + w), 1: (left + w, out.shape[1])}
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            (r0, r1), (c0, c1) = rows[dy], cols[dx]
            if (dy, dx) == (0, 0) or r0 == r1 or c0 == c1:
                continue
            bands = neighbour_bands(dy, dx)
            # The neighbour's band that faces this block: rows first, columns for left/right.
            if dy:
                band = bands.bottom if dy < 0 else bands.top
                part = band[-(r1 - r0):] if dy < 0 else band[: r1 - r0]
                part = part[:, -(c1 - c0):] if dx < 0 else part[:, : c1 - c0] if dx > 0 else part
            else:
                band = bands.right if dx < 0 else bands.left
                part = band[:, -(c1 - c0):] if dx < 0 else band[:, : c1 - c0]
            out[r0:r1, c0:c1] = part
    return out, y0, x0
