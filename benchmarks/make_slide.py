"""Write a large tiled (Big)TIFF slide without ever holding it in memory.

The slide is a mosaic of real BBBC039 nucleus images (cycled, with random
flips so neighbouring fields differ), streamed tile by tile to tifffile.

    python benchmarks/make_slide.py slide.tif --size 20000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tifffile

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bbbc039" / "train" / "images"
TILE = 256


def fields(folder: Path, count: int = 16) -> list[np.ndarray]:
    return [tifffile.imread(p) for p in sorted(folder.glob("*.tif"))[:count]]


def field_index(fy: int, fx: int, count: int) -> int:
    """Which source image fills field (fy, fx) of the mosaic."""
    return (fy * 7 + fx * 3) % count


def tiles(size: int, sources: list[np.ndarray]):
    """Yield TILE x TILE tiles in row-major order (what tifffile expects)."""
    fh, fw = sources[0].shape
    for ty in range(0, size, TILE):
        ys = np.arange(ty, min(ty + TILE, size))
        for tx in range(0, size, TILE):
            xs = np.arange(tx, min(tx + TILE, size))
            out = np.zeros((TILE, TILE), np.uint16)
            for fy in np.unique(ys // fh):
                ry = ys[ys // fh == fy]
                for fx in np.unique(xs // fw):
                    rx = xs[xs // fw == fx]
                    src = sources[field_index(fy, fx, len(sources))]
                    out[np.ix_(ry - ty, rx - tx)] = src[np.ix_(ry % fh, rx % fw)]
            yield out


def write_slide(path: Path, size: int, bigtiff: bool = True, pixel_size: float = 0.65) -> Path:
    """A size x size uint16 tiled BigTIFF (OME metadata with the pixel size)."""
    sources = fields(DATA)
    tifffile.imwrite(
        path, tiles(size, sources), shape=(size, size), dtype=np.uint16, tile=(TILE, TILE),
        bigtiff=bigtiff, compression="zlib", ome=True,
        metadata={"axes": "YX", "PhysicalSizeX": pixel_size, "PhysicalSizeY": pixel_size},
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path)
    parser.add_argument("--size", type=int, default=20000)
    args = parser.parse_args()
    write_slide(args.path, args.size)


if __name__ == "__main__":
    main()
