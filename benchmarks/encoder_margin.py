"""How much context an encoder U-Net's tiles need: tiled prediction against one whole-image pass.

    python -m benchmarks.encoder_margin MODEL.pt [MODEL.pt ...] --images DIR [--count 5] [--skip 10]
        [--margins 32 48 ... 128] [--kept 128] [--until-identical]

For each margin M (default 32, 48, ..., 128 px per tile side) the model's
context is set to M and each image is predicted twice through biounet's tiled
engine (`predict_array`): with small tiles (KEPT + 2M px in, KEPT = 128 px
kept, blocks of 2 x 2 tiles: many seams) and as one tile covering the whole
mirror-padded image (the reference). Printed as a Markdown table: the largest |difference| of
probabilities, and the pixels whose class differs, over all images. The
default context is the smallest M whose class maps are identical everywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import tifffile
import torch

from biounet.model.file import load_model
from biounet.predict.array import predict_array
from biounet.predict.device import prepare
from biounet.predict.normalize import folder_stats

MARGINS = tuple(range(32, 129, 16))
KEPT = 128  # output pixels of a small tile


def with_context(spec, margin: int):
    """`spec` with the network's context margin set to `margin`."""
    return dataclasses.replace(spec, unet=dataclasses.replace(spec.unet, context=margin))


def compare(net, spec, images: list[np.ndarray], margin: int, kept: int = KEPT) -> dict:
    """Tiled (`kept` px kept per tile, blocks of 2 x 2 tiles) against whole-image prediction of
    `images` with context `margin`."""
    spec = with_context(spec, margin)
    stats = folder_stats((im.reshape(1, -1) for im in images), spec.normalization)
    worst, differ, pixels = 0.0, 0, 0
    for image in images:
        whole = predict_array(net, spec, image, block=1024, stats=stats)  # one tile covers the image
        tiled = predict_array(net, spec, image, tile=kept + 2 * margin, block=2 * kept, batch=4, stats=stats)
        worst = max(worst, float(np.abs(whole - tiled).max()))
        differ += int((whole.argmax(0) != tiled.argmax(0)).sum())
        pixels += whole.shape[-2] * whole.shape[-1]
    return {"margin": margin, "max_diff": worst, "differ": differ, "pixels": pixels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--skip", type=int, default=10, help="images to skip (sorted by name), e.g. those "
                        "used for model selection")
    parser.add_argument("--margins", type=int, nargs="+", default=list(MARGINS))
    parser.add_argument("--kept", type=int, default=KEPT, help="output pixels kept per tile")
    parser.add_argument("--until-identical", action="store_true", help="stop at the first margin whose class "
                        "maps are identical")
    args = parser.parse_args()
    paths = sorted(args.images.glob("*.tif"))[args.skip : args.skip + args.count]
    images = [tifffile.imread(p).astype(np.float32) for p in paths]
    print(f"images: {', '.join(p.name[:16] for p in paths)}")
    print("| model | margin (px per side) | tile (in / kept) | max abs diff of probabilities | pixels whose "
          "class differs | class-map agreement |")
    print("|---|---|---|---|---|---|")
    for model in args.models:
        net, spec = load_model(model)
        net = prepare(net, torch.device("cpu"))
        for margin in args.margins:
            row = compare(net, spec, images, margin, args.kept)
            agree = 1 - row["differ"] / row["pixels"]
            print(f"| {model.stem} ({spec.unet.encoder}) | {margin} | {args.kept + 2 * margin} / {args.kept} | "
                  f"{row['max_diff']:.2e} | {row['differ']} of {row['pixels']} | {agree:.6%} |", flush=True)
            if args.until_identical and row["differ"] == 0:
                break


if __name__ == "__main__":
    main()
