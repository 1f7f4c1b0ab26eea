"""The command line: results, and one-line errors with the right exit codes."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import tifffile


def biounet(*args):
    return subprocess.run([sys.executable, "-m", "biounet.cli", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "s.tif"
    tifffile.imwrite(path, np.random.default_rng(3).integers(0, 255, (300, 340), dtype=np.uint8))
    return path


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_segment_and_info(slide, tiny_model, tmp_path):
    before = digest(slide)
    out = tmp_path / "o.ome.zarr"
    r = biounet("segment", slide, "-o", out, "--model", tiny_model, "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and out.is_dir()  # --quiet: nothing on success
    assert digest(slide) == before
    r = biounet("info", slide)
    assert r.returncode == 0 and "shape: [300, 340]" in r.stdout and "axes: yx" in r.stdout
    r = biounet("info", tiny_model)
    assert r.returncode == 0 and "width: 4" in r.stdout


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--tile", "1076"], 2, "nearest: 1068 or 1084"),
        (["--block", "100"], 2, "multiple of 16"),
        (["--channel", "3"], 2, "unknown --channel"),
        (["--device", "cuda"], 2, "no CUDA GPU"),
    ],
)
def test_bad_arguments(slide, tiny_model, tmp_path, args, code, message):
    r = biounet("segment", slide, "-o", tmp_path / "o.ome.zarr", "--model", tiny_model, *args)
    assert r.returncode == code
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "o.ome.zarr").exists()


def test_missing_input_and_existing_output(slide, tiny_model, tmp_path):
    r = biounet("segment", tmp_path / "missing.tif", "-o", tmp_path / "o.ome.zarr", "--model", tiny_model)
    assert r.returncode == 2 and "input not found" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "o.ome.zarr").mkdir()
    r = biounet("segment", slide, "-o", tmp_path / "o.ome.zarr", "--model", tiny_model)
    assert r.returncode == 2 and "--overwrite" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_corrupt_model(slide, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 100)
    r = biounet("segment", slide, "-o", tmp_path / "o.ome.zarr", "--model", bad)
    assert r.returncode == 1 and "not a readable biounet model" in r.stderr
