"""The U-Net of Ronneberger et al. (2015), with the options people actually use.

Per level: two 3x3 convolutions with ReLU (optionally batch norm), 2x2 max
pooling on the way down, a 2x2 up-convolution that halves the channels on the
way up, the skip connection centre-cropped and concatenated, and a final 1x1
convolution. The defaults are the paper's: depth 5, width 64, unpadded
convolutions, 2 classes. The layers and forward pass live in `unet_arch`, which
imports only torch, so a bioimage.io package can carry them unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from biounet.model.config import UNetConfig
from biounet.model.unet_arch import UNetArch, center_crop

__all__ = ["UNet", "center_crop", "count_parameters"]


class UNet(UNetArch):
    """U-Net returning raw scores (logits, or the regression output).

    Use `predict` for inference: softmax over classes for a classification head,
    the linear output for a regression head.
    """

    def __init__(self, config: UNetConfig | None = None, **kwargs) -> None:
        if config is None:
            config = UNetConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a UNetConfig or keyword options, not both")
        if config.encoder is not None:
            raise ValueError("an encoder U-Net is built by biounet.model.file.build_network, not UNet")
        super().__init__(config.in_channels, config.out_channels, config.depth, config.width, config.padding,
                         config.batch_norm, config.dropout)
        self.config = config
        self.geometry = config.geometry()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He initialisation (std sqrt(2/N), N = inputs of one unit), as in the paper."""
        for m in self.modules():
            if isinstance(m, nn.ConvTranspose2d):
                # Stride 2 with a 2x2 kernel: each output pixel sees one tap per input channel.
                fan_in = m.in_channels
            elif isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            else:
                continue
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_in))
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Inference output: class probabilities, or the regression output."""
        y = self(x)
        return torch.softmax(y.float(), dim=1) if self.config.head == "classification" else y.float()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
