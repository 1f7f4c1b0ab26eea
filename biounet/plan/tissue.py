"""Tissue detection: where a slide holds something to segment, and so which blocks to predict.

Whole-slide scans are mostly glass. The mask is made on a thumbnail of `factor` x `factor`
slide pixels per pixel (a power of two chosen from the slide's size alone), so it depends
only on the slide and the options, never on the blocks or workers:

- brightfield (RGB): tissue where the optical density or the saturation is above its Otsu
  threshold, each threshold held within bounds: glass is near white and grey, and without
  the bounds a slide of tissue only would be split into light and dark tissue, and a
  field of glass into its noise;
- fluorescence: where the log intensity of any channel is above half way from the
  background level to its Otsu threshold (dim cells count);

then one-pixel cracks closed, holes smaller than MAX_HOLE filled and, in brightfield,
pieces smaller than MIN_PIECE removed (dust). The mask is dilated by the network's
context (its tile margin) and one thumbnail pixel more (a thumbnail pixel half on tissue
may read as glass), so objects at a tissue edge are predicted whole. Blocks the dilated
mask does not touch are not predicted.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from biounet.plan.blocks import Block

MAX_THUMBNAIL = 2048  # the thumbnail's longest side, at most
MIN_FACTOR = 8  # slide pixels per thumbnail pixel, at least: averages noise and single nuclei out
OD_BOUNDS = (0.05, 0.10)  # optical density (mean of R, G, B): glass 0.01-0.04, pale tissue 0.08, tissue 0.2-0.5
SATURATION_BOUNDS = (0.08, 0.12)  # glass 0.02-0.06 (tinted), pale tissue 0.12, H&E tissue 0.15-0.6
MIN_PIECE = 96 * 96  # slide pixels: brightfield pieces smaller than this (a few nuclei) are dust
MAX_HOLE = 512 * 512  # slide pixels: holes in tissue smaller than this (lumens, fat cells) are filled
GLASS, TISSUE, CONTEXT = 0, 1, 2  # values of the stored mask: CONTEXT = predicted for the network's context


def mask_factor(height: int, width: int) -> int:
    """Slide pixels per thumbnail pixel: the smallest power of two, at least MIN_FACTOR, that
    brings the longest side within MAX_THUMBNAIL pixels."""
    factor = MIN_FACTOR
    while max(height, width) > factor * MAX_THUMBNAIL:
        factor *= 2
    return factor


def thumbnail_shape(height: int, width: int, factor: int) -> tuple[int, int]:
    """The thumbnail's (height, width): every slide pixel in one thumbnail pixel."""
    return -(-height // factor), -(-width // factor)


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of `values`: the bin edge that maximises the between-class variance
    of a `bins`-bin histogram (a constant input returns its value)."""
    values = np.asarray(values, np.float64).ravel()
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return low
    counts, edges = np.histogram(values, bins, (low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts)[:-1].astype(np.float64)  # pixels at or below each candidate threshold
    above = counts.sum() - weight
    sums = np.cumsum(counts * centres)[:-1]
    mean_low = sums / np.maximum(weight, 1)
    mean_high = (sums[-1] + counts[-1] * centres[-1] - sums) / np.maximum(above, 1)
    between = weight * above * (mean_low - mean_high) ** 2
    return float(centres[int(np.argmax(between))])


def bounded_otsu(values: np.ndarray, bounds: tuple[float, float]) -> float:
    """Otsu's threshold held within `bounds` (low, high)."""
    return float(np.clip(otsu(values), *bounds))


def optical_density(rgb: np.ndarray, white: float) -> np.ndarray:
    """Mean optical density over R, G and B of (C >= 3, H, W) intensities, `white` = no absorption."""
    rgb = np.asarray(rgb[:3], np.float64)
    return -np.log10((np.clip(rgb, 0, white) + 1) / (white + 1)).mean(axis=0)


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation (max - min) / max over R, G and B (0 for black)."""
    rgb = np.asarray(rgb[:3], np.float64)
    top = rgb.max(axis=0)
    return np.where(top > 0, (top - rgb.min(axis=0)) / np.maximum(top, 1e-12), 0.0)


def brightfield_tissue(rgb: np.ndarray, white: float, factor: int) -> np.ndarray:
    """Tissue of an RGB thumbnail (C >= 3, H, W) of `factor` slide pixels per pixel: optical
    density or saturation above their bounded Otsu thresholds, cleaned (see module doc)."""
    density, colour = optical_density(rgb, white), saturation(rgb)
    tissue = (density > bounded_otsu(density, OD_BOUNDS)) | (colour > bounded_otsu(colour, SATURATION_BOUNDS))
    return clean(tissue, factor, MIN_PIECE)


def fluorescence_tissue(channels: np.ndarray, factor: int) -> np.ndarray:
    """Tissue of a fluorescence thumbnail (C, H, W): per channel, log intensity above half way
    from the background's mean to Otsu's threshold; any channel counts; cracks and holes closed."""
    tissue = np.zeros(channels.shape[-2:], bool)
    for channel in np.asarray(channels, np.float64):
        low, high = float(channel.min()), float(channel.max())
        if high <= low:
            continue
        logs = np.log((channel - low) / (high - low) + 1e-3)
        threshold = otsu(logs)
        background = float(logs[logs <= threshold].mean())
        tissue |= logs > (background + threshold) / 2
    return clean(tissue, factor, 0)


def clean(mask: np.ndarray, factor: int, min_piece: int) -> np.ndarray:
    """`mask` with one-pixel cracks closed, holes under MAX_HOLE slide pixels filled and pieces
    under `min_piece` slide pixels removed (areas converted to thumbnail pixels)."""
    from scipy import ndimage as ndi

    square = np.ones((3, 3), bool)
    padded = np.pad(mask, 1, mode="edge")  # closing must not eat tissue at the slide's edges
    mask = ndi.binary_closing(padded, square)[1:-1, 1:-1] | mask
    holes, count = ndi.label(~mask)
    if count:
        sizes = np.bincount(holes.ravel(), minlength=count + 1)
        border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
        small = sizes * factor * factor < MAX_HOLE
        small[border] = False
        small[0] = False
        mask = mask | small[holes]
    pieces, count = ndi.label(mask, square)
    if count and min_piece > 0:
        sizes = np.bincount(pieces.ravel(), minlength=count + 1)
        keep = sizes * factor * factor >= min_piece
        keep[0] = False
        mask = keep[pieces]
    return mask


def context_radius(margin: int, factor: int) -> int:
    """Thumbnail pixels to dilate the mask by: the network's context (`margin` slide pixels)
    rounded up, plus one for thumbnail pixels only partly on tissue."""
    return math.ceil(margin / factor) + 1


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """`mask` grown by `radius` pixels in every direction (a square: the network's context is one)."""
    if radius <= 0:
        return mask.copy()
    from scipy import ndimage as ndi

    return ndi.maximum_filter(mask.astype(np.uint8), size=2 * radius + 1, mode="constant") > 0


def mask_layer(tissue: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The stored mask (uint8): TISSUE, CONTEXT where only the dilation reaches, GLASS elsewhere."""
    return np.where(tissue, TISSUE, np.where(predicted, CONTEXT, GLASS)).astype(np.uint8)


def blocks_on(predicted: np.ndarray, factor: int, blocks: Sequence[Block]) -> list[int]:
    """Indices of the blocks that any `predicted` thumbnail pixel touches (every plane alike)."""
    return [b.index for b in blocks
            if predicted[b.y0 // factor : -(-b.y1 // factor), b.x0 // factor : -(-b.x1 // factor)].any()]


def skipped_ranges(kept: Sequence[int], total: int) -> list[list[int]]:
    """The blocks not in `kept`, as [start, stop) ranges (compact in the run record)."""
    out: list[list[int]] = []
    keep = set(kept)
    for i in range(total):
        if i in keep:
            continue
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return out


def from_ranges(ranges: Sequence[Sequence[int]]) -> frozenset[int]:
    """The block indices of [start, stop) ranges."""
    return frozenset(i for start, stop in ranges for i in range(start, stop))
