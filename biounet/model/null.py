"""A null network: the U-Net's geometry at almost no cost, for measuring everything else.

It keeps a valid U-Net's input/output sizes (the centre crop of the tile) and
thresholds the normalised input: foreground where the input exceeds
`threshold`. With it, `segment` runs every stage on real data (real objects,
real instances) while the network costs a few elementwise operations, so what
is measured is the pipeline around the network. Never a default: only a model
file made by `python -m benchmarks.null_model` holds one.
"""

from __future__ import annotations

import torch
from torch import nn

from biounet.model.config import UNetConfig

ARCH = "null"


class NullUNet(nn.Module):
    """Centre crop of the input and 40 * (x - threshold) as the foreground logit."""

    cheap = True  # a few elementwise operations: more threads only add OpenMP synchronisation

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        self.geometry = config.geometry()
        self.threshold = float(config.extra.get("threshold", 0.5))
        self.scale = nn.Parameter(torch.tensor([40.0]))  # a parameter: tells the device like any network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.geometry.margin if self.config.padding == "valid" else 0
        centre = x[:, :1, m : x.shape[-2] - m, m : x.shape[-1] - m]
        foreground = self.scale * (centre - self.threshold)
        return torch.cat([torch.zeros_like(foreground), foreground], dim=1)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self(x).float(), dim=1)


def null_config(threshold: float = 0.5, in_channels: int = 1, depth: int = 5) -> UNetConfig:
    """The config of a null network (original geometry, two classes)."""
    return UNetConfig(in_channels=in_channels, out_channels=2, depth=depth, width=1,
                      extra={"arch": ARCH, "threshold": threshold})
