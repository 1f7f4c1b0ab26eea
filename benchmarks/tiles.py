"""4. Tile size: speed and peak memory of `biounet segment --tile N`, and the automatic choice.

Every run is a fresh `biounet segment` process (peak RSS of the process);
MP/s from the run time segment reports (imports excluded). Rounds alternate
the sizes. Each fixed tile gets a block that its outputs cover without waste
(a multiple of the tile's output near 1024 px) and a slide of a whole number
of blocks near the nominal size, so no run computes margins the others do not;
the automatic choice runs with the default block.
"""

from __future__ import annotations

from benchmarks.common import GIB, MP, Context, Section, Stats, biounet_cmd, run_child, segment_seconds

MARGIN = 184  # a depth-5 valid U-Net's input minus output


def block_for(tile: int) -> int:
    """A block (multiple of 16) that whole outputs of `tile` cover with little waste, near 1024 px."""
    out = tile - MARGIN
    return (out // 16) * 16 * max(1, 1024 // out)


def measure(ctx: Context) -> Section:
    nominal = ctx.sizes["tiles_slide"]
    choices = ctx.sizes["tiles"] + [None]
    sizes = {t: max(1, round(nominal / (block_for(t) if t else 1024))) * (block_for(t) if t else 1024) for t in choices}
    slides = {t: ctx.slide(sizes[t]) for t in choices}
    seconds: dict = {t: [] for t in choices}
    rss: dict = {t: [] for t in choices}
    chosen = None
    for _ in range(ctx.repeats):
        for tile in choices:
            out = ctx.output("tiles.ome.zarr")
            args = ["segment", str(slides[tile]), "-o", str(out), "--no-progress", *ctx.model_args()]
            child = run_child(biounet_cmd(*args, *(["--tile", str(tile), "--block", str(block_for(tile))] if tile else [])))
            seconds[tile].append(segment_seconds(child.stdout))
            rss[tile].append(child.peak_rss / GIB)
            if tile is None:
                chosen = child.stdout.split(", tile ")[1].split(",")[0]
    section = Section("Tile size", "python -m benchmarks --only tiles")
    section.lines.append(f"Slides of about {nominal} x {nominal} px (a whole number of blocks), "
                         "`biounet segment --tile N --block B` (default memory budget).")
    section.lines.append("")
    section.table(["tile", "block", "slide", "MP/s", "peak RSS GiB"], [
        [str(t) if t else f"auto ({chosen})", str(block_for(t)) if t else "1024", str(sizes[t]),
         Stats([sizes[t] ** 2 / MP / s for s in seconds[t]]).show(),
         Stats(rss[t]).show("{:.2f}")] for t in choices
    ])
    return section
