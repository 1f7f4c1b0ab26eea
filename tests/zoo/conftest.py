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
def unpacked(package, tmp_path_factory) -> Path:
    """The package unpacked into a folder."""
    import zipfile

    folder = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(package) as zf:
        zf.extractall(folder)
    return folder
