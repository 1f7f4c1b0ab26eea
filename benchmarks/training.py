"""7. Training side: elastic deformation, weight map and data pipeline against their references.

- Elastic deformation of a 572 px image + label + weight triple (the paper's
  3 x 3 grid, 10 px std): `biounet.train.augment` on one thread, as each
  DataLoader worker runs it, against `elasticdeform.deform_random_grid`.
- The weight map of a whole BBBC039 image (eq. 2): `weight_map` against
  `weight_map_reference` (one full-image distance transform per nucleus).
- The data pipeline (1 DataLoader worker) against the network's training step
  (width 16, batch 4, 572 px), both in patches/s.
Variants interleaved in every repeat; ratios per repeat.
"""

from __future__ import annotations

import torch

from benchmarks.bench_augment_weights import DATA, bench_deformation, bench_weights, load_pair, to_tile
from benchmarks.bench_pipeline import pipeline_rate, step_times, training_dataset
from benchmarks.common import Context, Section, Stats, Target, ratio_stats
from biounet.model.unet import UNet
from biounet.train.weights import weight_map

THEIRS = "elasticdeform image(cubic)+label+weight"
OURS_1 = "biounet bilinear+label+weight (1 thread)"


def measure(ctx: Context) -> Section:
    section = Section("Training side", "python -m benchmarks --only training")
    image, labels = load_pair(DATA, 9)
    if ctx.smoke:
        image, labels = image[:200, :200], labels[:200, :200]
    weights = weight_map(labels)
    batch = 2 if ctx.smoke else 8
    d = bench_deformation(to_tile(image), to_tile(labels), to_tile(weights), ctx.repeats, batch)
    deform = ratio_stats(d[THEIRS], d[OURS_1])
    w = bench_weights(labels, ctx.repeats)
    fast, ref = w["weight_map (boxes grown by the cutoff)"], w["weight_map_reference (full EDT per cell)"]
    wratio = ratio_stats(ref, fast)

    tile = ctx.sizes["train_tile"]
    dataset = training_dataset(DATA, 2 if ctx.smoke else 8, 4, tile)
    net = UNet(width=16).to(memory_format=torch.channels_last).train()
    data_rate, net_rate = [], []
    for _ in range(ctx.repeats):
        data_rate.append(pipeline_rate(dataset, 1, 2 if ctx.smoke else 8))
        net_rate.append(dataset.batch_size / Stats(step_times(net, dataset.batch(0), 2)).median)
    pipe = ratio_stats(data_rate, net_rate)

    section.lines.append(f"Deformation: per {to_tile(image).shape[0]} px triple, batch {batch}; weight map: "
                         f"{labels.shape[0]} x {labels.shape[1]} image with {len(set(labels.ravel())) - 1} nuclei; "
                         f"pipeline: tile {tile}, batch 4, 1 worker vs width-16 step on "
                         f"{torch.get_num_threads()} threads.")
    section.lines.append("")
    section.table(["", "ours", "reference", "ratio"], [
        ["elastic deformation, ms per triple", Stats(d[OURS_1]).show(scale=1e3),
         Stats(d[THEIRS]).show(scale=1e3), deform.show("{:.1f}")],
        ["weight map, ms per image", Stats(fast).show(scale=1e3), Stats(ref).show(scale=1e3),
         wratio.show("{:.1f}")],
        ["data pipeline vs training step, patches/s", Stats(data_rate).show(), Stats(net_rate).show(),
         pipe.show("{:.1f}")],
    ])
    section.targets += [
        Target("elastic deformation vs elasticdeform (1 thread)", deform.show("{:.1f}"), ">= 10x",
               deform.median >= 10),
        Target("weight map vs per-instance reference", wratio.show("{:.1f}"), ">= 20x", wratio.median >= 20),
        Target("data pipeline (1 worker) vs network step", pipe.show("{:.1f}"), "> 1x (network-bound)",
               pipe.median > 1),
    ]
    return section
