"""The benchmark suite: `python -m benchmarks` (or `make bench`) measures everything and writes docs/benchmarks.md.

    python -m benchmarks                      # the full suite, about 40 minutes on 2 cores
    python -m benchmarks --only overhead,peers --repeats 5
    python -m benchmarks --smoke --out /tmp/bench.md   # tiny sizes, 2 minutes (run by `make test-all`)

Every CPU measurement runs with glibc malloc tuned as biounet runs (`biounet.runtime.process.tune_malloc`),
except the network variants that say otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, Context, Section
from benchmarks.quiet import QUIET_CORES, between, snapshot

SECTIONS = ["overhead", "network", "peers", "tiles", "memory", "scaling", "training", "pipeline", "geojson", "tissue",
            "gpu"]
DEFAULT = [s for s in SECTIONS if s != "gpu"]  # the GPU section runs on its own: --only gpu
FULL = {"pipeline": 4096, "tiles_slide": 2048, "tile_small": 572, "tiles": [572, 796, 1068, 1580], "memory": [4096, 16384, 32768],
        "sgemm": 2048, "train_tile": 572, "warm_up": 1024,
        "pipeline_sizes": [8192, 16384, 32768], "gpu_slide": 16384, "gpu_tile": 0,
        "gpu_invariance_tiles": [572, 1068, 1212], "geojson": 60000, "tissue_slide": 20480}
SMOKE = {"pipeline": 512, "tiles_slide": 512, "tile_small": 204, "tile_auto": 252, "tiles": [252], "memory": [256, 512],
         "sgemm": 256, "train_tile": 204, "warm_up": 256,
        "pipeline_sizes": [256, 512], "gpu_slide": 256, "gpu_tile": 204, "gpu_invariance_tiles": [204, 252], "geojson": 2048,
         "tissue_slide": 2048}


def render(sections: list[Section], machine: dict, args: argparse.Namespace, seconds: float) -> str:
    lines = ["# biounet benchmarks", "",
             f"Written by `{' '.join(['python -m benchmarks', *sys.argv[1:]])}` on "
             f"{datetime.date.today().isoformat()} in {seconds / 60:.0f} min. Every figure is the median "
             f"(min-max, n runs) of {args.repeats} repeats unless it says otherwise; ratios are taken per "
             "repeat from measurements side by side. The machine is shared: absolute figures drift 15-30% "
             "between runs, ratios much less.", "", "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in machine.items()]
    lines += ["", "## Targets", "", f"A target is met or missed only by a figure from a quiet machine: other work using "
              f"at most {QUIET_CORES} cores on average while its section ran (`benchmarks/quiet.py`); a figure "
              "taken beside other work is shown but not claimed.", "", TARGETS_HEADER, "|---|---|---|---|---|"]
    lines += [target_row(t, s) for s in sections for t in s.targets]
    for s in sections:
        lines += ["", f"## {s.title}", "", f"`{s.command}`", "", *s.lines]
    return "\n".join(lines).rstrip() + "\n"


TARGETS_HEADER = "| measure | figure | target | met | other work while measured |"


def target_row(t, section: Section) -> str:
    """One row of the targets table: met or missed only if the section ran on a quiet machine."""
    q = section.quiet
    if t.met is None:
        met = "-"
    elif q is not None and not q.quiet:
        met = "not claimed (busy machine)"
    else:
        met = "yes" if t.met else "no"
    other = f"{q.other_cores:.2f} cores" if q is not None else "-"
    return f"| {t.name} | {t.figure} | {t.goal} | {met} | {other} |"


def merge(old: str, new: str) -> str:
    """`old` with the sections and target rows of `new` replacing their namesakes (runs with --only)."""
    def parts(text: str) -> tuple[str, list[str]]:
        head, *sections = text.split("\n## ")
        return head, sections

    def title(section: str) -> str:
        return section.splitlines()[0]

    def rows(section: str) -> list[str]:
        return [r for r in section.splitlines() if r.startswith("| ") and not r.startswith("| measure")]

    old_head, old_sections = parts(old)
    new_head, new_sections = parts(new)
    fresh = {title(s): s for s in new_sections}
    new_rows = {r.split(" | ")[0]: r for r in rows(fresh.pop("Targets", ""))}
    out = []
    for section in old_sections:
        name = title(section)
        if name == "Targets":  # rerun rows in their old places, rows new to the file at the end
            old_rows = rows(section)
            names = {r.split(" | ")[0] for r in old_rows}
            merged = [new_rows.get(r.split(" | ")[0], r) for r in old_rows]
            merged += [r for n, r in new_rows.items() if n not in names]
            intro = [line for line in section.splitlines()[1:] if line and not line.startswith("|")]
            section = ("Targets\n\n" + "".join(f"{line}\n\n" for line in intro) + TARGETS_HEADER
                       + "\n|---|---|---|---|---|\n" + "\n".join(merged) + "\n")
        elif name in fresh:
            section = fresh.pop(name)
        out.append(section.rstrip("\n") + "\n")
    out += [s.rstrip("\n") + "\n" for s in fresh.values()]
    rerun = new_head.split("\n")[2].split(" on ")[0].replace("Written by", "Sections rerun by")
    return old_head.rstrip("\n") + f"\n{rerun} (merged in).\n\n## " + "\n## ".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, to check the suite runs")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / ".work", help="slides and outputs")
    p.add_argument("--model", help="model file (default: the shipped one)")
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else DEFAULT
    unknown = set(names) - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    ctx = Context(args.workdir, args.repeats, args.smoke, SMOKE if args.smoke else FULL, args.model)

    import torch

    from biounet.runtime.devices import cpu_threads
    from biounet.runtime.machine import describe

    torch.set_num_threads(cpu_threads())
    machine = describe()
    start = time.perf_counter()
    sections = []
    for name in names:
        t = time.perf_counter()
        print(f"[{name}] ...", flush=True)
        before = snapshot()
        section = importlib.import_module(f"benchmarks.{name}").measure(ctx)
        section.quiet = between(before, snapshot())
        section.lines[:0] = [f"While this section ran, {section.quiet.describe()}.", ""]
        sections.append(section)
        print(f"[{name}] {time.perf_counter() - t:.0f} s", flush=True)
        for target in section.targets:
            print(f"  {target.name}: {target.figure} (target {target.goal})", flush=True)
        print(f"  {section.quiet.describe()}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = render(sections, machine, args, time.perf_counter() - start)
    if args.only and args.out.exists():
        text = merge(args.out.read_text(), text)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
