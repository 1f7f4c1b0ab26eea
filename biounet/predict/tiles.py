"""Predict one block: cut aligned tiles from its mirrored input window, batch them
through the network, and assemble the block's output."""

from __future__ import annotations

import numpy as np
import torch

from biounet.model.geometry import Geometry
from biounet.plan.blocks import Block, tile_starts
from biounet.predict.device import run


def block_window(block: Block, tile_in: int, geometry: Geometry) -> tuple[int, int, int, int, list[int], list[int]]:
    """Input window (y0, y1, x0, x1, in slide coordinates, may reach past the edges)
    that a block's tiles need, and the tiles' output origins along y and x."""
    tile_out = geometry.output_size(tile_in)
    m = geometry.margin
    ys = tile_starts(block.y0, block.y1, tile_out, geometry.align)
    xs = tile_starts(block.x0, block.x1, tile_out, geometry.align)
    return block.y0 - m, ys[-1] + tile_out + m, block.x0 - m, xs[-1] + tile_out + m, ys, xs


def predict_block(net: torch.nn.Module, window: np.ndarray, block: Block, tile_in: int, geometry: Geometry, batch_size: int) -> np.ndarray:
    """Network output (C_out, H, W) of `block` from its normalised input `window` (C, h, w).

    The window starts `margin` pixels above/left of the block, as `block_window` says.
    """
    _, _, _, _, ys, xs = block_window(block, tile_in, geometry)
    tile_out = geometry.output_size(tile_in)
    m = geometry.margin
    oy, ox = block.y0 - m, block.x0 - m  # slide coordinates of window[0, 0]
    tiles = [(ty, tx) for ty in ys for tx in xs]
    out = None
    source = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32))
    for i in range(0, len(tiles), batch_size):
        batch = tiles[i : i + batch_size]
        x = torch.stack([
            source[:, ty - m - oy : ty - m - oy + tile_in, tx - m - ox : tx - m - ox + tile_in] for ty, tx in batch
        ])
        y = run(net, x).float().cpu()
        if y.shape[-1] != tile_out:  # a same-padded network: keep the centre
            y = y[..., m : m + tile_out, m : m + tile_out]
        if out is None:
            out = np.empty((y.shape[1],) + block.shape, dtype=np.float32)
        for (ty, tx), tile in zip(batch, y.numpy()):
            h = min(tile_out, block.y1 - ty)
            w = min(tile_out, block.x1 - tx)
            out[:, ty - block.y0 : ty - block.y0 + h, tx - block.x0 : tx - block.x0 + w] = tile[:, :h, :w]
    return out
