"""What a network is: the configuration stored in model files, from which it is rebuilt
(`biounet.model.file.build_network`), and its tile geometry."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from biounet.model.encoders import STRIDE, check_encoder
from biounet.model.geometry import TileSizes, geometry_of

DEPTH = 6  # resolution levels: full size and strides 2, 4, 8, 16, 32
# Context margin per tile side: the smallest margin whose stitched class maps equal a
# whole-image pass on the BBBC039 val images measured (benchmarks/encoder_margin.py,
# MODEL_CARD.md): 192 px for the ResNet-18 and ResNet-34 U-Nets trained there.
DEFAULT_CONTEXT = 192


@dataclass(frozen=True)
class UNetConfig:
    """Everything needed to rebuild the network (stored in model files)."""

    in_channels: int = 1
    out_channels: int = 2
    depth: int = 5
    width: int = 64
    padding: str = "valid"
    batch_norm: bool = False
    dropout: float = 0.0
    head: str = "classification"
    extra: dict = field(default_factory=dict)
    encoder: str | None = None
    context: int | None = None

    def __post_init__(self) -> None:
        if self.head not in ("classification", "regression"):
            raise ValueError(f"head must be 'classification' or 'regression', got {self.head!r}")
        if self.in_channels < 1 or self.out_channels < 1 or self.width < 1:
            raise ValueError("in_channels, out_channels and width must be positive")
        if self.encoder is not None:
            check_config(self)
            if self.context is None:
                object.__setattr__(self, "context", DEFAULT_CONTEXT)
        if self.context is not None and (self.padding != "same" or self.context < 0):
            raise ValueError(f"context {self.context}: a margin of 0 or more pixels, for same-padded networks only")
        self.geometry()  # validates depth and padding

    def geometry(self) -> TileSizes:
        """The tile geometry of this network (shift period, margin, valid tile sizes): `geometry_of`."""
        return geometry_of(self)

    def to_dict(self) -> dict:
        """The config as plain data; `encoder` and `context` only when set (plain U-Net files stay as before)."""
        data = asdict(self)
        for key in ("encoder", "context"):
            if data[key] is None:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "UNetConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown U-Net config keys: {sorted(unknown)}")
        return cls(**data)


def check_config(config: UNetConfig) -> None:
    """Raise ValueError unless `config` describes an encoder U-Net biounet builds."""
    check_encoder(config.encoder)
    if config.padding != "same" or config.depth != DEPTH:
        raise ValueError(f"an encoder U-Net has same padding and depth {DEPTH} (strides up to {STRIDE}), "
                         f"not {config.padding} padding and depth {config.depth}")
