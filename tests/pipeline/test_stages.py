"""The block-task graph: killed at any stage and resumed, two runs on one output,
job-array parts with a distributed finalize, and Dask's GPU resource on prediction only.
Every finished output is compared bit for bit with an uninterrupted run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tifffile

from benchmarks.common import threshold_model
from biounet.pipeline.graph import Graph
from biounet.pipeline.parts import Selection
from biounet.pipeline.segment import segment
from biounet.plan.run import make_run
from biounet.write.runfolder import BusyError, RunFolder
from tests.conftest import assert_same_output

HERE = Path(__file__).resolve().parent
ARGS = {"block": 64, "tile": 252, "device": "cpu", "progress": False}


@pytest.fixture(scope="module")
def slide(tmp_path_factory, shared_data):
    """320 x 330 px of a real nuclei image: 5 x 6 blocks of 64 px, 2 pyramid levels."""
    image = tifffile.imread(sorted((shared_data / "bbbc039" / "train" / "images").glob("*.tif"))[2])[:320, :330]
    path = tmp_path_factory.mktemp("stages") / "nuclei.tif"
    tifffile.imwrite(path, image, tile=(64, 64))
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    # Raw-intensity threshold (Otsu's threshold of these fields is about 420): real nuclei.
    return threshold_model(tmp_path_factory.mktemp("model") / "t.pt", threshold=400.0)


@pytest.fixture(scope="module")
def reference(slide, model, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.ome.zarr"
    result = segment(slide, out, model=model, **ARGS)
    assert result.extra["objects"] > 10
    return out


def done_counts(slide, out, model) -> dict[str, int]:
    """Tasks recorded done in the output's run folder, per stage."""
    run = make_run(slide, out, model=model, block=ARGS["block"], tile=ARGS["tile"])
    counts: dict[str, int] = {}
    for task in Selection(Graph(run), RunFolder(out, 2), None, False).done():
        counts[task.stage] = counts.get(task.stage, 0) + 1
    return counts


MOMENTS = [
    ("write_prediction", 1),  # prediction: the first block written
    ("put:bands", 12),  # inside a predict task: its arrays written, its record not
    ("pass1", 1),  # label pass 1 begun
    ("pass1", 20),
    ("put:merge", 1),  # inside the merge
    ("merge_step", 1),  # merged, no pass 2 yet
    ("pass2", 6),
    ("put:table", 25),  # inside a pass-2 task: instances written, its table part not
    ("pyramid", 4),
    ("pyramid", 25),
    ("table_step", 1),  # the object table written, no metadata
    ("set_status", 2),  # status `complete` in the root attributes, run record not yet
]


