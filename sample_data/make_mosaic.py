"""Build sample_data/mosaic.ome.tif: an 8 x 8 mosaic of the shipped BBBC039 fields
as a tiled, pyramidal OME-TIFF (0.65 um pixels), plus mosaic_labels.tif.

    python sample_data/make_mosaic.py [--rows 8 --cols 8] [--out sample_data/mosaic.ome.tif]
"""

import argparse
from pathlib import Path

from biounet.demo.mosaic import make_mosaic

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--cols", type=int, default=8)
    parser.add_argument("--out", type=Path, default=HERE / "mosaic.ome.tif")
    args = parser.parse_args()
    image, labels = make_mosaic(HERE / "bbbc039", args.out, args.rows, args.cols)
    print(f"wrote {image} and {labels}")
