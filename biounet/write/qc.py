"""Quality control next to the output: an overlay thumbnail of the whole slide."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def overlay_png(image: np.ndarray, labels: np.ndarray, path: Path) -> None:
    """Grey image (percentile-stretched) with instance outlines in colour."""
    from skimage.io import imsave
    from skimage.segmentation import find_boundaries

    img = image.astype(np.float32)
    finite = img[np.isfinite(img)]
    lo, hi = np.percentile(finite, [1, 99.8]) if finite.size else (0.0, 1.0)
    grey = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=2)
    edges = find_boundaries(labels, mode="inner")
    palette = np.array([[255, 80, 80], [80, 255, 80], [80, 160, 255], [255, 220, 0], [255, 80, 255], [0, 230, 230]], np.uint8)
    rgb[edges] = palette[labels[edges] % len(palette)]
    imsave(path, rgb, check_contrast=False)
