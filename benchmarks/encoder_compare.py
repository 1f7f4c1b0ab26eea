"""Cost of models side by side: parameters, FLOPs per output megapixel, `biounet segment` MP/s.

    python -m benchmarks.encoder_compare MODEL.pt [MODEL.pt ...] [--size 2048] [--repeats 3]

FLOPs are counted for the tile `segment` takes by default (1024 px blocks,
2 GB memory limit) and divided by the output pixels of that tile (the
original U-Net: `biounet.model.flops`; encoder U-Nets: torch's
FlopCounterMode). MP/s is the slide's pixels over the run time `segment`
reports (start-up excluded), on a size x size slide of real BBBC039 fields,
with the process's peak resident memory; the models take turns in each round,
so a busy machine slows them alike.
Printed as a Markdown table with the median (min-max) of the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.common import biounet_cmd, run_child, segment_seconds
from benchmarks.make_slide import write_slide
from biounet.model.file import load_model
from biounet.model.flops import forward_flops
from biounet.model.unet import count_parameters
from biounet.plan.memory import choose_tile

BLOCK = 1024
MEMORY = 2 * 1024**3


def cost(model: Path) -> dict:
    """Parameters, default tile and FLOPs per output megapixel of a model file."""
    net, spec = load_model(model)
    tile = spec.tile or choose_tile(spec.unet, BLOCK, MEMORY)
    out = spec.unet.geometry().output_size(tile)
    return {"parameters": count_parameters(net), "tile": tile, "kept": out,
            "gflop_per_mp": forward_flops(spec.unet, tile) / out**2 * 1e6 / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    costs = {m: cost(m) for m in args.models}
    seconds: dict[Path, list[float]] = {m: [] for m in args.models}
    peak: dict[Path, int] = {m: 0 for m in args.models}
    with tempfile.TemporaryDirectory() as tmp:
        slide = write_slide(Path(tmp) / "slide.tif", args.size)
        for _ in range(args.repeats):
            for m in args.models:
                run = run_child(biounet_cmd("segment", str(slide), "-o", str(Path(tmp) / "out.ome.zarr"),
                                            "--model", str(m), "--overwrite", "--device", "cpu", "--no-progress"))
                seconds[m].append(segment_seconds(run.stdout))
                peak[m] = max(peak[m], run.peak_rss)
    mp = args.size**2 / 1e6
    print(f"| model | parameters | tile in / kept | GFLOP per output MP | segment MP/s ({args.size}^2, median "
          f"(min-max) of {args.repeats}) | peak RSS |")
    print("|---|---|---|---|---|---|")
    for m in args.models:
        c, rates = costs[m], sorted(mp / s for s in seconds[m])
        print(f"| {m.stem} | {c['parameters'] / 1e6:.2f} M | {c['tile']} / {c['kept']} | {c['gflop_per_mp']:.0f} | "
              f"{statistics.median(rates):.3f} ({rates[0]:.3f}-{rates[-1]:.3f}) | {peak[m] / 2**30:.1f} GiB |")


if __name__ == "__main__":
    main()
