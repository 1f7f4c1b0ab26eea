"""One model file: weights plus everything needed to rebuild and run them.

A model file is a `torch.save` of a plain dict (loaded with `weights_only=True`,
so opening a model never runs code): the format version, the U-Net config, the
task (target, classes, post-processing), the input normalisation, the tile
geometry it was trained with, provenance, and the state dict.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from biounet.model.unet import UNet, UNetConfig

FORMAT_VERSION = 1
FORMAT_NAME = "biounet-model"


class ModelFileError(ValueError):
    """A model file that cannot be used (corrupt, incompatible or too new)."""


@dataclass
class ModelSpec:
    """What a trained network is for and how to feed it.

    target: "binary", "3class" or "distance" (what the network predicts).
    classes: names of the output channels of a classification head.
    postprocess: {"name": ..., "params": {...}} turning outputs into instances.
    normalization: {"method": "percentile", "low": 1.0, "high": 99.8} (percentiles of
        the slide), {"method": "fixed", "low": a, "high": b} or {"method": "none"}.
    tile: preferred input tile size (None: choose automatically).
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

    def to_dict(self) -> dict:
        data = asdict(self)
        data["unet"] = self.unet.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSpec":
        data = dict(data)
        unet = UNetConfig.from_dict(data.pop("unet"))
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model spec keys: {sorted(unknown)}")
        return cls(unet=unet, **data)


def save_model(path: str | Path, net: UNet, spec: ModelSpec, extra: dict | None = None) -> None:
    """Write `net` and its spec to `path` atomically (a temp file, then rename)."""
    if spec.unet != net.config:
        raise ValueError("spec.unet does not describe the network being saved")
    payload: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "spec": spec.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }
    if extra:
        payload["extra"] = extra
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def read_model_payload(path: str | Path) -> dict:
    """The raw dict of a model file, checked for format and version."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, io.UnsupportedOperation) as err:
        raise ModelFileError(
            f"{path} is not a readable biounet model file ({type(err).__name__}); "
            "re-export it with 'biounet train' or pass another --model"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path} is not a biounet model file; pass a model saved by 'biounet train'")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has model format version {version}, newer than this biounet "
            f"understands ({FORMAT_VERSION}); upgrade biounet"
        )
    return payload


def load_model(path: str | Path) -> tuple[UNet, ModelSpec]:
    """Rebuild the network of a model file (on the CPU, in eval mode) and its spec."""
    payload = read_model_payload(path)
    try:
        spec = ModelSpec.from_dict(payload["spec"])
        net = UNet(spec.unet)
        net.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ModelFileError(
            f"{path} does not match the biounet U-Net ({str(err).splitlines()[0]}); "
            "it may come from another tool or a broken export"
        ) from None
    net.eval()
    return net, spec


def default_model_path() -> Path:
    """The pretrained nuclei model shipped inside the package."""
    return Path(__file__).resolve().parent.parent / "weights" / "nuclei.pt"
