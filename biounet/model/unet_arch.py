"""The U-Net's layers and forward pass, self-contained (imports only torch).

biounet's `UNet` is this network plus its config, initialisation and inference
helpers; a bioimage.io package carries this file unchanged as the architecture
of its `pytorch_state_dict` weights, so any bioimage.io consumer rebuilds the
very same network without biounet.
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn


def double_conv(cin: int, cout: int, pad: int, batch_norm: bool) -> nn.Sequential:
    """Two 3x3 convolutions, each with ReLU (and batch norm)."""
    layers: List[nn.Module] = []
    for c in (cin, cout):
        layers.append(nn.Conv2d(c, cout, 3, padding=pad, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The centre `height` x `width` window of an NCHW tensor."""
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


class UNetArch(nn.Module):
    """The U-Net of Ronneberger et al. (2015) returning raw scores (logits, or the
    regression output): per level two 3x3 convolutions, 2x2 max pooling down, a 2x2
    up-convolution halving the channels up, the skip centre-cropped and concatenated,
    a final 1x1 convolution. padding "valid" (the paper) or "same"."""

    def __init__(self, in_channels: int = 1, out_channels: int = 2, depth: int = 5, width: int = 64,
                 padding: str = "valid", batch_norm: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        pad = 1 if padding == "same" else 0
        widths = [width * 2**level for level in range(depth)]
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.down.append(double_conv(cin, w, pad, batch_norm))
            cin = w
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(2 * w, w, 2, stride=2))
            self.up_conv.append(double_conv(2 * w, w, pad, batch_norm))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: List[torch.Tensor] = []
        for level, block in enumerate(self.down):
            if level:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        x = self.dropout(skips.pop())
        for up, conv in zip(self.up, self.up_conv):
            x = up(x)
            skip = skips.pop()
            x = conv(torch.cat([center_crop(skip, x.shape[-2], x.shape[-1]), x], dim=1))
        return self.head(x)
