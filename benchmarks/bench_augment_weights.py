"""Time biounet's elastic deformation and weight map against the usual alternatives.

1. Elastic deformation of a 572 x 572 image + label (+ weight) pair, the
   paper's setting (3 x 3 control points, 10 px std): ``biounet.train.augment``
   (one batch of ``--batch`` pairs, reported per pair) against
   ``elasticdeform.deform_random_grid`` (one call per pair, bicubic spline
   image, nearest labels, linear weights).
2. The U-Net weight map of a full BBBC039 image: ``weight_map`` (per-instance
   distance transforms in cutoff-grown boxes) against
   ``weight_map_reference`` (one full-image transform per instance).

Variants run interleaved in every repeat, so machine load drifts hit all of
them alike; the script prints median and min-max per variant and the ratios
of the medians.

    .venv/bin/python -m benchmarks.bench_augment_weights [--repeats 7] [--batch 8]

Needs ``elasticdeform`` (``pip install --no-binary elasticdeform elasticdeform``).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Callable

import numpy as np
import tifffile
import torch

from benchmarks.common import timed
from biounet.train.augment import apply_warp, random_intensity, random_warp_grid
from biounet.train.weights import weight_map, weight_map_reference

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SIZE = 572


def load_pair(data: Path, index: int) -> tuple[np.ndarray, np.ndarray]:
    folder = data / "bbbc039" / "train"
    name = sorted((folder / "labels").glob("*.tif"))[index].name
    image = tifffile.imread(folder / "images" / name).astype(np.float32)
    labels = tifffile.imread(folder / "labels" / name)
    return image, labels


def to_tile(a: np.ndarray) -> np.ndarray:
    """Mirror-pad / crop a 520 x 696 BBBC039 array to SIZE x SIZE."""
    pad = [(0, max(0, SIZE - n)) for n in a.shape]
    return np.pad(a, pad, mode="reflect")[:SIZE, :SIZE]


def report(title: str, times: dict[str, list[float]], unit: float, label: str) -> dict:
    print(f"\n{title}")
    medians = {k: statistics.median(v) * unit for k, v in times.items()}
    for key, values in times.items():
        lo, hi = min(values) * unit, max(values) * unit
        print(f"  {key:<44} median {medians[key]:9.2f} {label}  (min {lo:.2f}, max {hi:.2f})")
    return medians


def bench_deformation(image, labels, weights, repeats: int, batch: int) -> dict[str, list[float]]:
    """Seconds per pair of each variant, per repeat (variants interleaved)."""
    import elasticdeform

    lo, hi = np.percentile(image, [1, 99.8])
    image = np.clip((image - lo) / (hi - lo), 0, 1).astype(np.float32)
    img_t = torch.from_numpy(image)[None, None].repeat(batch, 1, 1, 1)
    lab_t = torch.from_numpy(labels.astype(np.int32))[None].repeat(batch, 1, 1)
    wgt_t = torch.from_numpy(weights)[None].repeat(batch, 1, 1)
    gen = torch.Generator().manual_seed(0)
    np.random.seed(0)

    def ours(with_weights: bool, mode: str, threads: int) -> Callable[[], object]:
        def run():
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                grid = random_warp_grid(
                    batch, SIZE, SIZE, gen, sigma=10.0, points=3,
                    max_rotation_deg=15.0, flips=True, rot90=True,
                )
                apply_warp(img_t, lab_t, wgt_t if with_weights else None, grid, image_mode=mode)
            finally:
                torch.set_num_threads(previous)
        return run

    def theirs(with_weights: bool) -> Callable[[], object]:
        arrays = [image, labels.astype(np.int32)] + ([weights] if with_weights else [])
        order = [3, 0] + ([1] if with_weights else [])

        def run():
            for _ in range(batch):
                elasticdeform.deform_random_grid(arrays, sigma=10, points=3, order=order)
        return run

    threads = torch.get_num_threads()
    variants = {
        "elasticdeform image(cubic)+label": theirs(False),
        "elasticdeform image(cubic)+label+weight": theirs(True),
        f"biounet bilinear+label ({threads} thr)": ours(False, "bilinear", threads),
        f"biounet bicubic+label ({threads} thr)": ours(False, "bicubic", threads),
        f"biounet bilinear+label+weight ({threads} thr)": ours(True, "bilinear", threads),
        f"biounet bicubic+label+weight ({threads} thr)": ours(True, "bicubic", threads),
        "biounet bilinear+label+weight (1 thread)": ours(True, "bilinear", 1),
        "biounet grey values only (not in the ratios)": lambda: random_intensity(img_t, gen),
    }
    for fn in variants.values():  # warm-up
        fn()
    times = {k: [] for k in variants}
    for _ in range(repeats):
        for key, fn in variants.items():
            times[key].append(timed(fn) / batch)
    return times


def bench_weights(labels: np.ndarray, repeats: int) -> dict[str, list[float]]:
    """Seconds of the weight map and of the per-instance reference, per repeat."""
    variants = {
        "weight_map (boxes grown by the cutoff)": lambda: weight_map(labels),
        "weight_map_reference (full EDT per cell)": lambda: weight_map_reference(labels),
    }
    times = {k: [] for k in variants}
    for _ in range(repeats):
        for key, fn in variants.items():
            times[key].append(timed(fn))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image", type=int, default=9, help="BBBC039 train image index")
    args = parser.parse_args()

    image, labels = load_pair(args.data, args.image)
    weights = weight_map(labels)
    d = report(f"Elastic deformation, {SIZE} x {SIZE} pair, per pair (batch {args.batch}, {args.repeats} repeats, "
               f"torch {torch.__version__}, {torch.get_num_threads()} threads)",
               bench_deformation(to_tile(image), to_tile(labels), to_tile(weights), args.repeats, args.batch),
               1e3, "ms")
    fast, ref = weight_map(labels), weight_map_reference(labels)
    print(f"\nweight map agreement: max |fast - reference| = {np.abs(fast - ref).max():.2e}")
    w = report(f"Weight map, full BBBC039 image {labels.shape[0]} x {labels.shape[1]}, "
               f"{len(np.unique(labels)) - 1} nuclei", bench_weights(labels, max(3, args.repeats // 2)), 1e3, "ms")

    keys = list(d)
    print("\nRatios of medians (higher = biounet faster)")
    for ours_key in keys[2:7]:
        base = keys[1] if "weight" in ours_key else keys[0]
        print(f"  {base} / {ours_key}: {d[base] / d[ours_key]:.1f}x")
    slow, fast = list(w)[1], list(w)[0]
    print(f"  {slow} / {fast}: {w[slow] / w[fast]:.1f}x")


if __name__ == "__main__":
    main()
