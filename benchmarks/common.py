"""Shared pieces of the benchmark suite: statistics, timing, child processes, slides, Markdown."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from benchmarks.make_slide import write_slide
from benchmarks.quiet import Quietness

ROOT = Path(__file__).resolve().parents[1]
MP = 1e6
GIB = 1024**3


@dataclass
class Stats:
    """Median and range of repeated measurements."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def show(self, fmt: str = "{:.2f}", scale: float = 1.0) -> str:
        v = [x * scale for x in self.values]
        if len(v) == 1:
            return fmt.format(v[0]) + " (1 run)"
        return f"{fmt.format(statistics.median(v))} ({fmt.format(min(v))}-{fmt.format(max(v))}, n={len(v)})"


@dataclass
class Target:
    name: str
    figure: str
    goal: str
    met: bool | None  # None: reported, no target


@dataclass
class Section:
    title: str
    command: str
    lines: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    quiet: "Quietness | None" = None  # what other work did while the section ran

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        self.lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
        self.lines.append("")


@dataclass
class Context:
    """Settings of one suite run."""

    workdir: Path
    repeats: int
    smoke: bool
    sizes: dict[str, int]  # named slide sizes (smoke: tiny)
    model: str | None = None  # None: the shipped default model

    def slide(self, size: int) -> Path:
        """A size x size uint16 tiled BigTIFF mosaic of BBBC039 fields, made once."""
        path = self.workdir / f"slide-{size}.tif"
        if not path.exists():
            tmp = path.with_suffix(".part.tif")
            write_slide(tmp, size)
            tmp.rename(path)
        return path

    def output(self, name: str) -> Path:
        path = self.workdir / "out" / name
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def warm_up(self) -> None:
        """One untimed `segment` of a small slide, so the timed runs find the network's
        kernels set up, as the bare network and MONAI do after their warm-up call."""
        from biounet.pipeline.segment import segment

        segment(self.slide(self.sizes["warm_up"]), self.output("warm-up.ome.zarr"), model=self.model, progress=False)

    def model_args(self) -> list[str]:
        return ["--model", self.model] if self.model else []


def threshold_model(path: Path, threshold: float = 0.5, normalization: dict | None = None, in_channels: int = 1,
                    dark: bool = False, width: int = 2) -> Path:
    """A hand-set original-geometry U-Net whose class map is (normalised input > threshold), or
    (< threshold) if `dark` (nuclei in H&E), the input being the mean of its `in_channels`.

    Only the full-resolution skip path carries signal (centre taps), so the foreground
    logit is 40 * (x - threshold): an exact, known segmentation for testing and timing what
    happens after the network (instances, tables, stitching) at a fraction of a real
    network's cost (`width` 16 costs what the shipped nuclei model does).
    """
    import torch

    from biounet.model.file import save_model
    from biounet.model.spec import ModelSpec
    from biounet.model.unet import UNet

    net = UNet(width=width, in_channels=in_channels)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.down[0][0].weight[0, :, 1, 1] = 1.0 / in_channels
        for conv in (net.down[0][2], net.up_conv[-1][2]):
            conv.weight[0, 0, 1, 1] = 1.0
        net.up_conv[-1][0].weight[0, 0, 1, 1] = 1.0  # skip channel 0 of the concatenation
        sign = -1.0 if dark else 1.0
        net.head.weight[1, 0, 0, 0] = 40.0 * sign
        net.head.bias[1] = -40.0 * threshold * sign
    save_model(path, net, ModelSpec(unet=net.config, normalization=normalization or {"method": "none"}))
    return path


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass
class Child:
    seconds: float  # wall time of the process
    peak_rss: int  # bytes
    stdout: str


def peak_rss(pid: int) -> int | None:
    """VmHWM of a running process, bytes (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def run_child(cmd: list[str], env: dict | None = None, poll: float = 0.05,
              watch: Callable[[int], None] | None = None) -> Child:
    """Run `cmd`, return its wall time, peak resident memory and output; raise if it fails.

    The peak is the process's own high-water mark (VmHWM, reset by exec), read
    until it exits: getrusage's ru_maxrss would report the parent's size, which
    a forked child inherits. `watch` is given the peak so far at every poll.
    """
    env = dict(os.environ if env is None else env)
    env.setdefault("TQDM_DISABLE", "1")  # segment's summary lines, without a progress bar
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, peak_rss(proc.pid) or 0)
            if watch is not None:
                watch(peak)
            time.sleep(poll)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        text = out.read().decode(errors="replace")
        if proc.returncode:
            tail = err.read().decode(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): " + " | ".join(tail))
    return Child(seconds, peak, text)


def biounet_cmd(*args: str) -> list[str]:
    """The `biounet` command of this environment."""
    return [sys.executable, "-m", "biounet", *args]


def segment_seconds(stdout: str) -> float:
    """The run time `biounet segment` reports (start-up and imports excluded)."""
    match = re.search(r", in ([\d.]+) s", stdout)
    if not match:
        raise RuntimeError(f"no run time in biounet output: {stdout!r}")
    return float(match.group(1))


def env_with(**changes: str | None) -> dict:
    env = dict(os.environ)
    for k, v in changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def ratio_stats(a: list[float], b: list[float]) -> Stats:
    """Per-repeat ratios a/b of measurements taken side by side."""
    return Stats([x / y for x, y in zip(a, b)])
