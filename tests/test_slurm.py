"""A real SLURM cluster: the job-array script, `--cluster slurm` (dask-jobqueue)
and the Snakemake SLURM profile give the single-machine result bit for bit.

Not in the default run (marker `slurm`):

    bash workflows/slurm/local-cluster.sh      # as root: a single-node SLURM on localhost
    .venv/bin/python -m pytest -m slurm -q

If `sinfo` does not answer, the tests start that cluster themselves (root
only), and fail with the script's message if they cannot.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
import zarr

from tests.conftest import assert_same_output, make_model

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"
BIOUNET = Path(sys.executable).with_name("biounet")
ARGS = ["--block", "128", "--tile", "380", "--device", "cpu"]
# The local cluster has no GPUs and 2 CPUs: small jobs, no --gres.
SMALL_JOB = ["--mem=2G", "--cpus-per-task=1", "--time=00:10:00"]


def _sinfo() -> str | None:
    if shutil.which("sinfo") is None:
        return None
    try:
        run = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return None
    return run.stdout.strip() if run.returncode == 0 and run.stdout.strip() else None


@pytest.fixture(scope="module")
def cluster() -> str:
    """A responding SLURM with a usable node; else started (or its node resumed) with
    workflows/slurm/local-cluster.sh."""
    state = _sinfo()
    if state is None or not any(s in state for s in ("idle", "mix", "alloc", "comp")):
        if os.geteuid() != 0:
            pytest.fail(f"no usable SLURM (sinfo: {state!r}) and starting one needs root: "
                        "run `sudo bash workflows/slurm/local-cluster.sh` first")
        script = WORKFLOWS / "slurm" / "local-cluster.sh"
        run = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
        if run.returncode != 0:
            pytest.fail(f"could not start a local SLURM with {script} (exit {run.returncode}):\n"
                        f"{run.stderr[-4000:]}{run.stdout[-2000:]}")
        state = _sinfo()
        assert state and "idle" in state, f"local-cluster.sh finished but sinfo says {state!r}"
    return state


@pytest.fixture(scope="module")
def data(tmp_path_factory, shared_data):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from make_slide import write_slide

    from biounet.pipeline.segment import segment

    folder = tmp_path_factory.mktemp("slurm")  # under /tmp: shared by the jobs, as on one node
    slide = write_slide(folder / "slide.ome.tif", 512)  # real nuclei, 4 x 4 blocks of 128 px
    model = make_model(folder / "tiny.pt")
    reference = folder / "reference.ome.zarr"
    segment(slide, reference, model=model, block=128, tile=380, device="cpu", progress=False)
    return {"slide": slide, "model": model, "reference": reference}


def wait_for_jobs(job_ids: list[str], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i %T"],
                             capture_output=True, text=True)
        if run.returncode == 0 and not run.stdout.strip():
            return
        time.sleep(1)
    subprocess.run(["scancel", *job_ids])
    pytest.fail(f"SLURM jobs {job_ids} still queued or running after {timeout:.0f} s")


def job_state(job_id: str) -> str:
    run = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True)
    for field in run.stdout.split():
        if field.startswith("JobState="):
            return field.split("=", 1)[1]
    return "unknown (" + (run.stderr.strip() or "no record") + ")"


def logs(folder: Path, tail: int | None = 1500) -> str:
    """The job logs in `folder`, each whole or only its last `tail` characters (for messages)."""
    return "\n".join(f"--- {p.name}\n{p.read_text()[-tail if tail else 0:]}" for p in sorted(folder.glob("*")))


def test_job_array_then_finalize_matches_single_run(cluster, data, tmp_path):
    out = tmp_path / "array.ome.zarr"
    env = dict(os.environ, SLIDE=str(data["slide"]), OUT=str(out), MODEL=str(data["model"]), PARTS="3",
               BIOUNET=str(BIOUNET), BIOUNET_ARGS=" ".join(ARGS), GRES="none", LOGDIR=str(tmp_path / "logs"))
    start = time.monotonic()
    run = subprocess.run(["bash", str(WORKFLOWS / "slurm" / "submit.sh"), *SMALL_JOB], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    array_id, finalize_id = run.stdout.split()
    wait_for_jobs([array_id, finalize_id])
    seconds = time.monotonic() - start
    log_text = logs(tmp_path / "logs", tail=None)
    assert job_state(finalize_id) == "COMPLETED", logs(tmp_path / "logs")
    for i in (1, 2, 3):
        assert f"part {i}/3: computed" in log_text
    assert "0 computed" in log_text  # the finalize job computed nothing
    print(f"job array of 3 parts + finalize: {seconds:.1f} s")
    assert_same_output(out, data["reference"])


def dask_config(folder: Path) -> Path:
    """workflows/dask/jobqueue.yaml made to fit the local cluster: no --gres, small
    jobs, loopback network. The GPU worker resource and task requirement stay."""
    config = yaml.safe_load((WORKFLOWS / "dask" / "jobqueue.yaml").read_text())
    assert config["biounet"]["resources"] == {"GPU": 1}
    slurm = config["jobqueue"]["slurm"]
    assert "--gres=gpu:1" in slurm["job-extra-directives"]
    assert slurm["worker-extra-args"] == ["--resources", "GPU=1"]
    slurm.update({"cores": 1, "memory": "2GB", "walltime": "00:10:00", "interface": "lo",
                  "job-extra-directives": [], "log-directory": str(folder / "logs"),
                  "local-directory": str(folder / "scratch"), "scheduler-options": {"dashboard_address": ":0"}})
    (folder / "dask").mkdir()
    path = folder / "dask" / "jobqueue.yaml"
    path.write_text(yaml.safe_dump(config))
    return folder / "dask"


def test_dask_jobqueue_slurm_cluster_matches_single_run(cluster, data, tmp_path):
    out = tmp_path / "dask.ome.zarr"
    env = dict(os.environ, DASK_CONFIG=str(dask_config(tmp_path)))
    start = time.monotonic()
    run = subprocess.run([str(BIOUNET), "segment", str(data["slide"]), "-o", str(out), "--model", str(data["model"]),
                          *ARGS, "--cluster", "slurm", "--workers", "2"],
                         env=env, capture_output=True, text=True, timeout=400)
    seconds = time.monotonic() - start
    assert run.returncode == 0, run.stderr[-3000:] + logs(tmp_path / "logs")
    assert "dask dashboard: http" in run.stdout
    assert "16 computed" in run.stdout
    # The blocks ran on Dask workers that SLURM started (their job logs), with the GPU resource.
    # A worker log starts with that line and can end in several KB of shutdown noise:
    # search all of it, show the tails.
    worker_logs = logs(tmp_path / "logs", tail=None)
    assert "Starting Worker" in worker_logs or "Start worker" in worker_logs, logs(tmp_path / "logs")
    print(f"--cluster slurm with 2 worker jobs: {seconds:.1f} s")
    assert_same_output(out, data["reference"])


def test_snakemake_slurm_profile(cluster, data, tmp_path):
    """workflows/Snakefile with the SLURM profile: every rule but the summary is a SLURM job."""
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install -e '.[hpc]'")
    slides = tmp_path / "slides"
    slides.mkdir()
    (slides / "slide.ome.tif").symlink_to(data["slide"])
    out = tmp_path / "results"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "input_dir": str(slides), "output_dir": str(out), "model": str(data["model"]),
        "segment_args": "--block 128 --tile 380", "device": "cpu", "biounet": str(BIOUNET),
    }))
    args = [sys.executable, "-m", "snakemake", "-s", str(WORKFLOWS / "Snakefile"), "--configfile", str(config),
            "--profile", str(WORKFLOWS / "profiles" / "slurm"),
            # no GPUs, 2 CPUs and no accounting database on the local cluster:
            "--set-resources", "segment:gres=none", "segment:mem_mb=2000", "segment:cpus_per_task=1",
            "stats:mem_mb=1000", "stats:cpus_per_task=1", "--set-threads", "segment=1", "stats=1",
            "--slurm-no-account", "--slurm-status-command", "squeue", "--slurm-logdir", str(tmp_path / "slurm-logs"),
            "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
            "--latency-wait", "5"]
    start = time.monotonic()
    run = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    seconds = time.monotonic() - start
    assert run.returncode == 0, run.stderr[-4000:]
    assert "--gres=none" in run.stderr or "gres=none" in run.stderr
    summary = (out / "summary.tsv").read_text().splitlines()
    assert len(summary) == 2 and summary[1].split("\t")[0] == "slide"
    print(f"snakemake --profile slurm, one slide: {seconds:.1f} s")
    assert_same_output(out / "slide.ome.zarr", data["reference"])
    assert zarr.open_group(str(out / "slide.ome.zarr"), mode="r").attrs["biounet"]["status"] == "complete"
