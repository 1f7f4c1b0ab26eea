"""1. Pipeline overhead: `segment` against the bare network over the same tiles.

Both run in this process with the same threads: `biounet.pipeline.segment` (read,
normalise, mirror, tile, predict, classes, instances, pyramids, object table)
and a loop that only calls the network on batches of the same number and
size of tiles the plan uses. Both warm: the bare loop after one untimed call,
`segment` after one untimed run on a small slide (which sets up the same tile
size's kernels). Each `segment` run is bracketed by two bare runs and compared
with their mean, so a drift of the shared machine's speed over the minutes a
repeat takes cancels (to first order) instead of landing in the ratio.
"""

from __future__ import annotations

import torch

from benchmarks.common import MP, Context, Section, Stats, Target, ratio_stats, timed
from biounet.model.file import load_model
from biounet.pipeline.segment import segment
from biounet.plan.blocks import tile_window
from biounet.plan.run import make_run
from biounet.predict.device import prepare, run
from biounet.runtime.devices import resolve_device


def tile_counts(plan) -> list[int]:
    """Tiles of each block of the plan."""
    counts = []
    for block in plan.blocks:
        _, _, _, _, ys, xs = tile_window(block, plan.tile, plan.geometry)
        counts.append(len(ys) * len(xs))
    return counts


def bare_forward(plan) -> float:
    """Seconds the network alone needs for the plan's tiles (random input, same batches)."""
    net, spec = load_model(plan.model)
    net = prepare(net, resolve_device(plan.device))
    channels = spec.unet.in_channels
    counts = tile_counts(plan)
    x = torch.randn(plan.batch, channels, plan.tile, plan.tile)
    run(net, x[:1])  # kernels set up, as segment's first block does

    def go() -> None:
        for n in counts:
            for i in range(0, n, plan.batch):
                run(net, x[: min(plan.batch, n - i)])

    return timed(go)


def measure(ctx: Context) -> Section:
    size = ctx.sizes["pipeline"]
    slide = ctx.slide(size)
    section = Section("Pipeline overhead", f"python -m benchmarks --only overhead  # {size} x {size} slide")
    seg, bare, fin = [], [], []
    plan = make_run(slide, ctx.output("plan.ome.zarr"), model=ctx.model)
    ctx.warm_up()
    bare.append(bare_forward(plan))
    for r in range(ctx.repeats):
        out = ctx.output(f"overhead-{r}.ome.zarr")
        result = []
        seg.append(timed(lambda: result.append(segment(slide, out, model=ctx.model, progress=False))))
        took = result[0].extra["seconds"]
        fin.append(took["setup"] + sum(took.get(s, 0.0) for s in ("merge", "table", "metadata")))
        bare.append(bare_forward(plan))
    ratio = ratio_stats(seg, [(before + after) / 2 for before, after in zip(bare, bare[1:])])
    tiles = sum(tile_counts(plan))
    section.lines.append(f"{size} x {size} uint16 slide, {len(plan.blocks)} blocks, {tiles} tiles of {plan.tile} px, "
                         f"batch {plan.batch}, {torch.get_num_threads()} threads. Order: forward, then "
                         f"(segment, forward) x {ctx.repeats}; each ratio is a segment over the mean of the "
                         "forwards just before and after it.")
    section.lines.append("")
    section.table(["", "seconds", "MP/s"], [
        ["`segment` (everything)", Stats(seg).show(), Stats([size * size / MP / s for s in seg]).show()],
        ["of which outside block tasks (set-up, merge, table, metadata)", Stats(fin).show(), ""],
        ["network forward only", Stats(bare).show(), Stats([size * size / MP / s for s in bare]).show()],
        ["ratio segment / forward", ratio.show("{:.3f}"), ""],
    ])
    section.targets.append(Target("pipeline overhead (segment / bare forward)", ratio.show("{:.3f}"), "<= 1.05",
                                  ratio.median <= 1.05))
    return section
