"""The benchmark suite runs end to end at tiny sizes (so it cannot rot) and reports every section."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from benchmarks.__main__ import SECTIONS, render
from benchmarks.common import ROOT, Section, Stats, Target, ratio_stats, segment_seconds


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
                  "Scaling", "Training side", "Block-parallel pipeline (null network)"):
        assert f"## {title}" in text
    assert "allocator:" in text and "torch:" in text
    # every target row carries a measured figure and a verdict
    rows = [line for line in text.split("## Targets")[1].split("\n## ")[0].splitlines() if line.startswith("| ")][1:]
    assert len(rows) >= 8
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert re.search(r"\d", cells[1]) and cells[3] in ("yes", "no"), row


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
    assert "| speed | 2.0 | >= 1.5 | yes |" in text and "## X" in text and "- cpu: test" in text
    assert SECTIONS[0] == "overhead"


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
