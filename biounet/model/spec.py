"""What a trained network is for and how to feed it (`ModelSpec`, stored in model files), and
the errors of model files."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from biounet.model.config import UNetConfig
from biounet.model.training_data import TrainingData


class ModelFileError(ValueError):
    """A model file that cannot be used (corrupt, incompatible or too new)."""


class ModelNotFoundError(ModelFileError):
    """The model path does not exist (a usage error)."""


class ModelUsageError(ModelFileError):
    """A model option that does not fit the model (a usage error)."""


@dataclass
class ModelSpec:
    """What a trained network is for and how to feed it.

    target: "binary", "3class" or "distance" (what the network predicts).
    classes: names of the output channels of a classification head.
    postprocess: {"name": ..., "params": {...}} turning outputs into instances.
    normalization: {"method": "percentile", "low": 1.0, "high": 99.8} (percentiles of
        the slide), {"method": "fixed", "low": a, "high": b} or {"method": "none"} (more in
        `biounet.predict.normalize.normalization_stats`).
    tile: preferred input tile size (None: choose automatically).
    pixel_size: the pixel size the network was trained at, um/px (None: not known).
    diameter: the typical (median) object diameter in the training labels, px at `pixel_size`.
    training_data: what it was trained on and the terms that come with it (None: not recorded).
    """

    unet: UNetConfig = field(default_factory=UNetConfig)
    target: str = "binary"
    classes: list[str] = field(default_factory=lambda: ["background", "foreground"])
    postprocess: dict = field(default_factory=lambda: {"name": "components", "params": {}})
    normalization: dict = field(
        default_factory=lambda: {"method": "percentile", "low": 1.0, "high": 99.8}
    )
    tile: int | None = None
    provenance: dict = field(default_factory=dict)
    pixel_size: float | None = None
    diameter: float | None = None
    training_data: TrainingData | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["unet"] = self.unet.to_dict()
        data["training_data"] = self.training_data.to_dict() if self.training_data else None
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSpec":
        data = dict(data)
        unet = UNetConfig.from_dict(data.pop("unet"))
        if data.get("training_data") is not None:
            data["training_data"] = TrainingData.from_dict(data["training_data"])
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model spec keys: {sorted(unknown)}")
        return cls(unet=unet, **data)
