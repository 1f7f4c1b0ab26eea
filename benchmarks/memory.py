"""5. Memory against slide size: peak RSS of `biounet segment` (defaults) on growing slides.

The slides are tiled BigTIFF mosaics written tile by tile (never whole in
memory). Large slides run once: a 32k^2 slide takes minutes here.
"""

from __future__ import annotations

from benchmarks.common import MP, Context, Section, Stats, Target, biounet_cmd, run_child, segment_seconds

GIB = 1024**3


def measure(ctx: Context) -> Section:
    sizes = ctx.sizes["memory"]
    rss: dict[int, list[float]] = {}
    speed: dict[int, list[float]] = {}
    for size in sizes:
        slide = ctx.slide(size)
        runs = ctx.repeats if size == sizes[0] else 1
        for _ in range(runs):
            out = ctx.output("memory.ome.zarr")
            child = run_child(biounet_cmd("segment", str(slide), "-o", str(out), "--quiet", *ctx.model_args()))
            rss.setdefault(size, []).append(child.peak_rss / GIB)
            speed.setdefault(size, []).append(size * size / MP / segment_seconds(child.stdout))
    section = Section("Memory against slide size", "python -m benchmarks --only memory")
    section.lines.append("uint16 tiled BigTIFF slides, `biounet segment` defaults, peak RSS of the process.")
    section.lines.append("")
    small, large = sizes[0], sizes[-1]
    section.table(["slide", "pixels", "peak RSS GiB", "MP/s"], [
        [f"{s} x {s}", f"{s * s / 1e6:.0f} MP", Stats(rss[s]).show("{:.2f}"), Stats(speed[s]).show()] for s in sizes
    ])
    ratio = Stats(rss[large]).median / Stats(rss[small]).median
    peak = max(max(v) for v in rss.values())
    section.targets.append(Target(f"peak RSS {large}^2 / {small}^2", f"{ratio:.2f}", "<= 1.2", ratio <= 1.2))
    section.targets.append(Target("peak RSS, largest slide", f"{peak:.2f} GiB", "<= 2 GB", peak * GIB <= 2e9))
    return section
