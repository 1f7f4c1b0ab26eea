"""An encoder U-Net through every way of running `segment`: job-array parts, a cancelled and
resumed run, a Dask cluster; each equals the default run bit for bit."""

import threading

import pytest
import zarr

from biounet.pipeline.errors import Interrupted
from biounet.pipeline.segment import segment
from tests.conftest import assert_same_output, invoke

ARGS = {"block": 128, "device": "cpu", "save_probabilities": "float16"}


@pytest.fixture(scope="module")
def reference(slide, tiny_encoder_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("encoder-ref") / "ref.ome.zarr"
    result = segment(slide, out, model=tiny_encoder_model, progress=False, **ARGS)
    assert result.tile == 128 + 2 * 64  # the block plus the model's context on both sides, a multiple of 32
    return out


def test_job_array_parts_then_finalize(slide, tiny_encoder_model, reference, tmp_path):
    out = tmp_path / "parts.ome.zarr"
    args = ["segment", slide, "-o", out, "--model", tiny_encoder_model, "--block", 128, "--device", "cpu",
            "--save-probabilities", "float16"]
    for i in (1, 2, 3):
        r = invoke(*args, "--part", f"{i}/3")
        assert r.returncode == 0, r.output
    assert zarr.open_group(str(out)).attrs["biounet"]["status"] == "running"
    r = invoke(*args, "--finalize")
    assert r.returncode == 0, r.output
    assert_same_output(out, reference)


def test_cancelled_run_resumes(slide, tiny_encoder_model, reference, tmp_path):
    out = tmp_path / "resumed.ome.zarr"
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= 4:
            cancel.set()

    with pytest.raises(Interrupted, match="resumable"):
        segment(slide, out, model=tiny_encoder_model, progress=progress, cancel=cancel, **ARGS)
    result = segment(slide, out, model=tiny_encoder_model, progress=False, **ARGS)
    assert 4 <= result.extra["skipped"] < 30 and result.extra["computed"] == 30 - result.extra["skipped"]
    assert_same_output(out, reference)


def test_local_dask_cluster(slide, tiny_encoder_model, reference, tmp_path):
    out = tmp_path / "dask.ome.zarr"
    segment(slide, out, model=tiny_encoder_model, progress=False, cluster="local", workers=1, **ARGS)
    assert_same_output(out, reference)
