"""A sample of a slide's pixel values, for normalisation statistics.

It comes from the lowest pyramid level that still has enough pixels, or from a
deterministic sample of chunks: never from the whole slide in memory, and
always the same for the same slide (so cluster runs agree).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from biounet.read.image import Image

SAMPLE_PIXELS = 2**22  # ~4 Mpx per channel is plenty for percentiles
MIN_LEVEL_PIXELS = 2**18  # a pyramid level with fewer pixels per plane is too coarse


def sample_for_stats(image: "Image", channels: list[int] | None, first_level: int = 0) -> np.ndarray:
    """A (C, N) sample of pixel values of `image` (in its own dtype) from `first_level`
    down, C = selected channels.

    Picks the smallest level with at least MIN_LEVEL_PIXELS per plane (or the
    first); if that level is still large, takes evenly spaced chunks of it, each
    read straight from the file.
    """
    axes = image.axes
    readers = image.readers

    def plane_pixels(shape: tuple[int, ...]) -> int:
        return shape[axes.index("y")] * shape[axes.index("x")]

    index = first_level
    for i in range(first_level + 1, len(readers)):
        if plane_pixels(readers[i].shape) >= MIN_LEVEL_PIXELS:
            index = i
    shape, chunks = readers[index].shape, readers[index].chunks

    def channels_first(values: np.ndarray) -> np.ndarray:
        """(C, N) of a region read in `axes` order (all channels)."""
        values = np.moveaxis(values, axes.index("c"), 0) if "c" in axes else values[None]
        if "c" in axes and channels is not None:
            values = values[channels]
        return values.reshape(values.shape[0], -1)

    per_channel = math.prod(shape) // image.size("c")
    if per_channel <= SAMPLE_PIXELS:
        return channels_first(image.read(index, (slice(None),) * len(shape)))
    # Evenly spaced chunks over the chunk grid (every axis but the channel axis).
    spatial = [i for i, a in enumerate(axes) if a != "c"]
    grid = [-(-shape[i] // chunks[i]) for i in spatial]
    nblocks = math.prod(grid)
    chunk_px = math.prod(chunks[i] for i in spatial)
    want = max(1, min(nblocks, math.ceil(SAMPLE_PIXELS / max(chunk_px, 1))))
    picks = np.unique(np.linspace(0, nblocks - 1, want).round().astype(int))
    parts = []
    for flat in picks:
        at = dict(zip(spatial, np.unravel_index(flat, grid)))
        key = tuple(
            slice(None) if i not in at else slice(at[i] * chunks[i], min((at[i] + 1) * chunks[i], shape[i]))
            for i in range(len(shape))
        )
        parts.append(channels_first(image.read(index, key)))
    return np.concatenate(parts, axis=1)


def pooled_sample(samples: Sequence[np.ndarray]) -> np.ndarray:
    """One (C, N) sample of several images taken together, N <= about SAMPLE_PIXELS.

    Each image contributes evenly strided pixels in proportion to its size, so
    statistics describe the whole acquisition (e.g. the fields of one plate) as
    a slide's statistics describe the slide.
    """
    if not samples:
        raise ValueError("no images to pool")
    total = sum(s.shape[1] for s in samples)
    step = max(1, math.ceil(total / SAMPLE_PIXELS))
    return np.concatenate([s.reshape(s.shape[0], -1)[:, ::step] for s in samples], axis=1).astype(np.float64)


def brightness(image: "Image", level: int = 0) -> float:
    """The median pixel brightness of `image` (the mean of its channels) as a fraction of
    its integer type's range (floats as they are): about 0.8 or more for glass under
    transmitted light, near 0 for the background of fluorescence. From the same small
    sample as the normalisation statistics."""
    sample = sample_for_stats(image, None, level)
    median = float(np.median(sample.mean(axis=0, dtype=np.float64)))
    dtype = np.dtype(image.dtype)
    return median / np.iinfo(dtype).max if dtype.kind in "ui" else median
