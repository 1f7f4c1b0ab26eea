"""`segment` speed of several models side by side: the MP/s column of the model tables in MODEL_CARD.md.

    python -m benchmarks.models MODEL [MODEL ...] [--size 4096] [--repeats 3] [--workdir /tmp/biounet-models] [--he]

Each repeat segments the same mosaic slide (`benchmarks/make_slide.py`) once
with every model, in the order given, after one untimed warm-up per model, so
that a drift of the shared machine hits all models alike. Reported per model:
the median wall time of `segment` (min-max), MP/s, the ratio of its time to
the first model's (per repeat, then the median) and the objects it found.
With `--he` the slide is an H&E SVS of real MoNuSeg tissue covering it whole
(`benchmarks/he_slide.py`), for RGB models such as `he-nuclei`.
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
    parser.add_argument("--he", action="store_true", help="an H&E slide (RGB models) instead of BBBC039 fields")
    args = parser.parse_args()

    from biounet.pipeline.segment import segment
    from biounet.runtime.process import tune_malloc

    tune_malloc()
    args.workdir.mkdir(parents=True, exist_ok=True)
    context = Context(args.workdir, args.repeats, smoke=False, sizes={"warm_up": 1024})
    if args.he:
        slide, small = he_slide(args.workdir, args.size), he_slide(args.workdir, 1024)
    else:
        slide, small = context.slide(args.size), context.slide(context.sizes["warm_up"])
    for model in args.models:  # one untimed run each, so the timed ones find the kernels set up
        segment(small, context.output("warm-up.ome.zarr"), model=model, progress=False)
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


def he_slide(workdir: Path, size: int) -> Path:
    """A size x size H&E SVS, all tissue, made once."""
    from benchmarks.he_slide import HESlide, write_svs

    path = workdir / f"he-{size}.svs"
    if not path.exists():
        tmp = path.with_suffix(".part.svs")
        write_svs(tmp, HESlide(size, size, tissue=1.0))
        tmp.rename(path)
    return path


if __name__ == "__main__":
    main()
