"""A block's input: its mirror-padded window of the slide, normalised for the network,
and its own raw pixels (all channels) for the output's copy of the image."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from biounet.model.geometry import TileSizes
from biounet.plan.blocks import Block, tile_window
from biounet.plan.mirror import mirror_window
from biounet.predict.normalize import normalize


class BlockInput(NamedTuple):
    """What is read for one block: the network's normalised window (C, h, w) and, if
    the output keeps the image, the block's own raw pixels (all channels)."""

    window: np.ndarray
    pixels: np.ndarray | None


def read_block(image, level: int, block: Block, tile: int, geometry: TileSizes, stats: np.ndarray,
               channels: tuple[int, ...] | None = None, keep_pixels: bool = False) -> BlockInput:
    """The block's normalised input window, mirrored beyond the slide's edges (and its
    own pixels, to be copied into the output image)."""
    axes = image.axes

    def region(ys: slice, xs: slice) -> np.ndarray:
        arr = image.read(level, block.index_in(axes, ys, xs))
        return arr if "c" in axes else arr[None]

    y0, y1, x0, x1, _, _ = tile_window(block, tile, geometry)
    raw = mirror_window(region, image.level_shape(level)[-2:], y0, y1, x0, x1)
    pixels = None
    if keep_pixels:
        pixels = raw[:, block.y0 - y0 : block.y1 - y0, block.x0 - x0 : block.x1 - x0].copy()
    if channels is not None:
        raw = raw[list(channels)]
    return BlockInput(normalize(raw, stats), pixels)
