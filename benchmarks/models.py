"""`segment` speed of several models side by side: the MP/s column of the model tables in MODEL_CARD.md.

    python -m benchmarks.models MODEL [MODEL ...] [--size 4096] [--repeats 3] [--workdir /tmp/biounet-models]

Each repeat segments the same mosaic slide (`benchmarks/make_slide.py`) once
with every model, in the order given, after one untimed warm-up per model, so
that a drift of the shared machine hits all models alike. Reported per model:
the median wall time of `segment` (min-max), MP/s, the ratio of its time to
the first model's (per repeat, then the median) and the objects it found.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.common import MP, Context, Stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="model names or files; the first is the reference of the ratios")
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "biounet-models")
    args = parser.parse_args()

    from biounet.pipeline.segment import segment
    from biounet.runtime.process import tune_malloc

    tune_malloc()
    args.workdir.mkdir(parents=True, exist_ok=True)
    context = Context(args.workdir, args.repeats, smoke=False, sizes={"warm_up": 1024})
    slide = context.slide(args.size)
    for model in args.models:
        context.model = model
        context.warm_up()
    seconds: dict[str, list[float]] = {m: [] for m in args.models}
    objects: dict[str, int] = {}
    for repeat in range(args.repeats):
        for i, model in enumerate(args.models):
            result = segment(slide, context.output(f"model-{i}.ome.zarr"), model=model, progress=False)
            seconds[model].append(result.seconds)
            objects[model] = result.extra.get("objects", -1)
            print(f"repeat {repeat + 1}/{args.repeats}: {model}: {result.seconds:.1f} s", flush=True)
    pixels = args.size**2
    first = seconds[args.models[0]]
    print(f"\n`segment` of a {args.size}² slide ({pixels / MP:.1f} MP), {args.repeats} repeats, interleaved:\n")
    print("| model | s | MP/s | x time of the first | objects |\n|---|---|---|---|---|")
    for model, values in seconds.items():
        ratio = statistics.median(v / f for v, f in zip(values, first))
        print(f"| {model} | {Stats(values).show('{:.1f}')} | {pixels / MP / statistics.median(values):.2f} | "
              f"{ratio:.2f} | {objects[model]} |")


if __name__ == "__main__":
    main()
