"""Job-array parts, kill-and-resume, and Dask clusters give the single-run result."""

import os
import signal
import subprocess
import sys
import time

import pytest
import zarr

from biounet.pipeline.segment import segment
from biounet.write.store import OutputError
from tests.conftest import assert_same_output, done_blocks


def cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "biounet.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def reference(slide, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.ome.zarr"
    segment(slide, out, model=tiny_model, block=128, tile=380, progress=False, device="cpu")
    return out


def test_parts_in_parallel_then_finalize(slide, tiny_model, reference, tmp_path):
    out = tmp_path / "parts.ome.zarr"
    procs = [cli("segment", slide, "-o", out, "--model", tiny_model, "--block", 128, "--tile", 380,
                 "--part", f"{i}/3") for i in (1, 2, 3)]
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr
        assert "--finalize" in stdout
    assert zarr.open_group(str(out)).attrs["biounet"]["status"] == "running"
    p = cli("segment", slide, "-o", out, "--model", tiny_model, "--block", 128, "--tile", 380, "--finalize")
    _, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr
    assert_same_output(out, reference)


def test_finalize_refuses_missing_blocks(slide, tiny_model, tmp_path):
    out = tmp_path / "half.ome.zarr"
    segment(slide, out, model=tiny_model, block=128, tile=380, part=(1, 2), progress=False)
    with pytest.raises(OutputError, match="not done yet"):
        segment(slide, out, model=tiny_model, block=128, tile=380, finalize=True, progress=False)


@pytest.mark.parametrize("kill_after", [3, 15])
def test_kill_and_resume(slide, tiny_model, reference, tmp_path, kill_after):
    out = tmp_path / "killed.ome.zarr"
    args = ["segment", slide, "-o", out, "--model", tiny_model, "--block", 128, "--tile", 380, "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = cli(*args, env=env)
    deadline = time.monotonic() + 300
    while len(done_blocks(out)) < kill_after and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    done_at_kill = done_blocks(out)
    total = 5 * 6
    assert kill_after <= len(done_at_kill) < total
    assert zarr.open_group(str(out)).attrs["biounet"]["status"] == "running"
    # The same command resumes: only missing blocks are computed (without --quiet: its summary).
    p = cli(*args[:-1])
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr
    assert f"{total - len(done_at_kill)} computed, {len(done_at_kill)} already done" in stdout
    assert_same_output(out, reference)


def test_rerun_with_other_parameters_refused(slide, tiny_model, reference, tmp_path):
    with pytest.raises(OutputError, match="complete"):
        segment(slide, reference, model=tiny_model, block=128, tile=380, progress=False)
    out = tmp_path / "p.ome.zarr"
    segment(slide, out, model=tiny_model, block=128, tile=380, part=(1, 4), progress=False)
    with pytest.raises(OutputError, match="other parameters \\(block\\)"):
        segment(slide, out, model=tiny_model, block=256, tile=380, progress=False)


def test_local_process_cluster_matches_threaded_run(slide, tiny_model, reference, tmp_path):
    out = tmp_path / "dask.ome.zarr"
    segment(slide, out, model=tiny_model, block=128, tile=380, progress=False, cluster="local", workers=2)
    assert_same_output(out, reference)
