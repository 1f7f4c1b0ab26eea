"""2. Network speed against the CPU's limit, and the variants of the CPU path.

Each variant runs in a fresh process (the allocator is chosen at process
start), rounds alternate the variants; FLOPs are counted analytically
(`biounet.model.flops`, checked against torch's FlopCounterMode). The ceiling
is MKL's single-precision matrix product on the same threads, timed in the same
process just before and after the network (best of each, as for the network):
on a shared machine the share of the ceiling is only meaningful side by side.
"""

from __future__ import annotations

import json
import os
import sys

from benchmarks.common import Context, Section, Stats, Target, env_with, run_child
from biounet.model.file import default_model_path, load_model
from biounet.plan.memory import choose_tile
from biounet.plan.run import DEFAULT_BLOCK, DEFAULT_MEMORY

# (name, variant, allocator)
VARIANTS = [
    ("NCHW, glibc malloc (plain PyTorch)", "nchw", "glibc"),
    ("channels_last, glibc malloc", "channels_last", "glibc"),
    ("channels_last, jemalloc (LD_PRELOAD)", "channels_last", "jemalloc"),
    ("channels_last, tuned glibc malloc (biounet default)", "channels_last", "tuned"),
    ("torch.compile(freezing), tuned glibc malloc", "compile", "tuned"),
]
DEFAULT = "channels_last, tuned glibc malloc (biounet default)"
JEMALLOC = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
            "/usr/lib64/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2")


def jemalloc_path() -> str | None:
    """Debian's libjemalloc2 (or another system copy), if installed: a variant to compare with."""
    return next((p for p in JEMALLOC if os.path.exists(p)), None)


def child(args: list[str], alloc: str) -> dict:
    env = env_with(LD_PRELOAD=jemalloc_path() if alloc == "jemalloc" else None)
    if alloc == "tuned":
        args = [*args, "--tune-malloc"]
    return json.loads(run_child([sys.executable, "-m", "benchmarks.network_child", *args], env).stdout)


def measure(ctx: Context) -> Section:
    _, spec = load_model(ctx.model or default_model_path())
    config = spec.unet
    auto = spec.tile or choose_tile(config, DEFAULT_BLOCK["0.4"], DEFAULT_MEMORY)
    tiles = [ctx.sizes["tile_small"], ctx.sizes.get("tile_auto", auto)]
    variants = VARIANTS
    if ctx.smoke:  # the suite's plumbing only: plain PyTorch and the default, one tile
        tiles, variants = tiles[:1], [VARIANTS[0], VARIANTS[3]]
    if jemalloc_path() is None:
        variants = [v for v in variants if v[2] != "jemalloc"]
    section = Section("Network speed against the CPU's limit",
                      "python -m benchmarks --only network")
    calls = 1 if ctx.smoke else 3
    sgemm = ctx.sizes["sgemm"]
    speed: dict[tuple[str, int], list[float]] = {}
    share: dict[tuple[str, int], list[float]] = {}
    first: dict[tuple[str, int], list[float]] = {}
    ceiling: list[float] = []
    for _ in range(ctx.repeats):
        for tile in tiles:
            for name, variant, alloc in variants:
                if variant == "compile" and tile != tiles[0]:  # compiling costs a minute here: one tile size
                    continue
                r = child(["--variant", variant, "--tile", str(tile), "--width", str(config.width),
                           "--out-channels", str(config.out_channels), "--calls", str(calls),
                           "--ceiling", str(sgemm)], alloc)
                rate = r["flops"] / min(r["times"]) / 1e9
                speed.setdefault((name, tile), []).append(rate)
                share.setdefault((name, tile), []).append(rate / (r["ceiling"] / 1e9))
                first.setdefault((name, tile), []).append(r["first"])
                ceiling.append(r["ceiling"] / 1e9)
    top = Stats(ceiling)
    section.lines.append(f"Width-{config.width} depth-{config.depth} {config.padding} U-Net (the default model's "
                         f"shape), batch 1. GFLOP/s of the fastest of {calls} calls per process; its share of the "
                         f"ceiling, a {sgemm} x {sgemm} float32 `torch.mm` timed in the same process before and "
                         f"after the network (fastest call), is taken per process. Ceiling over all processes: "
                         f"**{top.show('{:.0f}')} GFLOP/s**. First call = set-up plus one pass.")
    section.lines.append("")
    rows = []
    for name, _, _ in variants:
        row = [name]
        for tile in tiles:
            if (name, tile) not in speed:
                row += ["not run", "", ""]
                continue
            row += [Stats(speed[(name, tile)]).show("{:.0f}"), Stats(share[(name, tile)]).show("{:.0%}"),
                    Stats(first[(name, tile)]).show("{:.1f}")]
        rows.append(row)
    header = ["variant"]
    for tile in tiles:
        header += [f"GFLOP/s, tile {tile}", "of ceiling", "first call s"]
    section.table(header, rows)
    for tile in tiles:
        if (DEFAULT, tile) in speed:
            s = Stats(share[(DEFAULT, tile)])
            section.targets.append(Target(f"default CPU path, tile {tile}: share of the sgemm ceiling",
                                          f"{Stats(speed[(DEFAULT, tile)]).median:.0f} GFLOP/s = {s.show('{:.0%}')}",
                                          "near the ceiling (>= 85%)", s.median >= 0.85))
    return section
