"""The membranes model on one ISBI 2012 slice: the picture in MODEL_CARD.md.

    python docs/figures/membranes.py [--model membranes] [--slice 16] [--tta none] [-o docs/membranes-slice16.png]

Panels: the EM slice; the membrane probability (1 - P(interior)); the segments
`biounet segment` makes of it (connected cell interiors, random colours, drawn
over the slice); the annotated segments; and where prediction and annotation
disagree about membrane. Numbers in the titles are this slice's challenge scores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "isbi2012" / "train"


def colours(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """RGBA image of instance labels: a random colour per label, 0 transparent."""
    rng = np.random.default_rng(seed)
    lut = np.concatenate([[[0, 0, 0, 0]], np.c_[rng.uniform(0.15, 1, (labels.max(), 3)), np.full(labels.max(), 0.55)]])
    return lut[labels]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="membranes")
    parser.add_argument("--slice", type=int, default=16)
    parser.add_argument("--tta", default="none")
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "docs" / "membranes-slice16.png")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tifffile
    from scipy import ndimage

    from biounet.evaluate.membranes import membrane_curves, membrane_summary
    from biounet.evaluate.run import load_prepared, prediction
    from biounet.model.names import resolve_model
    from biounet.predict.array import predict_array

    name = f"slice{args.slice:02d}.tif"
    image = tifffile.imread(DATA / "images" / name)
    interior = tifffile.imread(DATA / "labels" / name) != 0
    net, spec = load_prepared(resolve_model(args.model), "cpu", tta=args.tta)
    output = predict_array(net, spec, image)
    segments, p_interior = prediction(output, spec)
    truth, _ = ndimage.label(interior, structure=[[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    scores = membrane_summary([membrane_curves(interior, p_interior)])
    threshold = (spec.postprocess or {}).get("params", {}).get("threshold", 0.5)  # what the segments used
    errors = np.zeros(image.shape + (3,))
    errors[(p_interior > threshold) & ~interior] = (1, 0.2, 0.2)  # interior on a membrane: may merge cells
    errors[(p_interior <= threshold) & interior] = (0.2, 0.6, 1)  # membrane inside a cell: may split it

    fig, axes = plt.subplots(1, 5, figsize=(25, 5.6))
    panels = [
        (image, "gray", f"ISBI 2012 {name} (held out from training)"),
        (1 - p_interior, "magma", f"membrane probability (pixel error {scores.pixel_error:.3f})"),
        (None, None, f"segments: {segments.max()} (Rand error {scores.rand_error:.3f})"),
        (None, None, f"annotated segments: {truth.max()}"),
        (errors, None, f"disagreement at {threshold:.2f}: red interior on membrane,\nblue membrane inside a cell"),
    ]
    for ax, (data, cmap, title) in zip(axes, panels):
        if data is None:
            ax.imshow(image, cmap="gray")
            ax.imshow(colours(segments if "annotated" not in title else truth))
        else:
            ax.imshow(data, cmap=cmap, vmin=0 if cmap == "magma" else None, vmax=1 if cmap == "magma" else None)
        ax.set_title(title, fontsize=11)
        ax.axis("off")
    model = Path(str(resolve_model(args.model))).name
    fig.suptitle(f"biounet --model {args.model} ({model}), --tta {args.tta}. Scores of this slice (best threshold "
                 f"{scores.rand_threshold:.2f}); segments as `biounet segment` makes them (threshold {threshold:.2f})",
                 fontsize=12)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}: pixel error {scores.pixel_error:.4f}, Rand error {scores.rand_error:.4f}, "
          f"V_Rand {scores.v_rand:.4f}, V_Info {scores.v_info:.4f}")


if __name__ == "__main__":
    main()
