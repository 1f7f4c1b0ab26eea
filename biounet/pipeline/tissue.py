"""The tissue step of setting up a run (`--tissue`): the mask, the blocks it touches, its
labels layer in the output and its entry in the run record.

    auto   brightfield (an RGB scan): optical density and saturation; otherwise
           fluorescence: log intensity of the model's channels (`biounet.plan.tissue`)
    PATH   a mask image of the whole slide, any size (nonzero = tissue)
    none   no mask: every block is predicted

Blocks the mask (dilated by the network's context) does not touch are not predicted:
their labels stay empty (`biounet.pipeline.stages.skip_block`). Each run's record keeps
which blocks those are, so resumes, job-array parts and Dask workers skip the same ones.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np

from biounet.plan import tissue as maths
from biounet.plan.run import Run, UsageError
from biounet.read.thumbnail import MaskShapeError, mask_image, thumbnail
from biounet.runtime.notices import BiounetWarning


@dataclass
class TissueMask:
    """A run's mask: the stored layer (GLASS, TISSUE, CONTEXT on the thumbnail grid), slide
    pixels per mask pixel, and the blocks to predict."""

    layer: np.ndarray
    factor: int
    kept: list[int]

    @property
    def fraction(self) -> float:
        """The share of the slide's area that is tissue."""
        return float(np.mean(self.layer == maths.TISSUE))


def white(dtype: np.dtype, thumb: np.ndarray) -> float:
    """The intensity of no absorption: the type's top for integers, 1 (or the brightest) otherwise."""
    return float(np.iinfo(dtype).max) if dtype.kind in "iu" else max(1.0, float(thumb.max()))


def detect(run: Run, image) -> TissueMask | None:
    """The mask of `run` (None for --tissue none): from the slide's thumbnail or a mask file,
    dilated by the network's context, and the blocks it touches."""
    if run.tissue == "none":
        return None
    *planes, height, width = run.layout.shape
    factor = maths.mask_factor(height, width)
    if run.tissue == "auto":
        tissue = np.zeros(maths.thumbnail_shape(height, width, factor), bool)
        for plane in product(*(range(n) for n in planes)):  # every plane's tissue counts
            if image.rgb:
                thumb = thumbnail(image, run.level, factor, plane)
                tissue |= maths.brightfield_tissue(thumb, white(image.dtype, thumb), factor)
            else:
                thumb = thumbnail(image, run.level, factor, plane, list(run.channels) if run.channels else None)
                tissue |= maths.fluorescence_tissue(thumb, factor)
    else:
        try:
            tissue = mask_image(run.tissue, *maths.thumbnail_shape(height, width, factor), (height, width))
        except MaskShapeError as err:
            raise UsageError(f"--tissue {run.tissue} {err}") from None
    margin = math.ceil(run.geometry.margin / run.scale.factor)  # the network's context in slide pixels
    predicted = maths.dilate(tissue, maths.context_radius(margin, factor))
    mask = TissueMask(maths.mask_layer(tissue, predicted), factor, maths.blocks_on(predicted, factor, run.blocks))
    if not mask.kept:
        source = "in the slide" if run.tissue == "auto" else "in the mask"
        warnings.warn(f"no tissue found {source} (--tissue {run.tissue}): no block of {run.input} is predicted and "
                      "its labels are empty; pass --tissue none to predict every block", BiounetWarning, stacklevel=3)
    return mask


def record_entry(run: Run, mask: TissueMask) -> dict:
    """What the run record keeps of the mask: where it came from, its scale, the blocks predicted
    and skipped ([start, stop) ranges), and the tissue's share of the slide."""
    return {"mask": run.tissue if run.tissue == "auto" else str(Path(run.tissue).resolve()), "factor": mask.factor,
            "blocks": len(mask.kept), "of": len(run.blocks), "fraction": round(mask.fraction, 4),
            "skipped": maths.skipped_ranges(mask.kept, len(run.blocks))}


def skipped_blocks(record: dict | None) -> frozenset[int]:
    """The blocks a run record says are not predicted (none without a tissue entry)."""
    entry = (record or {}).get("tissue")
    return maths.from_ranges(entry["skipped"]) if entry else frozenset()


def describe(entry: dict) -> str:
    """'412 of 900 blocks (54% skipped)'."""
    skipped = entry["of"] - entry["blocks"]
    return f"{entry['blocks']} of {entry['of']} blocks ({100 * skipped / max(entry['of'], 1):.0f}% skipped)"
