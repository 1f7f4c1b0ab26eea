"""Arithmetic cost of a U-Net forward pass, counted from its layer list (encoder U-Nets: by torch).

Used to express measured speed as GFLOP/s and compare it with the CPU's
matrix-multiply ceiling. One multiply-add counts as 2 FLOPs (the usual
convention, and torch's FlopCounterMode's); biases, ReLU, pooling and softmax
are left out (under 1% of the total).
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from biounet.model.config import UNetConfig


def counted_flops(config: UNetConfig, tile: int, batch: int = 1) -> int:
    """FLOPs of one forward pass of the network `config` describes, as FlopCounterMode counts them."""
    from biounet.model.file import build_network

    with torch.device("meta"):
        net = build_network(config).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(torch.empty(batch, config.in_channels, tile, tile))
    return counter.get_total_flops()


def forward_flops(config: UNetConfig, tile: int, batch: int = 1) -> int:
    """FLOPs of one forward pass over `batch` square `tile` x `tile` inputs.

    An encoder U-Net is counted by torch's FlopCounterMode (convolutions and
    matrix products, 2 FLOPs per multiply-add) on the meta device: no memory, no time.
    """
    if config.encoder is not None:
        return counted_flops(config, tile, batch)
    shrink = 0 if config.padding == "same" else 2
    widths = [config.width * 2**level for level in range(config.depth)]
    flops, size, cin = 0, tile, config.in_channels
    for level, w in enumerate(widths):
        if level:
            size //= 2
        for c in (cin, w):
            size -= shrink
            flops += 2 * 9 * c * w * size * size
        cin = w
    for w in reversed(widths[:-1]):
        size *= 2
        flops += 2 * (2 * w) * w * size * size  # 2x2 stride-2 up-convolution: one tap per output pixel
        for c in (2 * w, w):
            size -= shrink
            flops += 2 * 9 * c * w * size * size
    flops += 2 * widths[0] * config.out_channels * size * size
    return batch * flops
