"""The command as a new user meets it (issue 17): fast start-up, outputs named after the
inputs, several slides per call, `info` by content, `evaluate` with the shipped model,
`--quiet`, and pixel types refused before anything is written."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from biounet.plan.outputs import default_output, table_path
from tests.conftest import invoke
from tests.conftest import run_biounet as biounet

HEAVY = ("torch", "zarr", "scipy", "dask")


def test_importing_biounet_and_its_cli_loads_no_heavy_module():
    code = ("import sys, biounet, biounet.cli; from biounet import __version__; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_public_api_still_imports():
    code = ("from biounet import segment, open_image; import biounet.pipeline.segment, biounet; "
            "from biounet import segment as again; "
            "print(callable(segment), segment is again is biounet.segment is biounet.pipeline.segment.segment, "
            "open_image.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "open_image"]


def test_help_version_and_usage_errors_are_fast():
    """Generous bound for a loaded shared machine (measured about 0.08 s; was 4.4 s)."""
    for args in (["--help"], ["--version"], ["segment"], ["segment", "--help"], ["nonsense"]):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "biounet", *args], capture_output=True, text=True)
            times.append(time.perf_counter() - start)
        assert r.returncode in (0, 2), r.stderr
        assert statistics.median(times) < 1.5, (args, times)
    assert "0.1.0" in subprocess.run([sys.executable, "-m", "biounet", "--version"], capture_output=True,
                                     text=True).stdout


def test_usage_errors_are_one_line():
    for args in (["segment"], ["segment", "a.tif", "--bogus"], ["nonsense"], ["view"]):
        r = biounet(*args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("biounet: error: "), r.stderr


@pytest.mark.parametrize("name, expected", [
    ("slide.tif", "slide.ome.zarr"), ("slide.TIFF", "slide.ome.zarr"), ("slide.ome.tif", "slide.ome.zarr"),
    ("slide.ome.tiff", "slide.ome.zarr"), ("slide.zarr", "slide.ome.zarr"), ("a.b.tif", "a.b.ome.zarr"),
    ("slide.ome.zarr", "slide.segmented.ome.zarr"), ("slide", "slide.ome.zarr"),
])
def test_default_output_names(tmp_path, name, expected):
    assert default_output(tmp_path / name) == tmp_path / expected
    assert default_output(tmp_path / name, tmp_path / "out") == tmp_path / "out" / expected.replace(".segmented", "")
    assert table_path(tmp_path / expected).name == expected.replace(".ome.zarr", ".objects.csv")


@pytest.fixture
def slides(tmp_path):
    rng = np.random.default_rng(4)
    tifffile.imwrite(tmp_path / "a.tif", rng.integers(0, 255, (200, 230), dtype=np.uint8))
    tifffile.imwrite(tmp_path / "b.ome.tif", rng.integers(0, 4000, (150, 170), dtype=np.uint16))
    return tmp_path / "a.tif", tmp_path / "b.ome.tif"


def test_segment_writes_beside_the_input(slides, tiny_model):
    a, _ = slides
    r = biounet("segment", a, "--model", tiny_model)
    assert r.returncode == 0, r.stderr
    out = a.with_name("a.ome.zarr")
    assert out.is_dir() and a.with_name("a.objects.csv").is_file()
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"wrote {out}: ") and "; objects: " in lines[0]
    r = biounet("segment", a, "--model", tiny_model)  # an existing output is still refused
    assert r.returncode == 2 and "--overwrite" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_several_slides_in_one_call(slides, tiny_model, tmp_path):
    out_dir = tmp_path / "results"
    out_dir.mkdir()
    r = biounet("segment", *slides, "--output-dir", out_dir, "--model", tiny_model)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3, r.stdout
    assert lines[0].startswith(f"wrote {out_dir / 'a.ome.zarr'}: ") and lines[1].startswith(f"wrote {out_dir / 'b.ome.zarr'}: ")
    assert lines[2].startswith("total: 2 slides, ") and lines[2].endswith(" s")
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.objects.csv", "a.ome.zarr", "b.objects.csv", "b.ome.zarr"]


@pytest.mark.parametrize("args, message", [
    (["-o", "x.ome.zarr"], "-o names one output"),
    (["--output-dir", "missing-folder"], "is not a folder"),
])
def test_several_slides_usage_errors(slides, tiny_model, args, message):
    r = biounet("segment", *slides, "--model", tiny_model, *args)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not list(slides[0].parent.glob("*.ome.zarr"))


def test_two_inputs_with_one_output_name_are_refused(tmp_path, tiny_model):
    for name in ("s.tif", "s.ome.tif"):
        tifffile.imwrite(tmp_path / name, np.zeros((64, 64), np.uint8))
    r = biounet("segment", tmp_path / "s.tif", tmp_path / "s.ome.tif", "--model", tiny_model)
    assert r.returncode == 2 and "would both be written to" in r.stderr
    assert not (tmp_path / "s.ome.zarr").exists()


def test_quiet_prints_nothing(slides, tiny_model):
    r = biounet("segment", *slides, "--model", tiny_model, "--quiet")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", (r.stdout, r.stderr)
    assert slides[1].with_name("b.ome.zarr").is_dir()


def test_info_recognises_a_model_by_content(tmp_path, slides):
    from tests.conftest import make_model

    tiny_model = make_model(tmp_path / "tiny.pt")
    r = biounet("info", tiny_model.rename(tmp_path / "m.model"), "--json")  # what `train --out m.model` writes
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["unet"]["width"] == 4
    for name in ("weights", "model.tif"):  # in this process from here on (faster)
        copy = tmp_path / name
        copy.write_bytes((tmp_path / "m.model").read_bytes())
        r = invoke("info", copy, "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["unet"]["width"] == 4, r.output
    r = invoke("info", slides[0], "--json")  # an image is still an image
    assert r.returncode == 0 and json.loads(r.stdout)["shape"] == [200, 230]
    (tmp_path / "notes.txt").write_text("hello")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("x.txt", "x")
    for other in ("notes.txt", "other.zip"):
        r = biounet("info", tmp_path / other)
        assert r.returncode == 1 and "neither an image biounet reads" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_evaluate_uses_the_shipped_model(shared_data, tmp_path):
    src = shared_data / "bbbc039" / "val"
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
        path = sorted((src / sub).glob("*.tif"))[0]
        (tmp_path / sub / path.name).symlink_to(path)
    r = biounet("evaluate", "--images", tmp_path / "images", "--labels", tmp_path / "labels")
    assert r.returncode == 0, r.stderr
    summary = r.stdout.strip().splitlines()[-1].split()
    assert summary[0] == "ALL" and "average_f1" in r.stdout
    r = biounet("evaluate", "--labels", tmp_path / "labels")
    assert r.returncode == 2 and "--images" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_pixel_types(tmp_path, tiny_model):
    """complex64 is refused before anything is written, in one line naming the type; bool and
    float16 are segmented; neither prints Python warnings."""
    rng = np.random.default_rng(1)
    tifffile.imwrite(tmp_path / "c.tif", (rng.random((96, 96)) + 1j * rng.random((96, 96))).astype(np.complex64))
    r = biounet("segment", tmp_path / "c.tif", "--model", tiny_model)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "pixel type complex64" in lines[0] and "Warning" not in r.stderr
    assert not (tmp_path / "c.ome.zarr").exists() and not (tmp_path / "c.objects.csv").exists()
    for name, image in (("b.tif", rng.random((96, 96)) > 0.5), ("h.tif", rng.random((96, 96)).astype(np.float16))):
        tifffile.imwrite(tmp_path / name, image)
        r = biounet("segment", tmp_path / name, "--model", tiny_model, "--quiet")
        assert r.returncode == 0 and r.stderr == "", r.stderr
        assert (tmp_path / name).with_suffix(".ome.zarr").is_dir()


@pytest.mark.parametrize("dtype, kind", [("complex128", "complex"), ("M8[s]", "dates"), ("m8[s]", "time intervals"),
                                         ("U4", "text"), ("S4", "byte strings"), ("V8", "structured")])
def test_zarr_pixel_types_refused(tmp_path, dtype, kind):
    import zarr

    from biounet.read.image import PixelTypeError, open_image

    zarr.create_array(store=str(tmp_path / "x.zarr"), shape=(32, 32), chunks=(16, 16), dtype=dtype, zarr_format=2)
    with pytest.raises(PixelTypeError, match=kind):
        open_image(tmp_path / "x.zarr")
    assert open_image(tmp_path / "x.zarr", check_pixels=False).dtype == np.dtype(dtype)  # `info` still describes it


def test_view_errors(tmp_path, slides):
    r = biounet("view", tmp_path / "missing.ome.zarr")
    assert r.returncode == 2 and "not found" in r.stderr
    r = biounet("view", slides[0])
    assert r.returncode == 1 and "not an OME-Zarr" in r.stderr
    for r in (biounet("view", tmp_path / "missing.ome.zarr"), biounet("view", slides[0])):
        assert len(r.stderr.strip().splitlines()) == 1


def test_bad_input_path_names_it(tmp_path: Path):
    r = biounet("segment", tmp_path / "missing.tif")
    assert r.returncode == 2 and "input not found" in r.stderr


def test_error_table_names_real_classes():
    """The CLI maps errors to exit codes by class name (so it needs no imports): every name exists."""
    import importlib

    from biounet.cli import USER_ERRORS

    for name in USER_ERRORS:
        module, _, cls = name.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), cls), type), name


def test_usage_errors_that_need_no_model_are_fast(slides, tmp_path):
    """A missing input and a complete output are refused before the pipeline is imported."""
    a, _ = slides
    done = tmp_path / "done.ome.zarr"
    done.mkdir()
    (done / ".zgroup").write_text('{"zarr_format": 2}')
    (done / ".zattrs").write_text('{"biounet": {"status": "complete"}}')
    for args, message in ((["segment", tmp_path / "missing.tif"], "input not found"),
                          (["segment", a, "-o", done], "exists and is complete"),
                          (["view", tmp_path / "missing.ome.zarr"], "not found")):
        start = time.perf_counter()
        r = subprocess.run([sys.executable, "-X", "importtime", "-m", "biounet", *map(str, args)],
                           capture_output=True, text=True)
        seconds = time.perf_counter() - start
        assert r.returncode == 2 and message in r.stderr.splitlines()[-1], r.stderr[-500:]
        imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
        assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
        assert seconds < 3, seconds


def test_no_progress_keeps_the_summary(slides, tiny_model):
    r = biounet("segment", slides[0], "--model", tiny_model, "--no-progress")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.startswith("wrote ") and len(r.stdout.strip().splitlines()) == 1
