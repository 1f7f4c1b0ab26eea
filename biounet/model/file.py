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

from biounet.model.training_data import TrainingData
from biounet.model.unet import UNet, UNetConfig
from biounet.models import DEFAULT, describe_names, resolve_model, shipped_path

FORMAT_VERSION = 1
FORMAT_NAME = "biounet-model"


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
    """The raw dict of a model file (a path or a shipped name, see `biounet.models`), checked for
    format and version."""
    path = resolve_model(path)
    if not path.is_file():
        kind = "is a folder, not a model file" if path.is_dir() else "not found"
        raise ModelNotFoundError(f"model file {kind}: {path}; check --model, or name a shipped model "
                                 f"({describe_names()})")
    _check_zip(path)
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


def _check_zip(path: Path) -> None:
    """Verify the checksums of a zip-format model file (what torch.save writes).

    torch.load does not check them, so a model with flipped bytes in its weights
    would load and silently predict garbage.
    """
    if not zipfile.is_zipfile(path):
        return  # torch.load says what is wrong with it
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except Exception as err:  # noqa: BLE001 - zipfile raises many types for broken archives
        raise ModelFileError(
            f"{path} is not a readable biounet model file ({type(err).__name__}); "
            "copy it again, re-export it with 'biounet train' or pass another --model"
        ) from None
    if bad is not None:
        raise ModelFileError(
            f"{path} is corrupt: its part {bad!r} fails its checksum (a damaged copy?); "
            "copy it again or pass another --model"
        )


def build_network(config: UNetConfig):
    """The network a config describes: the U-Net, an encoder U-Net, or the null network of benchmarks."""
    if config.encoder is not None:
        from biounet.model.encoder_unet import EncoderUNet

        return EncoderUNet(config)
    if config.extra.get("arch") == "null":
        from biounet.model.null import NullUNet

        return NullUNet(config)
    return UNet(config)


def load_spec(path: str | Path, weights: str | None = None) -> ModelSpec:
    """The spec of a model file or bioimage.io package (what it predicts and how to feed
    it), without building the network."""
    if _zoo(path, weights):
        from biounet.zoo.load import package_spec

        return package_spec(path, weights)
    payload = read_model_payload(path)
    try:
        return ModelSpec.from_dict(payload["spec"])
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(
            f"{path} does not match the biounet U-Net ({_mismatch(err)}); "
            "it may come from another tool or a broken export: pass another --model"
        ) from None


def load_model(path: str | Path, weights: str | None = None) -> tuple[UNet, ModelSpec]:
    """Rebuild the network of a model file (on the CPU, in eval mode) and its spec; a
    bioimage.io package (.zip, rdf.yaml or its folder) gives its network behind the same
    interface, from its `weights` ("pytorch_state_dict" or "torchscript"; default: the first
    it has)."""
    if _zoo(path, weights):
        from biounet.zoo.load import load_package

        return load_package(path, weights)
    payload = read_model_payload(path)
    try:
        spec = ModelSpec.from_dict(payload["spec"])
        net = build_network(spec.unet)
        net.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ModelFileError(
            f"{path} does not match the biounet U-Net ({_mismatch(err)}); "
            "it may come from another tool or a broken export: pass another --model"
        ) from None
    net.eval()
    return net, spec


def _zoo(path: str | Path, weights: str | None) -> bool:
    """Whether `path` is a bioimage.io package (`weights` only choose among a package's)."""
    from biounet.zoo import is_package

    if is_package(path):
        return True
    if weights is not None:
        raise ModelUsageError(f"--weights {weights} chooses the weights of a bioimage.io package; {path} is none")
    return False


def _mismatch(err: BaseException) -> str:
    """The first concrete problem of a failed rebuild (load_state_dict puts it on line 2)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if isinstance(err, KeyError):
        return f"missing entry {err}"
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        more = f"; {len(lines) - 2} more" if len(lines) > 2 else ""
        return lines[1].rstrip(".") + more
    return lines[0] if lines else type(err).__name__


def default_model_path() -> Path:
    """The pretrained nuclei model shipped inside the package (`--model nuclei`, the default)."""
    return shipped_path(DEFAULT)