@pytest.mark.parametrize("moment, count", MOMENTS, ids=[f"{m}-{n}" for m, n in MOMENTS])
def test_killed_at_any_stage_resumes_bit_identical_without_recomputing(slide, model, reference, tmp_path, moment,
                                                                       count):
    out = tmp_path / "o.ome.zarr"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    killed = subprocess.run([sys.executable, str(HERE / "kill_driver.py"), moment, str(count), str(slide), str(out),
                             str(model), str(ARGS["block"]), str(ARGS["tile"])], capture_output=True, text=True,
                            env=env, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    kept = done_counts(slide, out, model)
    total = Graph(make_run(slide, out, model=model, block=ARGS["block"], tile=ARGS["tile"])).deps
    result = segment(slide, out, model=model, **ARGS)
    assert result.extra["kept"] == kept
    for stage in ("predict", "pass1", "merge", "pass2", "pyramid", "table", "metadata"):
        n = sum(1 for t in total if t.stage == stage)
        assert result.extra["stages"].get(stage, 0) + kept.get(stage, 0) == n, stage  # nothing done twice
    assert_same_output(out, reference)
    assert (tmp_path / "o.objects.csv").read_bytes() == (reference.parent / "ref.objects.csv").read_bytes()


def test_kill_moments_cover_every_stage(slide, model, tmp_path):
    stages_hit = {m.split(":")[-1] for m, _ in MOMENTS}
    assert {"write_prediction", "pass1", "merge", "merge_step", "pass2", "pyramid", "table_step",
            "set_status"} <= stages_hit and len(MOMENTS) >= 10


def test_a_second_run_on_the_same_output_is_refused(slide, model, tmp_path):
    """While a run writes an output, another `segment` on it stops at once with one line
    naming the running one (and touches nothing); once the first is done, the output
    is complete."""
    out, go = tmp_path / "o.ome.zarr", tmp_path / "go"
    first = subprocess.Popen([sys.executable, str(HERE / "kill_driver.py"), "wait:pass1", str(go), str(slide), str(out),
                              str(model), "64", "252"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.monotonic() + 120
    while not list((out / ".biounet" / "records").glob("pass1/*")) and time.monotonic() < deadline \
            and first.poll() is None:
        time.sleep(0.01)  # the first run holds after its first pass-1 block, lock taken
    second = subprocess.run([sys.executable, "-m", "biounet.cli", "segment", str(slide), "-o", str(out), "--model",
                             str(model), "--block", "64", "--tile", "252"], capture_output=True, text=True)
    go.touch()
    assert first.wait(300) == 0, first.stderr.read()
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and len(lines) == 1, second.stderr
    assert lines[0].startswith(f"biounet: error: output {out} is being written by another biounet run (pid "
                               f"{first.pid} on ")
    assert "wait for it to finish" in lines[0]
    with pytest.raises(Exception, match="exists and is complete"):
        segment(slide, out, model=model, **ARGS)


def test_lock_of_a_dead_run_is_taken_over(slide, model, reference, tmp_path):
    out = tmp_path / "o.ome.zarr"
    killed = subprocess.run([sys.executable, str(HERE / "kill_driver.py"), "pass1", "3", str(slide), str(out),
                             str(model), "64", "252"], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9 and (out / ".biounet" / "lock").exists()
    segment(slide, out, model=model, **ARGS)
    assert_same_output(out, reference)
    with pytest.raises(BusyError, match="another biounet run"):
        lease = RunFolder(out, 2).acquire("a test holding the lock")
        try:
            RunFolder(out, 2).acquire("a second taker")
        finally:
            lease.release()


def cli(*args):
    return subprocess.Popen([sys.executable, "-m", "biounet.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_job_array_parts_then_a_distributed_finalize(slide, model, reference, tmp_path):
    """Three parts at once, then three finalize parts at once: the last one completes
    the output, equal to a single run."""
    out = tmp_path / "parts.ome.zarr"
    common = ["segment", slide, "-o", out, "--model", model, "--block", 64, "--tile", 252]
    for step in ([], ["--finalize"]):
        procs = [cli(*common, *step, "--part", f"{i}/3") for i in (1, 2, 3)]
        outputs = [p.communicate(timeout=600) for p in procs]
        for p, (stdout, stderr) in zip(procs, outputs):
            assert p.returncode == 0, stderr
    finals = [stdout for stdout, _ in outputs if stdout.startswith("wrote ")]
    assert len(finals) == 1, outputs  # exactly one part found everything done and completed it
    assert_same_output(out, reference)


def test_gpu_resource_only_on_prediction(slide, model, reference, tmp_path):
    """On Dask, prediction tasks ask for the GPU resource; labelling, pyramids and the
    table run on a worker without one."""
    import dask
    from dask.distributed import Scheduler, SpecCluster, Worker
    from distributed.diagnostics.plugin import SchedulerPlugin

    from biounet.pipeline.dask import run_dask
    from biounet.pipeline.parts import Selection
    from biounet.pipeline.segment import _open_output

    class Restrictions(SchedulerPlugin):
        """The worker resources each task asked for when the scheduler sent it to a worker."""

        def __init__(self, scheduler):
            self.scheduler = scheduler
            self.asked: list[dict] = []

        def transition(self, key, start, finish, *args, **kwargs):
            if finish == "processing":
                self.asked.append(dict(self.scheduler.tasks[key].resource_restrictions or {}))

    workers = {"gpu": {"cls": Worker, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
               "cpu": {"cls": Worker, "options": {"nthreads": 1}}}
    out = tmp_path / "dask.ome.zarr"
    with SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}}) as cluster, \
            dask.config.set({"biounet.resources": {"GPU": 1}}):
        restrictions = Restrictions(cluster.scheduler)
        cluster.scheduler.add_plugin(restrictions)
        run = make_run(slide, out, model=model, block=64, tile=252, device="cpu")
        run, _ = _open_output(run, overwrite=False)
        graph = Graph(run)
        todo = Selection(graph, RunFolder(out, 2), None, False).next_tasks()
        where = run_dask(run, graph, todo, cluster.scheduler_address, None, 2)
        addresses = {name: w.address for name, w in cluster.workers.items()}
    predicted = {where[t] for t in where if t.stage == "predict"}
    assert predicted == {addresses["gpu"]}
    # Which worker takes the other tasks is the scheduler's choice (data locality, work stealing): what biounet
    # controls is that only the prediction tasks ask for the GPU.
    n_predict = sum(t.stage == "predict" for t in where)
    asked = [r for r in restrictions.asked if r]
    assert asked == [{"GPU": 1}] * n_predict and len(restrictions.asked) >= len(where)
    assert_same_output(out, reference)
