"""Tiny annotated nuclei (under 30 px) and what a nuclei model does with them: the table and picture in MODEL_CARD.md.

    python docs/figures/small_objects.py [--model nuclei] [-o docs/nuclei-small-objects.png]

On VAL40 (the first 40 bbbc039/val images by name, where nuclei models are
chosen; GUARD10 stays unseen), it asks where the tiny objects are lost: does
the network mark them at all (P(foreground) > 0.5 on any of their pixels),
would its post-processing keep them with the smallest size filter of the
tuning grid (matched at IoU > 0.5 with min_size 10), and how many of the tiny
objects that post-processing makes are annotated at all. The picture shows
tiny annotated objects (red outline) and the objects predicted with min_size
10 (green outlines).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
VAL = ROOT.parent / "shared" / "data" / "bbbc039" / "val"
TINY = 30  # px: the objects MODEL_CARD.md calls tiny
SMALLEST = 10  # px: the smallest min_size of the tuning grid (below it, single-pixel fragments by the 100 000)


def matched_true(truth: np.ndarray, pred: np.ndarray) -> tuple[set[int], set[int]]:
    """(annotated ids, predicted ids) matched one to one at IoU > 0.5."""
    from biounet.evaluate.metrics import match, overlap

    ov = overlap(truth, pred)
    t, p = match(ov, 0.5)
    return set(ov.true_ids[t].tolist()), set(ov.pred_ids[p].tolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "docs" / "nuclei-small-objects.png")
    args = parser.parse_args()

    from scipy import ndimage as ndi
    from skimage.segmentation import find_boundaries

    from biounet.evaluate.run import load_prepared, model_outputs
    from biounet.label.instances import postprocess
    from biounet.model.names import resolve_model
    from biounet.read.files import read_image, read_labels

    names = sorted(p.name for p in (VAL / "images").iterdir())[:40]
    truth = {n: read_labels(VAL / "labels" / n) for n in names}
    net, spec = load_prepared(resolve_model(args.model), "cpu")
    post = spec.postprocess
    counts = dict(tiny=0, marked=0, kept_tuned=0, kept_smallest=0, pred_tiny=0, pred_tiny_matched=0)
    confident = {True: [0, 0], False: [0, 0]}  # annotated or not: [small objects, of which mean P(fg) > 0.9]
    crops = []
    for name, output in model_outputs(net, spec, {n: VAL / "images" / n for n in names},
                                      {n: lab.shape for n, lab in truth.items()}):
        lab = truth[name]
        ids, area = np.unique(lab[lab > 0], return_counts=True)
        tiny = set(ids[area < TINY].tolist())
        tuned = postprocess(post["name"], output, **post["params"])
        smallest = postprocess(post["name"], output, **{**post["params"], "min_size": SMALLEST})
        kept_tuned, _ = matched_true(lab, tuned)
        kept_smallest, pred_matched = matched_true(lab, smallest)
        marked = output[0] < 0.5  # P(foreground) = 1 - P(background) > 0.5
        pids, parea = np.unique(smallest[smallest > 0], return_counts=True)
        pred_tiny = set(pids[parea < TINY].tolist())
        counts["tiny"] += len(tiny)
        counts["marked"] += sum(bool(marked[lab == i].any()) for i in tiny)
        counts["kept_tuned"] += len(tiny & kept_tuned)
        counts["kept_smallest"] += len(tiny & kept_smallest)
        counts["pred_tiny"] += len(pred_tiny)
        counts["pred_tiny_matched"] += len(pred_tiny & pred_matched)
        small = pids[parea < post["params"]["min_size"]]  # what only the smaller size filter keeps
        if len(small):
            for i, p_fg in zip(small, ndi.mean(1.0 - output[0], smallest, small)):
                confident[int(i) in pred_matched][0] += 1
                confident[int(i) in pred_matched][1] += int(p_fg > 0.9)
        image = np.asarray(read_image(VAL / "images" / name), dtype=float).reshape(lab.shape)
        for i in sorted(tiny):
            ys, xs = np.nonzero(lab == i)
            y, x = int(ys.mean()), int(xs.mean())
            y0, x0 = max(0, y - 20), max(0, x - 20)
            window = (slice(y0, y0 + 40), slice(x0, x0 + 40))
            crops.append((image[window], lab[window] == i, find_boundaries(smallest[window], mode="inner"),
                          i in kept_smallest, bool(marked[lab == i].any())))

    print(f"VAL40, model {args.model} (post-processing {post['name']} {post['params']}):")
    print(f"  tiny annotated objects (< {TINY} px): {counts['tiny']}")
    print(f"  marked by the network (P(foreground) > 0.5 on a pixel): {counts['marked']}")
    print(f"  found at IoU > 0.5 with the model's min_size: {counts['kept_tuned']}; with min_size {SMALLEST}: "
          f"{counts['kept_smallest']}")
    print(f"  tiny objects predicted with min_size {SMALLEST}: {counts['pred_tiny']}, of which annotated (IoU > 0.5): "
          f"{counts['pred_tiny_matched']}")
    print(f"  objects of {SMALLEST}-{post['params']['min_size'] - 1} px (kept by min_size {SMALLEST} only): "
          f"{confident[True][0]} annotated, {confident[False][0]} not; with mean P(foreground) > 0.9: "
          f"{confident[True][1]} and {confident[False][1]}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    chosen = rng.choice(len(crops), size=min(24, len(crops)), replace=False)
    fig, axes = plt.subplots(3, 8, figsize=(16, 6.6))
    for ax, k in zip(axes.ravel(), sorted(chosen)):
        image, annotated, predicted, found, marked = crops[k]
        lo, hi = np.percentile(image, (1, 99.8))
        ax.imshow(np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1), cmap="gray")
        ax.contour(annotated, levels=[0.5], colors="red", linewidths=1.2)
        ax.imshow(np.ma.masked_where(~predicted, predicted), cmap="summer", alpha=0.9)
        ax.set_title(f"{int(annotated.sum())} px, {'found' if found else 'marked' if marked else 'not marked'}",
                     fontsize=9)
        ax.axis("off")
    fig.suptitle(f"Tiny annotated nuclei (red) and predicted objects with min_size {SMALLEST} (green), VAL40, model "
                 f"{args.model}: {counts['marked']} of {counts['tiny']} marked by the network, "
                 f"{counts['kept_smallest']} found at IoU > 0.5", fontsize=11)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
