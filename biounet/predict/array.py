"""Tiled prediction of an image held in memory (validation, evaluation, notebooks).

The same planning and tile code as `segment`, without the zarr output: one
code path for prediction, so validation scores describe what `segment` does.
"""

from __future__ import annotations

import numpy as np

from biounet.model.geometry import geometry_of
from biounet.model.spec import ModelSpec
from biounet.model.unet import UNet
from biounet.plan.blocks import plan_blocks, tile_window
from biounet.plan.memory import choose_tile
from biounet.plan.mirror import mirror_window
from biounet.predict.normalize import normalization_stats, normalize
from biounet.predict.tiles import predict_block

DEFAULT_MEMORY = 2 * 1024**3


def predict_array(
    net: UNet, spec: ModelSpec, image: np.ndarray, tile: int | None = None, block: int = 1024,
    batch: int = 4, stats: np.ndarray | None = None,
) -> np.ndarray:
    """Network output (C_out, H, W) for a (C, H, W) or (H, W) image.

    `stats` are per-channel (low, high) normalisation bounds; by default they are
    computed from the image itself as the model's normalisation says.
    The network must already be on its device and in eval mode.
    """
    image = image[None] if image.ndim == 2 else image
    geometry = geometry_of(spec.unet)
    h, w = image.shape[-2:]
    covered = min(block, -(-max(h, w) // geometry.align) * geometry.align)
    tile = tile or spec.tile or choose_tile(spec.unet, covered, DEFAULT_MEMORY)
    if stats is None:
        stats = normalization_stats(image.reshape(image.shape[0], -1).astype(np.float64), spec.normalization)
    out = None
    fallback: dict = {}  # a smaller tile / batch after running out of memory, kept for later blocks
    for b in plan_blocks((), h, w, block, geometry.align):
        y0, y1, x0, x1, _, _ = tile_window(b, tile, geometry)
        window = normalize(mirror_window(lambda ys, xs: image[:, ys, xs], (h, w), y0, y1, x0, x1), stats)
        y = predict_block(net, window, b, tile, geometry, batch, fallback).cpu().numpy()
        if out is None:
            out = np.empty((y.shape[0], h, w), np.float32)
        out[:, b.y0 : b.y1, b.x0 : b.x1] = y
    return out
