"""bioimage.io tests: no network (sockets refused, so any download or URL check fails
loudly), bioimageio's cache in a temporary folder, and the shipped model exported once."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import invoke

SAMPLE_IMAGES = Path(__file__).resolve().parents[2] / "sample_data" / "bbbc039" / "images"


@pytest.fixture(scope="package", autouse=True)
def offline(tmp_path_factory):
    """Internet sockets refuse to connect; bioimageio caches into a temporary folder."""
    from bioimageio.spec._internal._settings import settings

    real = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(f"network access in a test: {address}")
        return real(self, address)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", connect)
        mp.setattr(settings, "cache_path", tmp_path_factory.mktemp("bioimageio-cache"))
        yield


@pytest.fixture(scope="package")
def package(tmp_path_factory, offline) -> Path:
    """The shipped nuclei model exported with `biounet export` (test input from the sample data)."""
    out = tmp_path_factory.mktemp("zoo") / "nuclei.zip"
    from biounet.model.file import default_model_path

    result = invoke("export", default_model_path(), "-o", out)
    assert result.returncode == 0, result.output
    assert "bioimage.io model (valid-format)" in result.output
    return out


@pytest.fixture(scope="package")
def membranes_package(tmp_path_factory, offline, shared_data) -> Path:
    """The shipped membranes model exported, its test input a real ISBI 2012 slice (16, not trained on)."""
    out = tmp_path_factory.mktemp("zoo-membranes") / "membranes.zip"
    result = invoke("export", "membranes", "-o", out, "--test-image",
                    shared_data / "isbi2012" / "train" / "images" / "slice16.tif")
    assert result.returncode == 0, result.output
    assert "bioimage.io model (valid-format), licence CC-BY-NC-4.0, test input 1x1x508x508" in result.output
    return out


@pytest.fixture(scope="package")
def unpacked(package, tmp_path_factory) -> Path:
    """The package unpacked into a folder."""
    return unpack(package, tmp_path_factory.mktemp("unpacked"))


@pytest.fixture(scope="package")
def encoder_package(tiny_encoder_model, tmp_path_factory, offline) -> Path:
    """The tiny random ResNet-18 U-Net (64 px of context) exported, its test input a
    160 x 192 px crop of a BBBC039 field (small: bioimageio.core's model test is quick)."""
    import tifffile

    folder = tmp_path_factory.mktemp("encoder-zoo")
    crop = folder / "crop.tif"
    tifffile.imwrite(crop, tifffile.imread(sorted(SAMPLE_IMAGES.glob("*.tif"))[0])[180:340, 250:442])
    out = folder / "resnet18.zip"
    result = invoke("export", tiny_encoder_model, "-o", out, "--test-image", crop)
    assert result.returncode == 0, result.output
    assert ("bioimage.io model (valid-format), licence BSD-3-Clause, test input 1x1x160x192, test output 1x3x160x192"
            in result.output)
    return out


@pytest.fixture(scope="package")
def he_package(tmp_path_factory, offline, shared_data) -> Path:
    """The shipped H&E model exported, its test input a 320 x 320 px crop of a MoNuSeg selection tile
    (TCGA-AR-A1AS: it trained nothing), RGB."""
    import tifffile

    folder = tmp_path_factory.mktemp("zoo-he")
    crop = folder / "he.tif"
    tile = tifffile.imread(shared_data / "monuseg" / "train" / "images" / "TCGA-AR-A1AS-01Z-00-DX1.tif")
    tifffile.imwrite(crop, tile[300:620, 300:620], photometric="rgb")
    out = folder / "he-nuclei.zip"
    result = invoke("export", "he-nuclei", "-o", out, "--test-image", crop)
    assert result.returncode == 0, result.output
    assert "bioimage.io model (valid-format), licence CC-BY-NC-SA-4.0, test input 1x3x" in result.output
    return out


def unpack(package: Path, folder: Path) -> Path:
    """`package` unpacked into `folder`."""
    import zipfile

    with zipfile.ZipFile(package) as zf:
        zf.extractall(folder)
    return folder
