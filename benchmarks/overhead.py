"""1. Pipeline overhead: `segment` against the bare network over the same tiles.

Both run in this process: `biounet.pipeline.segment` (read, normalise, mirror,
tile, predict, classes, instances, pyramids, object table) and a loop that only
calls the network on batches of the same number and size of tiles the plan
uses. The bare network runs two ways: one network on every core (one thread,
torch's OpenMP threads on all cores) and as `segment` runs it (the plan's
network threads, each with its share of the cores, taking blocks in turn); the
ratio is taken against the faster of the two, so a better way of running the
network is not counted as less overhead. All warm: the bare loops after one
untimed call, `segment` after one untimed run on a small slide (which sets up
the same tile size's kernels). Each `segment` run is bracketed by two rounds of
bare runs and compared with their mean, so a drift of the machine's speed over
the minutes a repeat takes cancels (to first order) instead of landing in the
ratio.
"""

from __future__ import annotations

import threading

import torch

from benchmarks.common import MP, Context, Section, Stats, Target, ratio_stats, timed
from biounet.model.file import load_model
from biounet.pipeline.segment import segment
from biounet.plan.blocks import tile_window
from biounet.plan.run import make_run
from biounet.predict.device import prepare, run
from biounet.runtime.devices import cpu_threads, resolve_device


def tile_counts(plan) -> list[int]:
    """Tiles of each block of the plan."""
    counts = []
    for block in plan.blocks:
        _, _, _, _, ys, xs = tile_window(block, plan.tile, plan.geometry)
        counts.append(len(ys) * len(xs))
    return counts


def bare_forward(plan, workers: int = 1, threads: int | None = None) -> float:
    """Seconds the network alone needs for the plan's tiles (random input, same batches) on
    `workers` threads taking blocks in turn, with `threads` torch threads (None: every core)."""
    net, spec = load_model(plan.model)
    net = prepare(net, resolve_device(plan.device), threads)
    channels = spec.unet.in_channels
    counts = tile_counts(plan)
    x = torch.randn(plan.batch, channels, plan.tile, plan.tile)
    run(net, x[:1])  # kernels set up, as segment's first block does

    def share(w: int) -> None:
        for n in counts[w::workers]:
            for i in range(0, n, plan.batch):
                run(net, x[: min(plan.batch, n - i)])

    def go() -> None:
        pool = [threading.Thread(target=share, args=(w,)) for w in range(workers)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    return timed(go)


def bare_both(plan) -> tuple[float, float]:
    """(one network on every core, the network as the plan runs it): seconds of each."""
    return bare_forward(plan), bare_forward(plan, plan.workers, plan.threads)


def measure(ctx: Context) -> Section:
    size = ctx.sizes["pipeline"]
    slide = ctx.slide(size)
    section = Section("Pipeline overhead", f"python -m benchmarks --only overhead  # {size} x {size} slide")
    seg, bare, fin = [], [], []
    plan = make_run(slide, ctx.output("plan.ome.zarr"), model=ctx.model)
    ctx.warm_up()
    bare.append(bare_both(plan))
    for r in range(ctx.repeats):
        out = ctx.output(f"overhead-{r}.ome.zarr")
        result = []
        seg.append(timed(lambda: result.append(segment(slide, out, model=ctx.model, progress=False))))
        took = result[0].extra["seconds"]
        fin.append(took["setup"] + sum(took.get(s, 0.0) for s in ("merge", "table", "metadata")))
        bare.append(bare_both(plan))
    # per repeat: the faster way of running the bare network, as the mean of the rounds around the segment
    fastest = [min((b[0] + a[0]) / 2, (b[1] + a[1]) / 2) for b, a in zip(bare, bare[1:])]
    ratio = ratio_stats(seg, fastest)
    one, as_run = [b[0] for b in bare], [b[1] for b in bare]
    tiles = sum(tile_counts(plan))
    threads = plan.threads or cpu_threads()
    section.lines.append(f"{size} x {size} uint16 slide, {len(plan.blocks)} blocks, {tiles} tiles of {plan.tile} px, "
                         f"batch {plan.batch}; `segment` runs {plan.workers} network thread(s) of {threads} torch "
                         f"thread(s) each. Order: both bare forwards, then (segment, both bare forwards) x "
                         f"{ctx.repeats}; each ratio is a segment over the faster bare forward (mean of the rounds "
                         "just before and after it).")
    section.lines.append("")
    section.table(["", "seconds", "MP/s"], [
        ["`segment` (everything)", Stats(seg).show(), Stats([size * size / MP / s for s in seg]).show()],
        ["of which outside block tasks (set-up, merge, table, metadata)", Stats(fin).show(), ""],
        [f"network forward only, one network on {cpu_threads()} threads", Stats(one).show(),
         Stats([size * size / MP / s for s in one]).show()],
        [f"network forward only, as segment runs it ({plan.workers} x {threads} threads)", Stats(as_run).show(),
         Stats([size * size / MP / s for s in as_run]).show()],
        ["ratio segment / faster forward", ratio.show("{:.3f}"), ""],
    ])
    section.targets.append(Target("pipeline overhead (segment / bare forward)", ratio.show("{:.3f}"), "<= 1.10",
                                  ratio.median <= 1.10))
    return section
