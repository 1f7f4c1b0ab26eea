"""Failures during a run (issue 6, part 3): a block that raises, a tile that cannot be
read, the device running out of memory, and Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import tifffile
import torch
import zarr
from click.testing import CliRunner

from biounet.cli import main
from biounet.model.file import load_model
from biounet.model.geometry import Geometry
from biounet.pipeline import stages
from biounet.pipeline.segment import segment
from biounet.predict import tiles
from biounet.predict.array import predict_array
from biounet.runtime.notices import BiounetWarning
from tests.conftest import assert_same_output, done_blocks, single_thread
from tests.conftest import zarr_arrays as arrays
from tests.reference import forward_whole

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def status(out):
    return zarr.open_group(str(out), mode="r").attrs["biounet"]["status"]


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    """256 x 768 px, zlib tiles of 64 px: 2 x 6 blocks of 128 px."""
    path = tmp_path_factory.mktemp("run-failures") / "s.tif"
    data = np.random.default_rng(5).integers(0, 4000, (256, 768), dtype=np.uint16)
    tifffile.imwrite(path, data, tile=(64, 64), compression="zlib")
    return path


ARGS = {"block": 128, "tile": 316, "device": "cpu", "progress": False}


@pytest.fixture(scope="module")
def reference(slide, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("run-ref") / "ref.ome.zarr"
    with single_thread():
        segment(slide, out, model=tiny_model, **ARGS)
    return out


def cli_args(slide, out, model, quiet=True):
    return ["segment", slide, "-o", out, "--model", model, "--block", 128, "--tile", 316, "--device", "cpu",
            *(["--quiet"] if quiet else [])]


# --- a block that raises ---------------------------------------------------------------


def test_block_that_raises_stops_names_it_and_resumes(slide, tiny_model, reference, tmp_path, monkeypatch):
    out = tmp_path / "o.ome.zarr"
    original = stages.predict_output

    def predict(res, block, window, device=None):
        if block.index == 3:
            raise RuntimeError("boom")
        return original(res, block, window, device)

    monkeypatch.setattr(stages, "predict_output", predict)
    r = cli(*cli_args(slide, out, tiny_model))
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith("biounet: error: block 3 (y 0-128, x 384-512) failed: RuntimeError: boom; "
                               f"3 of 12 blocks are done and kept in {out}")
    assert "rerun the same command to resume" in lines[0]
    assert done_blocks(out) == {0, 1, 2}
    assert status(out) == "running" and "labels" not in zarr.open_group(str(out), path="labels").attrs
    monkeypatch.setattr(stages, "predict_output", original)
    r = cli(*cli_args(slide, out, tiny_model, quiet=False))
    assert r.exit_code == 0, r.stderr
    assert "9 computed, 3 already done" in r.stdout
    assert_same_output(out, reference)


def test_unreadable_tile_during_the_run(slide, tiny_model, reference, tmp_path, monkeypatch):
    """A corrupt tile that the statistics do not sample fails the block that reads it,
    naming the block and the file; once the file is repaired the rerun resumes."""
    from biounet.read import sample

    path = tmp_path / "s.tif"
    raw = slide.read_bytes()
    with tifffile.TiffFile(slide) as tif:
        page = tif.pages[0]
        tile = 11  # row 0, column 11: x 704-768, only read by the blocks at x >= 512
        offset, count = page.dataoffsets[tile], page.databytecounts[tile]
    broken = bytearray(raw)
    broken[offset + count // 2 : offset + count] = bytes(count - count // 2)
    path.write_bytes(bytes(broken))
    monkeypatch.setattr(sample, "SAMPLE_PIXELS", 2 * 64 * 64)  # samples the first and last chunk only
    out = tmp_path / "o.ome.zarr"
    r = cli(*cli_args(path, out, tiny_model))
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith(f"biounet: error: block 4 (y 0-128, x 512-640) failed: cannot read {path}")
    assert "truncated or corrupt" in lines[0] and "4 of 12 blocks are done and kept" in lines[0]
    assert done_blocks(out) == {0, 1, 2, 3} and status(out) == "running"
    path.write_bytes(raw)  # repaired (same size: the same run)
    r = cli(*cli_args(path, out, tiny_model, quiet=False))
    assert r.exit_code == 0, r.stderr
    assert "8 computed, 4 already done" in r.stdout
    assert np.array_equal(arrays(out)["labels/classes/0"], arrays(reference)["labels/classes/0"])


# --- out of memory ---------------------------------------------------------------------

OOM_ERRORS = {
    "cuda": lambda: torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    "cpu": lambda: RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                                "you tried to allocate 123456789 bytes. Error code 12 (Cannot allocate memory)"),
    "python": lambda: MemoryError(),
}


def limited_run(monkeypatch, kind: str, max_batch: int, max_tile: int) -> list:
    """Make the network 'run out of memory' for batches above `max_batch` or tiles above
    `max_tile`; returns the (batch, tile) of every call."""
    calls = []
    run = tiles.run

    def fake(net, x):
        calls.append((x.shape[0], x.shape[-1]))
        if x.shape[0] > max_batch or x.shape[-1] > max_tile:
            raise OOM_ERRORS[kind]()
        return run(net, x)

    monkeypatch.setattr(tiles, "run", fake)
    return calls


@pytest.mark.parametrize("kind", list(OOM_ERRORS))
def test_out_of_memory_retries_with_smaller_batch_then_tile(tiny_model, monkeypatch, kind):
    net, spec = load_model(tiny_model)
    image = np.random.default_rng(1).random((300, 290)).astype(np.float32)
    expected = predict_array(net, spec, image, tile=316, block=256, batch=4)
    calls = limited_run(monkeypatch, kind, max_batch=1, max_tile=252)
    with pytest.warns(BiounetWarning, match="out of memory with tile") as record:
        got = predict_array(net, spec, image, tile=316, block=256, batch=4)
    # The first block: batch 4 -> 2 -> 1, then tile 316 -> 236; later blocks start with what worked.
    assert calls[:4] == [(4, 316), (2, 316), (1, 316), (1, 236)] and set(calls[3:]) == {(1, 236)}
    messages = [str(w.message) for w in record]
    assert "retrying with tile 316 and batch 2" in messages[0] and "retrying with tile 236 and batch 1" in messages[2]
    assert np.abs(got - expected).max() <= 1e-5
    assert np.array_equal(got.argmax(0), expected.argmax(0))
    whole = forward_whole(net, image[None], Geometry())
    assert np.array_equal(got.argmax(0), whole.argmax(0))


def test_out_of_memory_in_a_segment_run_gives_the_same_output(tiny_model, tmp_path, monkeypatch):
    slide = tmp_path / "s.tif"  # values in [0, 1]: no saturated softmax, so probabilities are compared too
    tifffile.imwrite(slide, np.random.default_rng(6).random((256, 768)).astype(np.float32), tile=(64, 64))
    ref = tmp_path / "ref.ome.zarr"
    segment(slide, ref, model=tiny_model, save_probabilities="float16", **{**ARGS, "block": 256})
    calls = limited_run(monkeypatch, "cuda", max_batch=1, max_tile=300)
    out = tmp_path / "o.ome.zarr"
    with pytest.warns(BiounetWarning, match="out of memory"):
        result = segment(slide, out, model=tiny_model, save_probabilities="float16", **{**ARGS, "block": 256})
    assert result.batch == 4 and calls[0] == (4, 316)
    # Later blocks start with the tile and batch that worked: no new out-of-memory.
    first_ok = next(i for i, (b, t) in enumerate(calls) if b == 1 and t <= 300)
    assert all(b == 1 and t <= 300 for b, t in calls[first_ok:])
    assert_same_output(out, ref, atol=1e-3)
    assert np.array_equal(arrays(out)["labels/classes/0"], arrays(ref)["labels/classes/0"])


def test_out_of_memory_even_with_the_smallest_tile(slide, tiny_model, tmp_path, monkeypatch):
    limited_run(monkeypatch, "cpu", max_batch=0, max_tile=0)
    out = tmp_path / "o.ome.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BiounetWarning)
        r = cli(*cli_args(slide, out, tiny_model))
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    message = [line for line in lines if line.startswith("biounet: error:")]
    assert len(message) == 1 and "Traceback" not in r.stderr
    assert message[0].startswith("biounet: error: block 0 (y 0-128, x 0-128) failed: out of memory even with tile 204 "
                                 "and batch 1; use a smaller --block")
    assert all(line.startswith("biounet: warning: out of memory") for line in lines if line not in message)
    assert status(out) == "running" and done_blocks(out) == set()


def test_other_errors_are_not_retried(tiny_model, monkeypatch):
    net, spec = load_model(tiny_model)
    calls = []

    def broken(net, x):
        calls.append(x.shape)
        raise RuntimeError("Expected all tensors to be on the same device")

    monkeypatch.setattr(tiles, "run", broken)
    with pytest.raises(RuntimeError, match="same device"):
        predict_array(net, spec, np.zeros((100, 100), np.float32), tile=316, block=128)
    assert len(calls) == 1


# --- Ctrl-C ----------------------------------------------------------------------------


def test_ctrl_c_stops_promptly_and_the_output_resumes(tiny_model, tmp_path, ctrl_c):
    """SIGINT to a running `biounet segment`: exit 130 within seconds, a one-line message
    saying the output is resumable; rerunning the same command completes it, and the
    result equals an uninterrupted run (one pass of the network over the whole slide)."""
    data = np.random.default_rng(7).integers(0, 255, (320, 320), dtype=np.uint8)
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, data, tile=(64, 64))
    out = tmp_path / "o.ome.zarr"
    args = ["segment", path, "-o", out, "--model", tiny_model, "--block", 64, "--tile", 204, "--quiet"]
    total = 25
    p = subprocess.Popen([sys.executable, "-m", "biounet.cli", *map(str, args)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                         preexec_fn=ctrl_c)
    deadline = time.monotonic() + 300
    while len(done_blocks(out)) < 2 and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert p.poll() is None, p.communicate()
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    _, stderr = p.communicate(timeout=60)
    assert time.monotonic() - t0 < 15
    assert p.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    done = done_blocks(out)
    assert 2 <= len(done) < total
    assert lines[0] == (f"biounet: interrupted; {len(done)} of {total} blocks are done and kept in {out}: "
                        "the output is resumable, rerun the same command to continue")
    assert status(out) == "running"
    r = cli(*args[:-1])  # without --quiet: its summary
    assert r.exit_code == 0, r.stderr
    assert f"{total - len(done)} computed, {len(done)} already done" in r.stdout
    net, _ = load_model(tiny_model)
    whole = forward_whole(net, data[None].astype(np.float32), Geometry()).argmax(0)
    assert np.array_equal(arrays(out)["labels/classes/0"], whole)
    assert status(out) == "complete"


def test_ctrl_c_with_several_network_threads(slide, tiny_model, tmp_path, monkeypatch, ctrl_c):
    """Ctrl-C reaches the main thread while network threads work: they stop after
    their current block and the run ends with Interrupted (resumable)."""
    from biounet.pipeline.errors import Interrupted

    original = stages.predict_output
    seen = []

    def predict(res, block, window, device=None):
        seen.append(block.index)
        if len(seen) == 3:
            import _thread

            _thread.interrupt_main()
        if len(seen) >= 3:
            time.sleep(0.5)  # on a fast CPU the threads could otherwise finish all 12 blocks first
        return original(res, block, window, device)

    monkeypatch.setattr(stages, "predict_output", predict)
    out = tmp_path / "o.ome.zarr"
    with pytest.raises(Interrupted, match="the output is resumable"):
        segment(slide, out, model=tiny_model, workers=2, **ARGS)
    done = done_blocks(out)
    # Block 0 was predicted before block 2 started on the same thread, so it is written;
    # block 1 (the other thread) is written only if it finished before the interrupt.
    assert 0 in done and len(done) < 12 and status(out) == "running"
    monkeypatch.setattr(stages, "predict_output", original)
    result = segment(slide, out, model=tiny_model, workers=2, **ARGS)
    assert (result.extra["computed"], result.extra["skipped"]) == (12 - len(done), len(done))


def test_cluster_import_keeps_ctrl_c_an_interrupt(ctrl_c):
    """dask-jobqueue makes SIGINT call sys.exit() when imported; biounet imports it so
    that Ctrl-C still raises KeyboardInterrupt (exit 130 with the resume message)."""
    code = ("import signal; from biounet.pipeline.dask import import_jobqueue; import_jobqueue(); "
            "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, preexec_fn=ctrl_c)
    assert out.stdout.strip() == "True", out.stderr
