"""Mean intensities from the exact per-object sums of pass 2 (`biounet.label.sums`): one
division of exact sums, correctly rounded whatever the pixel type."""

from __future__ import annotations

import numpy as np

from biounet.label.sums import HIGH_SHIFT

EXACT_IN_FLOAT64 = 2**53  # integers below this in magnitude are exact as float64


def mean_intensity(total: np.ndarray, high: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Mean pixel value per object from its sums (`high` as in `summands`, summed) and pixel
    counts: one float64 division, correctly rounded for integer sums of any size."""
    if total.dtype.kind == "f" or (not high.any() and np.abs(total).max(initial=0) < EXACT_IN_FLOAT64):
        return total / area
    # Python integers: exact sums, and their true division is correctly rounded.
    return np.array([((h << HIGH_SHIFT) + t) / a for h, t, a in zip(high.tolist(), total.tolist(), area.tolist())],
                    np.float64)
