"""U-Net with an ImageNet-style encoder (ResNet, EfficientNet) and a U-Net decoder.

The layout of segmentation-models-pytorch's `Unet`: the encoder's features at
strides 2..32; per decoder stage a 2x nearest-neighbour upsampling, the
encoder feature of that stride concatenated, and two 3x3 convolutions with
batch norm and ReLU; decoder widths 16w, 8w, 4w, 2w, w (w = `width`; 16 gives
smp's 256, 128, 64, 32, 16); a 3x3 convolution to the outputs. Every
convolution is same-padded, so the network predicts the whole tile; the tiled
engine keeps each tile's centre, `context` pixels in from every side, with
tiles on multiples of 32 (five stride-2 stages: depth 6 in biounet's terms).
The layers and forward pass live in `encoder_arch`, which imports only torch
(and `encoders`), so a bioimage.io package can carry them.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from biounet.model.config import DEPTH, UNetConfig, check_config
from biounet.model.encoder_arch import EncoderUNetArch
from biounet.model.encoders import STRIDE
from biounet.model.unet import UNet


class EncoderUNet(EncoderUNetArch):
    """Encoder (`config.encoder`) plus U-Net decoder; returns raw scores like `UNet`."""

    predict = UNet.predict

    def __init__(self, config: UNetConfig) -> None:
        check_config(config)
        super().__init__(config.encoder, config.in_channels, config.out_channels, config.width)
        self.config = config
        self.geometry = config.geometry()
        for m in self.decoder.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def activation_floats(config: UNetConfig) -> float:
    """Floats per input pixel alive at the peak of a forward pass (inference): the encoder
    features kept for the decoder, plus the two largest layer outputs."""
    return _activation_floats(config.encoder, config.in_channels, config.width, config.out_channels)


@lru_cache(maxsize=None)
def _activation_floats(encoder: str, in_channels: int, width: int, out_channels: int) -> float:
    config = UNetConfig(in_channels=in_channels, out_channels=out_channels, depth=DEPTH, width=width,
                        padding="same", batch_norm=True, encoder=encoder)
    side = 4 * STRIDE
    with torch.device("meta"):
        net = EncoderUNet(config).eval()
        sizes: list[int] = []
        hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel()))
                 for m in net.modules() if not any(m.children())]
        with torch.no_grad():
            kept = sum(f.numel() for f in net.encoder(torch.empty(1, in_channels, side, side)))
            net(torch.empty(1, in_channels, side, side))
        for hook in hooks:
            hook.remove()
    top = sorted(sizes)[-2:]
    return (kept + sum(top)) / side**2
