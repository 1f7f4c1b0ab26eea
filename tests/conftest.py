"""Shared fixtures: real data from ../shared/data and small random-weight models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from biounet.model.file import ModelSpec, save_model
from biounet.model.unet import UNet

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"real test data expected at {SHARED_DATA} (see ../shared/data/README.md)"
    return SHARED_DATA


def make_model(path: Path, seed: int = 0, normalization: dict | None = None, **unet) -> Path:
    """A random-weight U-Net (original geometry unless told otherwise) saved as a model file."""
    torch.manual_seed(seed)
    options = {"width": 4, **unet}
    net = UNet(**options)
    spec = ModelSpec(unet=net.config, normalization=normalization or {"method": "none"})
    save_model(path, net, spec)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Depth 5, valid convolutions, width 4, no normalisation."""
    return make_model(tmp_path_factory.mktemp("models") / "tiny.pt")
