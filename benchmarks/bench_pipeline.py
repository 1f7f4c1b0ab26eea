"""Is the training data pipeline fast enough to keep the network busy?

Times, on real BBBC039 training images with the paper's 572 px tiles:

1. the data pipeline alone (`PatchDataset` through a DataLoader: window
   reading, mirror padding, targets, weight maps already cached, batched
   elastic deformation + rotations/flips + grey values), in patches/s, for 0
   (main process), 1 and 2 worker processes;
2. the network's training step alone (forward, weighted cross-entropy,
   backward, Adam) on the same batch, in patches/s;
3. both together as `biounet train` runs them (workers prepare the next
   batches while the main process trains), reporting the share of the
   iteration the main process spends waiting for data.

The pipeline must not be the bottleneck: its rate with workers should exceed
the step's, and the waiting share in (3) should be small.

    .venv/bin/python -m benchmarks.bench_pipeline [--width 16] [--batch 4] [--steps 6]

Timings drift between runs on a shared machine; compare numbers from one run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from biounet.model.unet import UNet
from biounet.runtime.devices import cpu_threads
from biounet.train.data import PatchDataset, TargetSpec, load_sources, make_loader
from biounet.train.loss import Loss

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TILE, OUT = 572, 388
PERCENTILE = {"method": "percentile", "low": 1.0, "high": 99.8}


def training_dataset(data: Path, images: int, batch: int, tile: int = TILE) -> PatchDataset:
    """Patches from the first `images` BBBC039 training pairs, as `biounet train` makes them."""
    folder = data / "bbbc039" / "train"
    with tempfile.TemporaryDirectory() as tmp:  # the first N pairs, linked
        subset = Path(tmp)
        for sub in ("images", "labels"):
            (subset / sub).mkdir()
            for path in sorted((folder / sub).glob("*.tif"))[:images]:
                (subset / sub / path.name).symlink_to(path)
        sources = load_sources(subset / "images", subset / "labels", TargetSpec("binary"), PERCENTILE)
    out = tile - (TILE - OUT)
    return PatchDataset(sources, tile, out, batch, seed=0)


def pipeline_rate(dataset: PatchDataset, workers: int, batches: int) -> float:
    """Patches per second pulled from a warmed-up DataLoader."""
    it = iter(make_loader(dataset, workers))
    for _ in range(max(1, workers)):  # start the workers, fill their queues
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    seconds = time.perf_counter() - start
    del it
    return batches * dataset.batch_size / seconds


def step_times(net: UNet, batch: tuple, steps: int) -> list[float]:
    """Seconds per training step on one fixed batch."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    loss_fn = Loss("binary")
    x, target, weight, mask = batch
    x = x.contiguous(memory_format=torch.channels_last)
    out = []
    for i in range(steps + 1):
        start = time.perf_counter()
        loss = loss_fn(net(x), target, weight, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i:  # the first step sets up kernels
            out.append(time.perf_counter() - start)
    return out


def overlapped(net: UNet, dataset: PatchDataset, workers: int, steps: int) -> tuple[float, float]:
    """(seconds per iteration, share spent waiting for data) of a real loop."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    loss_fn = Loss("binary")
    it = iter(make_loader(dataset, workers))
    x, target, weight, mask = next(it)
    waited = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        loss = loss_fn(net(x.contiguous(memory_format=torch.channels_last)), target, weight, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        t = time.perf_counter()
        x, target, weight, mask = next(it)
        waited += time.perf_counter() - t
    total = time.perf_counter() - start
    del it
    return total / steps, waited / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--images", type=int, default=8, help="BBBC039 training images to sample from")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batches", type=int, default=12, help="batches timed per pipeline measurement")
    args = parser.parse_args()

    dataset = training_dataset(args.data, args.images, args.batch)
    sources = dataset.sources
    threads = cpu_threads()
    torch.set_num_threads(threads)
    print(f"{len(sources)} BBBC039 images, tile {TILE} -> {OUT}, batch {args.batch}, "
          f"{threads} cores, torch {torch.__version__}")

    rates = {w: pipeline_rate(dataset, w, args.batches) for w in (0, 1, 2)}
    net = UNet(width=args.width).to(memory_format=torch.channels_last).train()
    times = step_times(net, dataset.batch(0), args.steps)
    step = statistics.median(times)
    net_rate = args.batch / step
    print("\nData pipeline alone (patches/s)")
    for w, rate in rates.items():
        where = "main process" if w == 0 else f"{w} worker process{'es' if w > 1 else ''}, 1 thread each"
        print(f"  {where:<40} {rate:7.1f} patches/s  ({1000 / rate:6.1f} ms/patch)")
    print(f"\nTraining step alone, width {args.width}, depth 5 ({threads} threads, channels_last)")
    print(f"  median {step:.2f} s per batch of {args.batch} (min {min(times):.2f}, max {max(times):.2f})"
          f" = {net_rate:.2f} patches/s")
    print("\nRatio pipeline / network (> 1: the network is the bottleneck)")
    for w, rate in rates.items():
        print(f"  {w} worker(s): {rate / net_rate:6.1f}x")

    per_iter, wait = overlapped(net, dataset, 1, args.steps)
    print(f"\nTogether (1 worker, as `biounet train --workers 1`): {per_iter:.2f} s per iteration "
          f"vs {step:.2f} s step alone; waiting for data {100 * wait:.1f}% of the time")


if __name__ == "__main__":
    main()
