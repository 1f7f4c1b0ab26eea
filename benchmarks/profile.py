"""Where `segment`'s CPU time goes, thread by thread: py-spy samples a warm run.

Runs `benchmarks.profile` as a child (`--child`): one untimed warm-up run on a small slide,
then, once `py-spy record --threads --format raw --pid` is attached (only threads on a
CPU are sampled: idle ones are not), `segment` of a SIZE x SIZE slide (the overhead
section's); then adds up the samples by thread group and by what the innermost biounet
(or library) frame does.
py-spy is in the `bench` extra.

    python -m benchmarks.profile [--size 4096] [--rate 100] [--raw FILE]
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# What a sample is doing, from its frames (first match, innermost frame first).
ACTIVITIES = [
    ("network forward (torch)", r"\(torch/|UNet\.predict|predict/device\.py|predict/net\.py"),
    ("labelling: pass 1 and 2", r"\(biounet/label/"),
    ("object table", r"\(biounet/measure/"),
    ("pyramid levels", r"pyramid"),
    ("writing chunks (compress, zarr)", r"\(biounet/write/|numcodecs|zarr/|blosc"),
    ("reading and decoding the slide", r"\(biounet/read/|tifffile|imagecodecs"),
    ("tiling, normalising, mirror padding", r"\(biounet/predict/|\(biounet/plan/"),
    ("scheduling (biounet.pipeline)", r"\(biounet/pipeline/"),
    ("start-up: imports, model load, numba", r"<module>|_find_and_load|numba|model/file\.py"),
]


WAITS = r"^(Condition\.wait|Event\.wait|Queue\.get|_worker|EpollSelector\.select|Lock\.acquire|Thread\.join) "


def activity(frames: list[str]) -> str:
    """The activity of one sample, from its innermost matching frame."""
    if not frames:
        return "no Python frame (native code)"
    if re.match(WAITS, frames[-1]):
        return "waiting (sampled though blocked)"
    for frame in reversed(frames):
        for name, pattern in ACTIVITIES:
            if re.search(pattern, frame):
                return name
    return "other"


def thread_group(head: str) -> str:
    """A thread's group from py-spy's 'thread (ID): NAME': network, CPU pool, main, other."""
    name = head.split(": ", 1)[1] if ": " in head else "unnamed"
    for prefix, group in (("biounet-net", "network threads"), ("biounet-cpu", "CPU pool"),
                          ("MainThread", "main"), ("biounet-kernels", "numba warm-up")):
        if name.startswith(prefix):
            return group
    return "other threads (zarr I/O, OpenMP, ...)"


def summarize(raw: Path, rate: int, seconds: float) -> str:
    """A table of CPU seconds by activity and thread group from py-spy's raw output."""
    counts: collections.Counter = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        counts[(activity(frames[1:]), thread_group(frames[0]))] += int(n)
    groups = sorted({g for _, g in counts})
    rows = sorted({a for a, _ in counts}, key=lambda a: -sum(v for (b, _), v in counts.items() if b == a))
    out = [f"segment wall {seconds:.1f} s; seconds each thread group was sampled active ({rate} samples/s; py-spy "
           "skips threads it sees idle; a thread in torch counts once however many OpenMP threads it runs)", "",
           "| activity | " + " | ".join(groups) + " | all |", "|---" * (len(groups) + 2) + "|"]
    for a in rows:
        cells = [counts[(a, g)] / rate for g in groups]
        out.append(f"| {a} | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {sum(cells):.1f} |")
    totals = [sum(v for (_, h), v in counts.items() if h == g) / rate for g in groups]
    out.append("| all | " + " | ".join(f"{c:.1f}" for c in totals) + f" | {sum(totals):.1f} |")
    return "\n".join(out)


def child(size: int, workdir: Path) -> None:
    """The profiled process: a warm-up run, then the timed one (its seconds on stdout)."""
    from benchmarks.make_slide import write_slide
    from biounet.pipeline.segment import segment

    slide, small = workdir / f"slide-{size}.tif", workdir / "slide-1024.tif"
    for path, n in ((slide, size), (small, 1024)):
        if not path.exists():
            write_slide(path, n)
    segment(small, workdir / "warm.ome.zarr", overwrite=True, progress=False)
    print("READY", flush=True)
    sys.stdin.readline()  # the profiler is attached
    start = time.perf_counter()
    segment(slide, workdir / "out.ome.zarr", overwrite=True, progress=False)
    print(f"SEGMENT {time.perf_counter() - start:.3f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--rate", type=int, default=100, help="samples per second")
    p.add_argument("--raw", type=Path, help="keep py-spy's raw output here")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "biounet-profile")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.child:
        child(args.size, args.workdir)
        return 0
    raw = args.raw or args.workdir / "profile.raw"
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.profile", "--child", "--size", str(args.size),
                             "--workdir", str(args.workdir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[1])
    assert proc.stdin is not None and proc.stdout is not None
    if proc.stdout.readline().strip() != "READY":
        print("profile failed: the child stopped before its warm-up ended", file=sys.stderr)
        return 1
    spy = subprocess.Popen(["py-spy", "record", "--threads", "--format", "raw", "--rate", str(args.rate),
                            "--output", str(raw), "--pid", str(proc.pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(2)  # attached
    proc.stdin.write("\n")
    proc.stdin.flush()
    found = re.search(r"SEGMENT ([\d.]+)", proc.stdout.read())
    _, err = spy.communicate()
    if proc.wait() != 0 or spy.returncode != 0 or not found:
        print(f"profile failed: {err[-2000:]}", file=sys.stderr)
        return 1
    print(summarize(raw, args.rate, float(found.group(1))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
