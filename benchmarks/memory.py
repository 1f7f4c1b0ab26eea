"""5. Memory against slide size: peak RSS of `biounet segment` (default settings) on growing slides.

The slides are tiled BigTIFF mosaics written tile by tile (never whole in
memory). Every slide runs with a hand-set threshold U-Net (original geometry,
width 2: the whole pipeline, real nucleus instances, a fraction of the
network's time), and the smallest also with the shipped model, whose tile
activations add a constant that does not grow with the slide.
"""

from __future__ import annotations

from benchmarks.common import (
    GIB,
    MP,
    Context,
    Section,
    Stats,
    Target,
    biounet_cmd,
    run_child,
    segment_seconds,
    threshold_model,
)

PERCENTILE = {"method": "percentile", "low": 1.0, "high": 99.8}


def measure(ctx: Context) -> Section:
    sizes = ctx.sizes["memory"]
    light = threshold_model(ctx.workdir / "threshold.pt", 0.25, PERCENTILE)
    runs = [(sizes[0], "shipped", ctx.model_args())] + [(s, "threshold", ["--model", str(light)]) for s in sizes]
    rows, rss = [], {}
    for size, name, model in runs:
        slide = ctx.slide(size)
        values, speed, objects = [], [], ""
        for _ in range(ctx.repeats if size == sizes[0] else 1):
            out = ctx.output("memory.ome.zarr")
            child = run_child(biounet_cmd("segment", str(slide), "-o", str(out), "--no-progress", *model))
            values.append(child.peak_rss / GIB)
            speed.append(size * size / MP / segment_seconds(child.stdout))
            objects = child.stdout.split("objects: ")[-1].split(" ")[0]
        rss[(size, name)] = Stats(values)
        rows.append([f"{size} x {size}", f"{size * size / 1e6:.0f} MP", name, objects, rss[(size, name)].show("{:.2f}"),
                     Stats(speed).show()])
    section = Section("Memory against slide size", "python -m benchmarks --only memory")
    section.lines.append("uint16 tiled BigTIFF slides, `biounet segment` defaults, peak RSS of the process.")
    section.lines.append("")
    section.table(["slide", "pixels", "model", "objects", "peak RSS GiB", "MP/s"], rows)
    small, large = sizes[0], sizes[-1]
    ratio = rss[(large, "threshold")].median / rss[(small, "threshold")].median
    peak = max(max(s.values) for s in rss.values())
    section.targets.append(Target(f"peak RSS {large}^2 / {small}^2 (same model)", f"{ratio:.2f}", "<= 1.2",
                                  ratio <= 1.2))
    section.targets.append(Target("peak RSS, any run (shipped model at the smallest size)", f"{peak:.2f} GiB",
                                  "<= 2 GB", peak * GIB <= 2e9))
    return section
