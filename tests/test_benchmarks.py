"""The benchmark suite runs end to end at tiny sizes (so it cannot rot) and reports every section."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from benchmarks.__main__ import SECTIONS, render
from benchmarks.common import ROOT, Section, Stats, Target, ratio_stats, segment_seconds
from benchmarks.quiet import Quietness, between, machine_busy_seconds, snapshot


def test_stats_and_ratios():
    s = Stats([3.0, 1.0, 2.0])
    assert s.median == 2.0 and s.show("{:.1f}") == "2.0 (1.0-3.0, n=3)"
    assert Stats([4.0]).show("{:.0f}") == "4 (1 run)"
    assert ratio_stats([2.0, 6.0], [1.0, 2.0]).values == [2.0, 3.0]
    assert segment_seconds("wrote x: 16 blocks of 4096x4096 (yx), 16 computed, tile 1212, in 12.5 s\n") == 12.5


@pytest.mark.slow  # 2 minutes on 2 cores: `make test-all` runs it
def test_smoke_suite_writes_every_section(tmp_path):
    out = tmp_path / "benchmarks.md"
    r = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", "--repeats", "1", "--out", str(out),
                        "--workdir", str(tmp_path / "work")], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    text = out.read_text()
    for title in ("Pipeline overhead", "Network speed", "Against MONAI", "Tile size", "Memory against slide size",
                  "Scaling", "Training side", "Block-parallel pipeline (null network)",
                  "Whole slide with tissue detection"):
        assert f"## {title}" in text
    assert "allocator:" in text and "torch:" in text
    # every target row carries a measured figure and a verdict
    rows = [line for line in text.split("## Targets")[1].split("\n## ")[0].splitlines() if line.startswith("| ")][1:]
    assert len(rows) >= 8
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert re.search(r"\d", cells[1]) and cells[3] in ("yes", "no", "not claimed (busy machine)"), row
        assert cells[4].endswith("cores"), row
    assert "While this section ran, other work used" in text


def test_gpu_section_runs_on_the_cpu(tmp_path):
    """The one-shot GPU benchmark (`--only gpu`), tiny, on this machine's CPU: every part of
    it runs (bare network, segment, null network, invariance, precision, training)."""
    out = tmp_path / "gpu.md"
    r = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "gpu", "--smoke", "--repeats", "1", "--out",
                        str(out), "--workdir", str(tmp_path / "work")], capture_output=True, text=True, timeout=900,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    text = out.read_text()
    assert "## GPU worker (CPU (no CUDA GPU here))" in text
    assert "fp32 class maps identical across tiles: **yes**" in text
    for row in ("shipped width 16", "random width 64", "null network", "width 4", "width 8"):
        assert f"| {row}" in text
    assert "| segment vs bare network, width 64 (CPU (no CUDA GPU here)) |" in text and "| - |" in text


def test_render_lists_targets():
    section = Section("X", "cmd", ["body"], [Target("speed", "2.0", ">= 1.5", True)])
    args = type("A", (), {"repeats": 3})()
    text = render([section], {"cpu": "test"}, args, 60.0)
    assert "| speed | 2.0 | >= 1.5 | yes | - |" in text and "## X" in text and "- cpu: test" in text
    assert SECTIONS[0] == "overhead"


def test_a_target_measured_beside_other_work_is_not_claimed():
    args = type("A", (), {"repeats": 3})()
    rows = {}
    for other_cpu in (1.0, 60.0):  # over 100 s: 0.01 cores (quiet), 0.6 cores (busy)
        section = Section("X", "cmd", [], [Target("speed", "2.0", ">= 1.5", True), Target("slow", "1.0", ">= 1.5", False)])
        section.quiet = Quietness(100.0, other_cpu, 0.1, 0.2)
        rows[other_cpu] = [line for line in render([section], {}, args, 1.0).splitlines() if line.startswith("| s")]
    assert rows[1.0] == ["| speed | 2.0 | >= 1.5 | yes | 0.01 cores |", "| slow | 1.0 | >= 1.5 | no | 0.01 cores |"]
    assert rows[60.0] == ["| speed | 2.0 | >= 1.5 | not claimed (busy machine) | 0.60 cores |",
                          "| slow | 1.0 | >= 1.5 | not claimed (busy machine) | 0.60 cores |"]


def test_machine_busy_time_from_proc_stat():
    tick = os.sysconf("SC_CLK_TCK")
    line = f"cpu  {10 * tick} {2 * tick} {3 * tick} {1000 * tick} {7 * tick} {1 * tick} {1 * tick} {1 * tick} 0 0\ncpu0 1 2 3\n"
    assert machine_busy_seconds(line) == pytest.approx(10 + 2 + 3 + 1 + 1 + 1)  # idle and iowait left out


@pytest.mark.serial
def test_other_work_is_seen_and_ours_is_not():
    """A process burning a core beside us makes an interval busy; our own work does not (against
    what the rest of the machine does meanwhile, measured over an interval of our idling)."""
    before = snapshot()
    time.sleep(1.0)
    background = between(before, snapshot()).other_cores
    spin = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 3: pass"])
    try:
        time.sleep(0.5)
        before = snapshot()
        time.sleep(2.0)
        busy = between(before, snapshot())
    finally:
        spin.wait()
    assert busy.other_cores > background + 0.4 and not busy.quiet, busy.describe()
    before = snapshot()
    t = time.process_time()
    while time.process_time() - t < 1.0:  # this process's own work
        pass
    ours = between(before, snapshot())
    assert ours.other_cores < background + 0.5, ours.describe()  # our second of CPU is not other work


def test_merge_replaces_rows_in_place_and_keeps_other_sections():
    from benchmarks.__main__ import merge

    table = "| measure | figure | target | met |\n|---|---|---|---|\n"
    old = ("# B\n\nWritten by `python -m benchmarks` on day in 1 min.\n\n## Targets\n\n" + table
           + "| a | 1 | x | no |\n| b | 2 | y | yes |\n\n## A\n\nold a\n\n## B\n\nold b\n")
    new = ("# B\n\nWritten by `python -m benchmarks --only a` on day2 in 1 min.\n\n## Targets\n\n" + table
           + "| a | 9 | x | yes |\n| c | 3 | z | yes |\n\n## A\n\nnew a\n")
    out = merge(old, new)
    rows = [line for line in out.splitlines() if line.startswith("| ") and "measure" not in line]
    assert rows == ["| a | 9 | x | yes |", "| b | 2 | y | yes |", "| c | 3 | z | yes |"]
    assert "new a" in out and "old a" not in out and "old b" in out
    assert "Sections rerun by `python -m benchmarks --only a` (merged in)." in out


def test_profile_sorts_samples_by_activity_and_thread(tmp_path):
    """benchmarks.profile: py-spy's raw lines added up by what the innermost known frame does
    and by thread group."""
    from benchmarks.profile import activity, summarize, thread_group

    assert activity(["run (threading.py:1)", "forward (torch/nn/modules/module.py:1)"]) == "network forward (torch)"
    assert activity(["task (biounet/pipeline/local.py:9)", "label_window (biounet/label/pass1.py:52)"]) \
        == "labelling: pass 1 and 2"
    assert activity(["task (biounet/pipeline/local.py:9)", "_write (biounet/write/store.py:1)",
                     "encode (numcodecs/blosc.py:3)"]) == "writing chunks (compress, zarr)"
    assert thread_group("thread (12): biounet-net-1") == "network threads"
    assert thread_group("thread (13): biounet-cpu-0") == "CPU pool"
    raw = tmp_path / "p.raw"
    raw.write_text("thread (1): biounet-net-0;run (threading.py:1);forward (torch/nn/modules/module.py:1) 300\n"
                   "thread (2): biounet-cpu-0;t (biounet/pipeline/local.py:9);w (biounet/label/pass1.py:5) 50\n"
                   "thread (2): biounet-cpu-0;t (biounet/pipeline/local.py:9);w (biounet/label/pass1.py:5) 25\n")
    table = summarize(raw, 100, 4.0).splitlines()
    assert "| network forward (torch) | 0.0 | 3.0 | 3.0 |" in table
    assert "| labelling: pass 1 and 2 | 0.8 | 0.0 | 0.8 |" in table  # 75 samples at 100/s
    assert table[-1] == "| all | 0.8 | 3.0 | 3.8 |"
    from benchmarks.profile import activity as what

    assert what(["_work (biounet/pipeline/local.py:63)", "Queue.get (queue.py:171)",
                 "Condition.wait (threading.py:327)"]) == "waiting (sampled though blocked)"
