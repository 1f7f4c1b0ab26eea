"""Write a null-network model file: the U-Net's tile geometry at almost no cost.

    python -m benchmarks.null_model OUT.pt [--threshold 0.25]

The model thresholds the percentile-normalised input (`biounet.model.null`), so
`segment` finds real nuclei on real slides while the network costs almost
nothing: what `segment` then measures is the pipeline around the network.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from biounet.model.file import save_model
from biounet.model.null import NullUNet, null_config
from biounet.model.spec import ModelSpec

PERCENTILE = {"method": "percentile", "low": 1.0, "high": 99.8}


def null_model(path: Path, threshold: float = 0.25) -> Path:
    """Save a null-network model (binary target, connected components) to `path`."""
    net = NullUNet(null_config(threshold))
    save_model(path, net, ModelSpec(unet=net.config, normalization=dict(PERCENTILE)))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--threshold", type=float, default=0.25, help="foreground above this normalised intensity")
    args = p.parse_args(argv)
    print(f"wrote {null_model(args.out, args.threshold)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
