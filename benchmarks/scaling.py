"""6. Scaling: one process with every core against 1 and 2 Dask worker processes.

`biounet segment` (threads in one process, the default) and `--cluster local
--workers N` (N processes sharing the cores), fresh processes, alternated.
"""

from __future__ import annotations

from benchmarks.common import MP, Context, Section, Stats, biounet_cmd, run_child, segment_seconds

SETUPS = [
    ("one process, all cores (default)", []),
    ("Dask local cluster, 1 worker", ["--cluster", "local", "--workers", "1"]),
    ("Dask local cluster, 2 workers", ["--cluster", "local", "--workers", "2"]),
]


def measure(ctx: Context) -> Section:
    size = ctx.sizes["tiles_slide"]
    slide = ctx.slide(size)
    speed: dict[str, list[float]] = {name: [] for name, _ in SETUPS}
    for _ in range(ctx.repeats):
        for name, extra in SETUPS:
            out = ctx.output("scaling.ome.zarr")
            child = run_child(biounet_cmd("segment", str(slide), "-o", str(out), "--no-progress", *ctx.model_args(), *extra))
            speed[name].append(size * size / MP / segment_seconds(child.stdout))
    base = Stats(speed[SETUPS[1][0]]).median
    section = Section("Scaling over worker processes", "python -m benchmarks --only scaling")
    section.lines.append(f"{size} x {size} slide; run time as segment reports it (cluster start-up included).")
    section.lines.append("")
    section.table(["set-up", "MP/s", "vs 1 worker"], [
        [name, Stats(speed[name]).show(), f"{Stats(speed[name]).median / base:.2f}"] for name, _ in SETUPS
    ])
    return section
