"""The encoder U-Net's layers and forward pass, torch-only (with `encoders`).

biounet's `EncoderUNet` is this network plus its config, decoder initialisation
and inference helpers; a bioimage.io package carries this file, appended to
`encoders.py`, as one self-contained architecture file (`biounet.zoo.arch`), so
any bioimage.io consumer rebuilds the very same network without biounet.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from biounet.model.encoders import build_encoder


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    """A same-padded 3x3 convolution, batch norm and ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class EncoderUNetArch(nn.Module):
    """An ImageNet-style encoder (`encoder`: resnet18 ... efficientnet_b3) and a U-Net
    decoder, smp's `Unet` layout: per stage a 2x nearest-neighbour upsampling, the encoder
    feature of that stride concatenated, two 3x3 convolutions with batch norm and ReLU;
    decoder widths 16w, 8w, 4w, 2w, w (w = `width`); a 3x3 convolution to the raw scores.
    Same padding throughout: the output is as large as the input (a multiple of 32)."""

    def __init__(self, encoder: str = "resnet18", in_channels: int = 1, out_channels: int = 2,
                 width: int = 16) -> None:
        super().__init__()
        self.encoder = build_encoder(encoder, in_channels)
        skips = self.encoder.channels  # strides 2, 4, 8, 16, 32
        widths = [width * 2**k for k in range(4, -1, -1)]  # strides 16, 8, 4, 2, 1
        self.decoder = nn.ModuleList()
        cin = skips[-1]
        for i, w in enumerate(widths):
            skip = skips[-2 - i] if i < len(skips) - 1 else 0  # full resolution: no encoder feature
            self.decoder.append(nn.Sequential(conv_bn_relu(cin + skip, w), conv_bn_relu(w, w)))
            cin = w
        self.head = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        x = features[-1]
        for i, block in enumerate(self.decoder):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            if i < len(features) - 1:
                x = torch.cat([x, features[-2 - i]], dim=1)
            x = block(x)
        return self.head(x)
