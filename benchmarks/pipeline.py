"""7. The block-parallel pipeline with a null network: the CPU side alone.

The null network (`benchmarks.null_model`: the U-Net's tile geometry, a
threshold for a network) makes every stage run on real nuclei while the
network costs almost nothing, as a fast GPU would. On the suite's mosaic
slides (uint16 tiled BigTIFF), fresh processes, alternated within a repeat:

- `biounet segment` (default settings and outputs): MP/s as segment reports
  its run, and of the whole CLI process (start-up included);
- the same pinned to one core (`taskset -c 0`);
- `--cluster local --workers 2` (Dask worker processes);
- time outside block tasks (set-up, merge, table, metadata: what runs alone)
  at growing slide sizes, with the objects it has to merge.
"""

from __future__ import annotations

import json
import shutil
import sys

from benchmarks.common import (
    GIB,
    MP,
    Context,
    Section,
    Stats,
    Target,
    biounet_cmd,
    ratio_stats,
    run_child,
    segment_seconds,
)
from benchmarks.null_model import null_model

SERIAL = ("setup", "merge", "table", "metadata")


def child(slide, out, model, *extra: str):
    """segment_child's JSON and the process's peak RSS."""
    run = run_child([sys.executable, "-m", "benchmarks.segment_child", str(slide), str(out), str(model), *extra])
    return json.loads(run.stdout.strip().splitlines()[-1]), run.peak_rss


def measure(ctx: Context) -> Section:
    sizes = ctx.sizes["pipeline_sizes"]
    main = sizes[len(sizes) // 2]
    model = null_model(ctx.workdir / "null.pt")
    slide = ctx.slide(main)
    px = main * main / MP
    taskset = shutil.which("taskset")
    runs: dict[str, list[float]] = {"reported": [], "process": [], "one core": [], "cluster": []}
    serial: dict[int, list[float]] = {s: [] for s in sizes}
    share: dict[int, list[float]] = {s: [] for s in sizes}
    objects: dict[int, int] = {}
    rss: dict[int, float] = {}
    base = biounet_cmd("segment", str(slide), "--model", str(model), "--overwrite")
    for r in range(ctx.repeats):
        out = ctx.output("pipeline.ome.zarr")
        cli = run_child([*base, "-o", str(out)])
        runs["reported"].append(segment_seconds(cli.stdout))
        runs["process"].append(cli.seconds)
        if taskset:
            pinned = run_child([taskset, "-c", "0", *base, "-o", str(out)])
            runs["one core"].append(segment_seconds(pinned.stdout))
        cluster = run_child([*base, "-o", str(out), "--cluster", "local", "--workers", "2"])
        runs["cluster"].append(segment_seconds(cluster.stdout))
        for size in sizes if r == 0 else [main]:
            info, peak = child(ctx.slide(size), ctx.output("pipeline-parts.ome.zarr"), model)
            outside = sum(info["timing"].get(k, 0.0) for k in SERIAL)
            serial[size].append(outside)
            share[size].append(outside / info["seconds"])
            objects[size] = info["objects"]
            rss[size] = max(rss.get(size, 0.0), peak / GIB)
    section = Section("Block-parallel pipeline (null network)", "python -m benchmarks --only pipeline")
    section.lines.append(f"{main} x {main} uint16 tiled BigTIFF, null network (`python -m benchmarks.null_model`), "
                         f"`biounet segment` defaults (NGFF 0.4, image copy, classes, instances, table, pyramids); "
                         "fresh processes, in each repeat: default, `taskset -c 0`, `--cluster local --workers 2`.")
    section.lines.append("")
    speed = {k: Stats([px / s for s in v]) for k, v in runs.items() if v}
    rows = [["`segment` as it reports its run (default)", Stats(runs["reported"]).show(), speed["reported"].show()],
            ["whole CLI process (start-up included)", Stats(runs["process"]).show(), speed["process"].show()]]
    if runs["one core"]:
        rows.append(["pinned to one core (`taskset -c 0`)", Stats(runs["one core"]).show(), speed["one core"].show()])
    rows.append(["`--cluster local --workers 2`", Stats(runs["cluster"]).show(), speed["cluster"].show()])
    section.table(["run", "seconds", "MP/s"], rows)
    section.table(["slide", "objects", "outside block tasks, s (set-up, merge, table, metadata)", "share of the run",
                   "peak RSS GiB"],
                  [[f"{s} x {s}", str(objects[s]), Stats(serial[s]).show(), Stats(share[s]).show("{:.1%}", 1),
                    f"{rss[s]:.2f}"] for s in sizes])
    reported, process = speed["reported"], speed["process"]
    section.targets.append(Target(f"null network {main}^2, MP/s as segment reports", reported.show("{:.1f}"),
                                  ">= 30", reported.median >= 30))
    section.targets.append(Target(f"null network {main}^2, MP/s of the whole CLI process", process.show("{:.1f}"),
                                  ">= 25", process.median >= 25))
    if runs["one core"]:
        cores = ratio_stats(runs["one core"], runs["reported"])
        section.targets.append(Target("default run vs one core (taskset -c 0)", cores.show("{:.2f}") + "x", ">= 1.8x",
                                      cores.median >= 1.8))
    dask = ratio_stats(runs["reported"], runs["cluster"])
    section.targets.append(Target("--cluster local --workers 2 vs default run", dask.show("{:.2f}") + "x", ">= 0.9x",
                                  dask.median >= 0.9))
    main_share = Stats(share[main])
    section.targets.append(Target(f"time outside block tasks, {main}^2", main_share.show("{:.1%}", 1), "<= 3%",
                                  main_share.median <= 0.03))
    return section
