"""Inputs that must fail cleanly (issue 6, part 2).

Each case runs `biounet segment` and checks: exit code 2 (usage) or 1 (runtime),
one line on stderr saying what is wrong and what to do, no traceback, the input
files unchanged (sha256 before and after), and no output that looks complete
(either none, or `biounet.status` not complete and no labels metadata).

The CLI runs in this process (click's runner: the same code path as the
console script, without 10 s of imports per case); `test_real_process` checks
one case in a real subprocess.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr
from click.testing import CliRunner

from biounet.cli import main
from biounet.model.file import FORMAT_VERSION
from tests.conftest import make_model

pytestmark = pytest.mark.usefixtures("one_thread")


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def digest(path: Path) -> str:
    """sha256 of a file, or of every file (names and bytes) under a folder."""
    h = hashlib.sha256()
    if path.is_file():
        h.update(path.read_bytes())
    elif path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(path)).encode())
                h.update(p.read_bytes())
    return h.hexdigest()


def assert_one_line_error(result, code: int, *words: str) -> str:
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # mapped, not crashed
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("biounet: error: ") and "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def assert_not_complete(out: Path) -> None:
    """No output, or one that neither claims completion nor shows labels to napari."""
    if not out.exists():
        return
    root = zarr.open_group(str(out), mode="r")
    assert root.attrs.get("biounet", {}).get("status") != "complete"
    if "labels" in root:
        attrs = root["labels"].attrs.asdict()
        assert "labels" not in attrs and "labels" not in attrs.get("ome", {})


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_model):
    """Inputs and models, good and bad, made once."""
    d = tmp_path_factory.mktemp("failures")
    rng = np.random.default_rng(0)
    good = rng.integers(0, 4000, (200, 230), dtype=np.uint16)
    tifffile.imwrite(d / "good.tif", good, tile=(64, 64), compression="zlib")
    raw = (d / "good.tif").read_bytes()
    (d / "truncated.tif").write_bytes(raw[: len(raw) // 2])
    flipped = bytearray(raw)
    middle = len(raw) // 2
    flipped[middle : middle + 64] = bytes(b ^ 0xFF for b in flipped[middle : middle + 64])
    (d / "corrupt.tif").write_bytes(bytes(flipped))
    header = bytearray(raw)
    header[8:40] = bytes(b ^ 0xFF for b in header[8:40])  # the first IFD
    (d / "corrupt-ifd.tif").write_bytes(bytes(header))
    (d / "notes.txt").write_text("not an image\n" * 20)
    (d / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (d / "empty.tif").write_bytes(b"")
    (d / "folder").mkdir()
    (d / "folder" / "readme.txt").write_text("a folder, not an image")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "writing zero-size array to nonconformant TIFF": the point
        tifffile.imwrite(d / "zero.tif", np.zeros((0, 10), np.uint8))
    zarr.create_array(str(d / "zero.zarr"), shape=(0, 100), chunks=(16, 16), dtype="u1")
    tifffile.imwrite(d / "rgb.tif", rng.integers(0, 255, (100, 120, 3), dtype=np.uint8), photometric="rgb")
    tifffile.imwrite(d / "cyx.ome.tif", rng.integers(0, 255, (2, 100, 120), dtype=np.uint8),
                     metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "GFP"]}})
    (d / "afile").write_text("a file, not a folder")

    model = Path(tiny_model).read_bytes()
    (d / "zeros.pt").write_bytes(bytes(100))
    (d / "truncated.pt").write_bytes(model[: len(model) // 2])
    flipped = bytearray(model)
    flipped[len(model) // 2 : len(model) // 2 + 64] = bytes(64 * [0xA5])
    (d / "flipped.pt").write_bytes(bytes(flipped))
    payload = torch.load(tiny_model, weights_only=True)
    payload["spec"]["unet"]["width"] = 8
    torch.save(payload, d / "incompatible.pt")
    payload = torch.load(tiny_model, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, d / "newer.pt")
    torch.save({"state_dict": {"w": torch.zeros(3)}}, d / "foreign.pt")
    make_model(d / "two.pt", in_channels=2)
    return d


# name: (input, extra arguments, exit code, words the message must hold)
CASES = {
    "missing path": ("missing.tif", [], 2, ["input not found", "missing.tif", "check the path"]),
    "directory": ("folder", [], 2, ["is a directory but not a zarr store", "pass an image file"]),
    "text file": ("notes.txt", [], 1, ["notes.txt", "not a readable TIFF", "check the file"]),
    "png file": ("picture.png", [], 1, ["picture.png", "not a readable TIFF", "convert it"]),
    "empty file": ("empty.tif", [], 1, ["empty.tif", "is empty", "check the file"]),
    "truncated tiff": ("truncated.tif", [], 1, ["truncated.tif", "truncated or corrupt", "copy it again"]),
    "corrupt tiff data": ("corrupt.tif", [], 1, ["corrupt.tif", "truncated or corrupt", "copy it again"]),
    "corrupt tiff header": ("corrupt-ifd.tif", [], 1, ["corrupt-ifd.tif", "not a readable TIFF"]),
    "zero-sized tiff": ("zero.tif", [], 1, ["zero.tif", "zero-sized dimension", "nothing to segment"]),
    "zero-sized zarr": ("zero.zarr", [], 1, ["zero.zarr", "zero-sized dimension", "nothing to segment"]),
    "too many channels": ("rgb.tif", [], 2, ["has 3 channel(s) and the model takes 1", "choose with --channel"]),
    "too few channels": ("good.tif", ["--model", "two.pt"], 2, ["takes 2 input channels", "only 1", "--channel"]),
    "invalid tile": ("good.tif", ["--tile", "500"], 2, ["tile size 500 is not valid", "nearest: 492 or 508"]),
    "tile too small": ("good.tif", ["--tile", "188"], 2, ["--tile 188 is too small", "at least 204"]),
    "unknown channel name": ("cyx.ome.tif", ["--channel", "RFP"], 2, ["unknown --channel 'RFP'", "DAPI, GFP"]),
    "unknown channel index": ("cyx.ome.tif", ["--channel", "2"], 2, ["unknown --channel '2'", "0..1"]),
    "axes do not fit": ("good.tif", ["--axes", "zyx"], 2, ["--axes 'zyx' has 3 letters", "2 dimensions"]),
    "output under a file": ("good.tif", ["-o", "afile/out.ome.zarr"], 2, ["is a file, not a folder", "choose another -o"]),
    "output folder missing": ("good.tif", ["-o", "nowhere/out.ome.zarr"], 2, ["does not exist", "create it or choose another -o"]),
    # root may write almost anywhere, but nobody can create a folder in /proc
    "output not writable": ("good.tif", ["-o", "/proc/biounet-test.ome.zarr"], 2, ["cannot create output", "choose another -o"]),
    "missing model": ("good.tif", ["--model", "missing.pt"], 2, ["model file not found", "check --model"]),
    "corrupt model": ("good.tif", ["--model", "zeros.pt"], 1, ["zeros.pt", "not a readable biounet model", "another --model"]),
    "truncated model": ("good.tif", ["--model", "truncated.pt"], 1, ["truncated.pt", "not a readable biounet model"]),
    "model with flipped bytes": ("good.tif", ["--model", "flipped.pt"], 1, ["flipped.pt", "fails its checksum", "copy it again"]),
    "incompatible model": ("good.tif", ["--model", "incompatible.pt"], 1, ["incompatible.pt", "does not match the biounet U-Net"]),
    "foreign model file": ("good.tif", ["--model", "foreign.pt"], 1, ["foreign.pt", "not a biounet model file"]),
    "newer model format": ("good.tif", ["--model", "newer.pt"], 1, ["newer.pt", f"version {FORMAT_VERSION + 1}", "upgrade biounet"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fails_cleanly(files, tiny_model, tmp_path, case):
    name, extra, code, words = CASES[case]
    out = tmp_path / "out.ome.zarr"
    args = {"-o": str(out), "--model": str(tiny_model)}
    extra = list(extra)
    for key in ("-o", "--model"):
        if key in extra:
            i = extra.index(key)
            value = extra[i + 1]
            args[key] = value if value.startswith("/") else str(files / value)
            out = Path(args["-o"])
            del extra[i : i + 2]
    inputs = [files / name, Path(args["--model"])]
    before = [digest(p) for p in inputs]
    r = cli("segment", files / name, "-o", args["-o"], "--model", args["--model"], "--block", 128, "--quiet", *extra)
    assert_one_line_error(r, code, *words)
    assert [digest(p) for p in inputs] == before
    assert_not_complete(out)
    assert not out.exists()  # nothing was written at all


def test_existing_output_is_left_alone(files, tiny_model, tmp_path):
    out = tmp_path / "out.ome.zarr"
    out.mkdir()
    (out / "precious.txt").write_text("someone's data")
    before = digest(out), digest(files / "good.tif")
    r = cli("segment", files / "good.tif", "-o", out, "--model", tiny_model, "--quiet")
    assert_one_line_error(r, 2, f"output {out} exists", "pass --overwrite")
    assert (digest(out), digest(files / "good.tif")) == before
    # A complete output is refused too, and --overwrite replaces it.
    done = tmp_path / "done.ome.zarr"
    assert cli("segment", files / "good.tif", "-o", done, "--model", tiny_model, "--block", 128, "--quiet").exit_code == 0
    snapshot = digest(done)
    r = cli("segment", files / "good.tif", "-o", done, "--model", tiny_model, "--block", 128, "--quiet")
    assert_one_line_error(r, 2, "is complete", "pass --overwrite")
    assert digest(done) == snapshot
    r = cli("segment", files / "good.tif", "-o", done, "--model", tiny_model, "--block", 128, "--quiet", "--overwrite")
    assert r.exit_code == 0, r.stderr
    assert digest(files / "good.tif") == before[1]


def test_debug_shows_the_traceback(files, tiny_model, tmp_path):
    r = cli("--debug", "segment", files / "truncated.tif", "-o", tmp_path / "o.ome.zarr", "--model", tiny_model)
    from biounet.read.image import ImageReadError

    assert isinstance(r.exception, ImageReadError) and "truncated.tif" in str(r.exception)
    assert not (tmp_path / "o.ome.zarr").exists()


def test_real_process(files, tiny_model, tmp_path):
    """The console entry point in a subprocess: exit code, one line, no traceback."""
    out = tmp_path / "o.ome.zarr"
    before = digest(files / "corrupt.tif")
    r = subprocess.run([sys.executable, "-m", "biounet.cli", "segment", str(files / "corrupt.tif"), "-o", str(out),
                        "--model", str(tiny_model), "--quiet"], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "corrupt.tif" in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert digest(files / "corrupt.tif") == before and not out.exists()
