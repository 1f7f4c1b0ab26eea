"""Reference computations for tests: what the tiled engine must reproduce."""

from __future__ import annotations

import numpy as np
import torch

from biounet.model.geometry import Geometry
from biounet.plan.blocks import Block
from biounet.plan.mirror import mirror_window
from biounet.plan.resample import resample_axis, taps
from biounet.plan.scale import model_block


def forward_whole(net, image: np.ndarray, geometry: Geometry) -> np.ndarray:
    """One pass of the network over the whole mirror-padded image (C, H, W)."""
    h, w = image.shape[-2:]
    m = geometry.margin
    in_h = geometry.input_size(h)
    in_w = geometry.input_size(w)
    window = mirror_window(lambda ys, xs: image[:, ys, xs], (h, w), -m, in_h - m, -m, in_w - m)
    with torch.inference_mode():
        y = net.predict(torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32))[None])[0].numpy()
    if y.shape[-1] == in_w:
        y = y[:, m:, m:]
    return y[:, :h, :w]


def forward_scaled(net, image: np.ndarray, geometry: Geometry, factor: float) -> np.ndarray:
    """One pass of the network over the whole slide (C, H, W) resampled to model space (mirror
    context at the edges), resampled back to the slide's pixels."""
    h, w = image.shape[-2:]
    inner = model_block(Block(0, (), 0, h, 0, w), (factor, factor), geometry.align)
    m = geometry.margin
    y0, x0 = inner.y0 - m, inner.x0 - m
    y1, x1 = y0 + geometry.input_size(inner.y1 - inner.y0), x0 + geometry.input_size(inner.x1 - inner.x0)
    ky, kx = taps(y0, y1, 1 / factor), taps(x0, x1, 1 / factor)
    source = mirror_window(lambda ys, xs: image[:, ys, xs], (h, w), ky.lo, ky.hi, kx.lo, kx.hi)
    window = resample_axis(resample_axis(source, ky, 1, ky.lo), kx, 2, kx.lo)
    with torch.inference_mode():
        out = net.predict(torch.from_numpy(np.ascontiguousarray(window))[None])[0].numpy()
    back_y, back_x = taps(0, h, factor), taps(0, w, factor)
    return resample_axis(resample_axis(out, back_y, 1, inner.y0), back_x, 2, inner.x0)
