"""Reference computations for tests: what the tiled engine must reproduce."""

from __future__ import annotations

import numpy as np
import torch

from biounet.model.geometry import Geometry
from biounet.plan.mirror import mirror_window


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
