"""A classical nuclei baseline to score models against: Gaussian smoothing, Otsu
threshold, and a watershed on the distance transform seeded by its maxima.

    python -m biounet.evaluate.baseline IMAGES_DIR OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import gaussian, threshold_otsu
from skimage.segmentation import watershed

from biounet.label.instances import remove_small


def classical_nuclei(image: np.ndarray, sigma: float = 2.0, min_distance: int = 5, min_size: int = 10) -> np.ndarray:
    """Instance labels (int32) of bright nuclei on a dark background."""
    smooth = gaussian(image.astype(np.float32), sigma=sigma, preserve_range=True)
    mask = remove_small(ndi.label(smooth > threshold_otsu(smooth))[0], min_size) > 0
    distance = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(distance, min_distance=min_distance, labels=ndi.label(mask)[0], exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=mask).astype(np.int32)


def main(images: str, out: str) -> None:
    Path(out).mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(images).glob("*.tif")):
        tifffile.imwrite(Path(out) / path.name, classical_nuclei(tifffile.imread(path)), compression="zlib")


if __name__ == "__main__":
    main(*sys.argv[1:3])
