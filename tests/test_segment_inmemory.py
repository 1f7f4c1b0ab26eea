"""`segment` for the napari widget: in-memory arrays, a progress callable, and a cancel event
that leaves a resumable output (the Python API behind the widget, without Qt)."""

from __future__ import annotations

import threading

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

from biounet.pipeline.errors import Interrupted
from biounet.pipeline.segment import segment
from tests.conftest import assert_same_output


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(2).integers(0, 4000, (128, 192), dtype=np.uint16)  # 2 x 3 blocks of 64


def test_array_equals_file(image, tiny_model, tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", image)
    segment(tmp_path / "s.tif", tmp_path / "file.ome.zarr", model=tiny_model, block=64, progress=False)
    segment(image, tmp_path / "numpy.ome.zarr", axes="yx", model=tiny_model, block=64, progress=False)
    lazy = da.from_array(image, chunks=(100, 100))  # chunks unlike the blocks
    segment(lazy, tmp_path / "dask.ome.zarr", axes="yx", model=tiny_model, block=64, progress=False)
    assert_same_output(tmp_path / "file.ome.zarr", tmp_path / "numpy.ome.zarr")
    assert_same_output(tmp_path / "file.ome.zarr", tmp_path / "dask.ome.zarr")
    assert not list(tmp_path.glob(".*.input-*")), "staged copies are removed once the run completes"


def test_array_pixel_type_refused_before_writing(tiny_model, tmp_path):
    from biounet.read.image import PixelTypeError

    with pytest.raises(PixelTypeError, match="complex"):
        segment(np.zeros((64, 64), np.complex64), tmp_path / "c.ome.zarr", model=tiny_model, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_progress_callable(image, tiny_model, tmp_path):
    seen = []
    segment(image, tmp_path / "p.ome.zarr", axes="yx", model=tiny_model, block=64,
            progress=lambda done, total: seen.append((done, total)))
    total = 6
    assert seen[0] == (0, total) and seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and all(t == total for _, t in seen)


def test_cancel_leaves_a_resumable_output(image, tiny_model, tmp_path):
    cancel = threading.Event()
    seen = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if done >= 1:
            cancel.set()

    out = tmp_path / "c.ome.zarr"
    with pytest.raises(Interrupted, match="resumable"):
        segment(image, out, axes="yx", model=tiny_model, block=64, progress=progress, cancel=cancel)
    assert 1 <= max(seen) < 6
    assert zarr.open_group(str(out), mode="r").attrs["biounet"]["status"] == "running"
    resumed = []
    result = segment(image, out, axes="yx", model=tiny_model, block=64,
                     progress=lambda done, total: resumed.append(done), cancel=threading.Event())
    assert resumed[0] >= max(seen) and resumed[-1] == 6  # progress resumes from what was kept
    assert result.extra["skipped"] >= 1 and result.extra["skipped"] + result.extra["computed"] == 6
    segment(image, tmp_path / "straight.ome.zarr", axes="yx", model=tiny_model, block=64, progress=False)
    assert_same_output(out, tmp_path / "straight.ome.zarr")


def test_another_array_is_not_resumed_into_the_output(image, tiny_model, tmp_path):
    cancel = threading.Event()
    cancel.set()
    out = tmp_path / "o.ome.zarr"
    with pytest.raises(Interrupted):
        segment(image, out, axes="yx", model=tiny_model, block=64, progress=False, cancel=cancel)
    from biounet.write.store import OutputError

    with pytest.raises(OutputError, match="other parameters"):
        segment(image + 1, out, axes="yx", model=tiny_model, block=64, progress=False)
    assert len(list(tmp_path.glob(".o.ome.zarr.input-*.zarr"))) == 1, "only the cancelled run's input is kept"


def test_torch_threads_are_left_as_they_were(image, tmp_path):
    """segment's network threads set torch's (process-wide) thread count for themselves; a caller's
    own torch work afterwards runs on the threads it had (3 here: the network threads take half the cores each)."""
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        segment(image, tmp_path / "o.ome.zarr", model="nuclei", axes="yx", workers=2, device="cpu", progress=False)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
