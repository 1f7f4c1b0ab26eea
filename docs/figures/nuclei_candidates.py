"""Training curves of the nuclei candidates side by side: the picture in MODEL_CARD.md.

    python docs/figures/nuclei_candidates.py runs/nuclei-3class-w16.log.csv runs/nuclei-binary-w16.log.csv ... \
        [-o docs/nuclei-candidates-curves.png] [--val-name VAL10]

Left: the training loss (a moving mean over 200 iterations; the targets' losses
differ in kind, so compare shapes, not levels). Right: validation average F1 on
the runs' validation set (`--val-name`, VAL10 by default; the untuned
post-processing each run validates with), against the iteration counted from
the run's own start.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def read_log(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(iterations, losses, validated iterations, their average F1) of a `biounet train` log."""
    rows = list(csv.DictReader(path.open()))
    it = np.array([int(r["iteration"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    val = [(int(r["iteration"]), float(r["val_average_f1"])) for r in rows if r.get("val_average_f1")]
    vi, vf = (np.array(v) for v in zip(*val)) if val else (np.array([]), np.array([]))
    return it, loss, vi, vf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", type=Path)
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "docs" / "nuclei-candidates-curves.png")
    parser.add_argument("--val-name", default="VAL10", help="the validation set's name, for the axis")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6))
    for path in args.logs:
        name = path.name.removesuffix(".log.csv")
        it, loss, vi, vf = read_log(path)
        window = min(200, len(loss))
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        left.plot(it[window - 1:], smooth, label=name, lw=1.2)
        right.plot(vi, vf, marker="o", ms=3, label=name)
    left.set(xlabel="iteration", ylabel="training loss (moving mean)", yscale="log", title="training loss")
    right.set(xlabel="iteration", ylabel=f"average F1 on {args.val_name} (untuned post-processing)",
              title="validation during training")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
