"""What an H&E nuclei model gets wrong, as a picture: the MODEL_CARD's he-nuclei figure.

    python docs/figures/he_errors.py [--model he-nuclei] [--tile TCGA-...] [-o docs/he-nuclei-errors.png]

On the MoNuSeg tiles of MONU-SEL8 (`workflows/models.sh splits`: 8 of the 30 training tiles,
which chose the checkpoint and post-processing by cross-fitting and trained nothing), each
tile's objects matched one to one at IoU > 0.5: annotated nuclei not found (missed, red),
predicted objects matching no annotation (extra, yellow), and predicted objects that cover
two or more annotated nuclei by more than half of each (merges, magenta); found nuclei are
outlined green. Prints per-tile F1@0.5, AJI and the counts; the picture shows a 400 x 400 px
crop of the tile (default: the one with the lowest AJI) beside the image.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SEL = ROOT / "runs" / "data" / "MONU-SEL8"
CROP = 400


def errors(truth: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """Masks of the found, missed, extra and merging objects of `pred` against `truth`."""
    from biounet.evaluate.metrics import match, overlap

    ov = overlap(truth, pred)
    t, p = match(ov, 0.5)
    found_true, found_pred = set(ov.true_ids[t].tolist()), set(ov.pred_ids[p].tolist())
    true_ids = np.unique(truth[truth > 0])
    pred_ids = np.unique(pred[pred > 0])
    merging = []
    for j in pred_ids:  # a predicted object covering most of two or more annotated nuclei
        under, counts = np.unique(truth[pred == j], return_counts=True)
        sizes = {i: int((truth == i).sum()) for i in under if i > 0}
        if sum(counts[k] > 0.5 * sizes[i] for k, i in enumerate(under) if i > 0) >= 2:
            merging.append(j)
    return {"found": np.isin(pred, sorted(found_pred)),
            "missed": np.isin(truth, [i for i in true_ids if i not in found_true]),
            "extra": np.isin(pred, [j for j in pred_ids if j not in found_pred and j not in merging]),
            "merged": np.isin(pred, merging)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="he-nuclei")
    parser.add_argument("--tile", help="the tile to show (default: the lowest AJI)")
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "docs" / "he-nuclei-errors.png")
    args = parser.parse_args()

    from skimage.segmentation import find_boundaries

    from biounet.evaluate.metrics import instance_scores
    from biounet.evaluate.run import load_prepared, model_outputs
    from biounet.label.instances import postprocess
    from biounet.model.names import resolve_model
    from biounet.read.files import read_image, read_labels

    names = sorted(p.name for p in (SEL / "images").iterdir())
    truth = {n: read_labels(SEL / "labels" / n) for n in names}
    net, spec = load_prepared(resolve_model(args.model), "cpu")
    post = spec.postprocess
    preds, scores = {}, {}
    for name, output in model_outputs(net, spec, {n: SEL / "images" / n for n in names},
                                      {n: lab.shape for n, lab in truth.items()}):
        preds[name] = postprocess(post["name"], output, **post["params"])
        s = instance_scores(truth[name], preds[name])
        marks = errors(truth[name], preds[name])
        counts = {k: len(np.unique((truth[name] if k == "missed" else preds[name])[v])) for k, v in marks.items()}
        scores[name] = (s.f1[0], s.aji, counts)
        print(f"{name}: F1@0.5 {s.f1[0]:.3f} AJI {s.aji:.3f} PQ {s.pq:.3f} annotated {s.n_true} predicted "
              f"{s.n_pred}; missed {counts['missed']}, extra {counts['extra']}, merging {counts['merged']}")
    name = args.tile or min(scores, key=lambda n: scores[n][1])
    image = np.moveaxis(read_image(SEL / "images" / name), 0, -1)  # (C, H, W) -> (H, W, C)
    lab, pred = truth[name], preds[name]
    marks = errors(lab, pred)
    # the crop with the most errors
    bad = (marks["missed"] | marks["extra"] | marks["merged"]).astype(float)
    from scipy import ndimage as ndi

    density = ndi.uniform_filter(bad, CROP, mode="constant")
    half = CROP // 2
    inner = density[half:lab.shape[0] - half, half:lab.shape[1] - half]
    cy, cx = np.unravel_index(np.argmax(inner), inner.shape)
    window = (slice(cy, cy + CROP), slice(cx, cx + CROP))
    rgb = image[window][..., :3].astype(float) / 255
    overlay = rgb.copy()
    for key, colour, filled in (("missed", (1, 0, 0), True), ("extra", (1, 0.85, 0), True),
                                ("merged", (1, 0, 1), True), ("found", (0, 0.8, 0), False)):
        source = lab if key == "missed" else pred
        region = marks[key][window]
        edge = find_boundaries(np.where(region, source[window], 0), mode="inner")
        if filled:
            overlay[region] = 0.6 * overlay[region] + 0.4 * np.array(colour)
        overlay[edge] = colour

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f1, score, counts = scores[name]
    fig, axes = plt.subplots(1, 2, figsize=(12, 6.4))
    axes[0].imshow(rgb)
    axes[1].imshow(overlay)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"{args.model} on {name.split('.')[0]} (MONU-SEL8), {CROP} x {CROP} px of 1000: F1@0.5 {f1:.2f}, "
                 f"AJI {score:.2f} over the tile; found (green), missed (red), extra (yellow), merging two or more "
                 f"(magenta): {counts['missed']} missed, {counts['extra']} extra, {counts['merged']} merging",
                 fontsize=10, wrap=True)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
