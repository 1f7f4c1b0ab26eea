"""Prediction at the model's scale for a block of the slide (see `biounet.plan.scale`).

The block's model-space output range is predicted from a model-space window: the
slide's pixels around it, read mirrored from the pyramid level the scale names,
normalised and resampled to model space; the network's tiles lie on the model-space
global grid. The output is then resampled back to the block's slide pixels. Both
resamplings are pure functions of global position, so every pixel's result is the same
whichever block computes it.
"""

from __future__ import annotations

import numpy as np

from biounet.model.geometry import TileSizes
from biounet.plan.blocks import Block, tile_window
from biounet.plan.mirror import mirror_window
from biounet.plan.resample import resample_axis, taps
from biounet.plan.scale import Scale, model_block
from biounet.predict.normalize import normalize
from biounet.predict.source import BlockInput


def read_scaled_block(image, level: int, scale: Scale, block: Block, tile: int, geometry: TileSizes,
                      stats: np.ndarray, channels: tuple[int, ...] | None = None,
                      keep_pixels: bool = False) -> BlockInput:
    """The block's normalised model-space input window (C, h, w), for the tiles of its
    `model_block` as `tile_window` places them (and the block's own pixels at `level`, to
    be copied into the output image)."""
    axes = image.axes
    source = scale.level

    def region(ys: slice, xs: slice) -> np.ndarray:
        arr = image.read(source, block.index_in(axes, ys, xs))
        return arr if "c" in axes else arr[None]

    y0, y1, x0, x1, _, _ = tile_window(model_block(block, scale.steps, geometry.align), tile, geometry)
    shape = image.level_shape(source)[-2:]
    if scale.read_steps == (1.0, 1.0):  # the level is at the model's scale
        raw = mirror_window(region, shape, y0, y1, x0, x1)
        window = normalize(raw[list(channels)] if channels is not None else raw, stats)
    else:
        ky, kx = taps(y0, y1, 1.0 / scale.read_steps[0]), taps(x0, x1, 1.0 / scale.read_steps[1])
        raw = mirror_window(region, shape, ky.lo, ky.hi, kx.lo, kx.hi)
        window = normalize(raw[list(channels)] if channels is not None else raw, stats)
        window = resample_axis(resample_axis(window, ky, 1, ky.lo), kx, 2, kx.lo)
    pixels = None
    if keep_pixels:
        pixels = image.read(level, block.index_in(axes))
        pixels = pixels if "c" in axes else pixels[None]
    return BlockInput(np.ascontiguousarray(window, dtype=np.float32), pixels)


def predict_scaled(net, window: np.ndarray, block: Block, scale: Scale, tile: int, geometry: TileSizes,
                   batch_size: int, fallback: dict | None = None):
    """The network's output (C, H, W) for the slide `block`, float32 on the network's
    device: its model-space range predicted from `window` (`read_scaled_block`), then
    resampled back to the block's pixels."""
    from biounet.predict.tiles import predict_block

    inner = model_block(block, scale.steps, geometry.align)
    output = predict_block(net, window, inner, tile, geometry, batch_size, fallback)
    ky, kx = taps(block.y0, block.y1, scale.steps[0]), taps(block.x0, block.x1, scale.steps[1])
    return resample_axis(resample_axis(output, ky, 1, inner.y0), kx, 2, inner.x0)
