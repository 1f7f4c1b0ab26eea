"""Pixel values as pass 2 sums them per object: exactly, whatever the pixel type.

Integer and bool pixels are summed in int64, so their sums are exact (64-bit
integers split into two int64 halves, value = high * 2**32 + low); float
pixels in float64 (float16, which the compiled loops cannot read, widened to
float32 first, which is exact). `biounet.measure.intensity` turns the sums
into means.
"""

from __future__ import annotations

import numpy as np

HIGH_SHIFT = 32  # 64-bit integer pixels: value = high << HIGH_SHIFT + low
NO_HIGH = np.zeros((0, 0), np.int64)  # the high halves of pixels that need none


def sum_dtype(pixel_dtype: np.dtype | str) -> np.dtype:
    """The type intensity sums of pixels of `pixel_dtype` are kept in."""
    return np.dtype(np.float64 if np.dtype(pixel_dtype).kind == "f" else np.int64)


def summands(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`image` (2-D) as the compiled sums read it: (values, high), C-contiguous, native byte
    order; `high` is NO_HIGH except for 64-bit integers, whose pixels are
    `high << HIGH_SHIFT + values` with both halves int64 (sums of either cannot overflow)."""
    image = np.asarray(image)
    dtype = image.dtype.newbyteorder("=")
    if dtype.kind == "f" and dtype.itemsize < 4:
        dtype = np.dtype(np.float32)
    if dtype.kind in "iu" and dtype.itemsize == 8:
        wide = image.astype(dtype, copy=False)
        low = (wide & (2**HIGH_SHIFT - 1)).astype(np.int64)
        return np.ascontiguousarray(low), np.ascontiguousarray((wide >> HIGH_SHIFT).astype(np.int64))
    return np.ascontiguousarray(image, dtype), NO_HIGH
