"""ImageNet-style encoders in plain torch: ResNet-18/34/50 and EfficientNet-B0..B3.

Module and parameter names are those of torchvision's and timm's ResNets
(`conv1`, `bn1`, `layer1`..`layer4`, blocks with `downsample.0/.1`) and of
timm's EfficientNets (`conv_stem`, `bn1`, `blocks.i.j.{conv_pw,bn1,conv_dw,bn2,
se.conv_reduce,se.conv_expand,conv_pwl,bn3}`), so their checkpoints load as
they are (`biounet.model.pretrained`). The classifier parts (ResNet's `fc`,
EfficientNet's `conv_head`/`bn2`/`classifier`) are not built.

Why not segmentation-models-pytorch or timm: both import torchvision, and
PyPI's torchvision wheels for torch 2.13 are CUDA builds that do not load
beside the pinned CPU torch (`operator torchvision::nms does not exist`).

Every encoder returns five feature maps, at strides 2, 4, 8, 16 and 32 (the
stages timm's `features_only` returns), and `channels` says their widths.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# name -> (kind, stage sizes or (channel multiplier, depth multiplier))
RESNETS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
           "resnet50": ("bottleneck", (3, 4, 6, 3))}
EFFICIENTNETS = {"efficientnet_b0": (1.0, 1.0), "efficientnet_b1": (1.0, 1.1),
                 "efficientnet_b2": (1.1, 1.2), "efficientnet_b3": (1.2, 1.4)}
ENCODERS = (*RESNETS, *EFFICIENTNETS)
STRIDE = 32  # five stride-2 stages: tiles align to 32 px


class EncoderError(ValueError):
    """An encoder name biounet does not know."""


def check_encoder(name: str) -> str:
    """`name` if it is a known encoder, else an EncoderError listing the known ones."""
    if name not in ENCODERS:
        raise EncoderError(f"unknown encoder {name!r}; choose from {', '.join(ENCODERS)}")
    return name


def build_encoder(name: str, in_channels: int = 3) -> nn.Module:
    """The encoder called `name`, randomly initialised, for `in_channels` input channels."""
    check_encoder(name)
    if name in RESNETS:
        kind, layers = RESNETS[name]
        return ResNetEncoder(BasicBlock if kind == "basic" else Bottleneck, layers, in_channels)
    return EfficientNetEncoder(*EFFICIENTNETS[name], in_channels=in_channels)


# ---------------------------------------------------------------- ResNet (torchvision's v1.5 layout)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # stride on the 3x3 (v1.5)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNetEncoder(nn.Module):
    """torchvision's ResNet without `avgpool` and `fc`; features after the stem's ReLU and each layer."""

    first_conv = "conv1"

    def __init__(self, block: type, layers: tuple[int, ...], in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (planes, count) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or cin != planes * block.expansion:
                downsample = nn.Sequential(nn.Conv2d(cin, planes * block.expansion, 1, stride, bias=False),
                                           nn.BatchNorm2d(planes * block.expansion))
            blocks = [block(cin, planes, stride, downsample)]
            cin = planes * block.expansion
            blocks += [block(cin, planes) for _ in range(count - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.channels = (64, 64 * block.expansion, 128 * block.expansion, 256 * block.expansion,
                         512 * block.expansion)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        features = [x]
        x = self.layer1(self.maxpool(x))  # one by one: torch.jit.script iterates no tuple of modules
        features.append(x)
        x = self.layer2(x)
        features.append(x)
        x = self.layer3(x)
        features.append(x)
        x = self.layer4(x)
        features.append(x)
        return features


# ---------------------------------------------------------------- EfficientNet (timm's layout)

# Stages of EfficientNet-B0: (block kind, repeats, kernel, stride, expansion, output channels); SE ratio 0.25.
EFFICIENTNET_B0 = (("ds", 1, 3, 1, 1, 16), ("ir", 2, 3, 2, 6, 24), ("ir", 2, 5, 2, 6, 40), ("ir", 3, 3, 2, 6, 80),
                   ("ir", 3, 5, 1, 6, 112), ("ir", 4, 5, 2, 6, 192), ("ir", 1, 3, 1, 6, 320))
FEATURE_STAGES = (0, 1, 2, 4, 6)  # the last block of these stages gives strides 2, 4, 8, 16, 32


def make_divisible(value: float, divisor: int = 8) -> int:
    """Channels rounded to a multiple of 8, never more than 10% down (timm's and torchvision's rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, reduced, 1)
        self.act1 = nn.SiLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.conv_expand(self.act1(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * scale.sigmoid()


class DepthwiseSeparable(nn.Module):
    """timm's DepthwiseSeparableConv: depthwise conv, SE, pointwise projection (no expansion)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(cin, cin, kernel, stride, kernel // 2, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.act = nn.SiLU(inplace=True)
        self.se = SqueezeExcite(cin, round(cin * 0.25))
        self.conv_pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv_pw(self.se(self.act(self.bn1(self.conv_dw(x))))))
        return out + x if self.skip else out


class InvertedResidual(nn.Module):
    """timm's InvertedResidual (MBConv): pointwise expansion, depthwise conv, SE, linear projection."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = make_divisible(cin * expansion)
        self.conv_pw = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv_dw = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.act = nn.SiLU(inplace=True)
        self.se = SqueezeExcite(mid, round(mid * 0.25 / expansion))  # SE width from the block's input
        self.conv_pwl = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv_pw(x)))
        out = self.se(self.act(self.bn2(self.conv_dw(out))))
        out = self.bn3(self.conv_pwl(out))
        return out + x if self.skip else out


class EfficientNetEncoder(nn.Module):
    """timm's `efficientnet_bN` without `conv_head`, `bn2` and `classifier` (symmetric padding, BN eps 1e-5)."""

    first_conv = "conv_stem"

    def __init__(self, width_mult: float, depth_mult: float, in_channels: int = 3) -> None:
        super().__init__()
        stem = make_divisible(32 * width_mult)
        self.conv_stem = nn.Conv2d(in_channels, stem, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.act1 = nn.SiLU(inplace=True)
        stages, cin = [], stem
        for kind, repeats, kernel, stride, expansion, cout in EFFICIENTNET_B0:
            cout = make_divisible(cout * width_mult)
            blocks = []
            for j in range(int(math.ceil(repeats * depth_mult))):
                s = stride if j == 0 else 1
                blocks.append(DepthwiseSeparable(cin, cout, kernel, s) if kind == "ds"
                              else InvertedResidual(cin, cout, kernel, s, expansion))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.feature_stages = list(FEATURE_STAGES)  # an attribute, for torch.jit.script
        self.channels = tuple(stages[i][-1].bn2.num_features if isinstance(stages[i][-1], DepthwiseSeparable)
                              else stages[i][-1].bn3.num_features for i in FEATURE_STAGES)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.act1(self.bn1(self.conv_stem(x)))
        features = []
        for i, stage in enumerate(self.blocks):  # the last stage is the last feature's
            x = stage(x)
            if i in self.feature_stages:
                features.append(x)
        return features
