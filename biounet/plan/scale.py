"""Scale: running the network at the pixel size it was trained at, writing at the slide's.

A network trained at one um/px works at that scale. When the slide's pixel size differs
from the model's by more than `RESCALE_TOLERANCE`, prediction runs in *model space*: a
grid of `factor` model pixels per slide pixel with the same origin (slide 0.5 um/px,
model 0.25: factor 2, twice the pixels). Everything else stays in slide space: blocks,
class maps, instances, pyramids, the object table. For each slide block, the model-space
range its pixels need is predicted on the model-space global tile grid and resampled
back (`biounet.plan.resample`, a pure function of position), so the result still does
not depend on tile size, block size or workers.

The network's input is read from the coarsest pyramid level that is not coarser than
the model's pixels (within the tolerance, as `biounet.read.levels.choose_level` says),
and resampled to model space unless that level already is at the model's scale.

Pure functions of numbers; the slide and the model are read by the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from biounet.plan.blocks import Block
from biounet.plan.resample import taps
from biounet.read.levels import choose_level

RESCALE_TOLERANCE = 0.05
"""Slide and model pixel sizes that differ by at most this (5 %) run at the slide's own
scale: a change that small costs the network nothing, and resampling would cost time."""
MAX_MODEL_BLOCK = 4096
"""The default block shrinks until its model-space side is at most this many pixels (the
largest default block, NGFF 0.5's), so a large scale factor does not grow the memory."""


class ScaleError(ValueError):
    """Scale options that do not fit together, or the model (a usage error)."""


@dataclass(frozen=True)
class Scale:
    """How a run maps the slide (the level segmented) to the network's pixels.

    factor: model pixels per slide pixel (geometric mean of `steps`); 1.0: not rescaled.
    steps: model pixels per slide pixel along y and x.
    level: the pyramid level the network's input is read from.
    read_steps: model pixels per pixel of `level` along y and x ((1, 1): read as it is).
    text: what was used and where it came from, for the summary line.
    Also the numbers behind it (None where unknown), for the run record.
    """

    factor: float = 1.0
    steps: tuple[float, float] = (1.0, 1.0)
    level: int = 0
    read_steps: tuple[float, float] = (1.0, 1.0)
    text: str = "scale 1"
    slide_um: float | None = None
    slide_from: str | None = None
    model_um: float | None = None
    diameter: float | None = None
    model_diameter: float | None = None

    @property
    def rescaled(self) -> bool:
        return self.steps != (1.0, 1.0)

    def record(self) -> dict:
        """What the run record and the output's metadata keep of it."""
        return {"factor": self.factor, "steps": list(self.steps), "level": self.level,
                "read_steps": list(self.read_steps), "slide_um_per_px": self.slide_um, "slide_from": self.slide_from,
                "model_um_per_px": self.model_um, "diameter_px": self.diameter,
                "model_diameter_px": self.model_diameter, "text": self.text}


def _um(value: float) -> str:
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3g}"


def check_options(pixel_size: float | None, diameter: float | None, rescale: bool = True) -> None:
    """Raise ScaleError for scale options that cannot work whatever the slide and model: a
    pixel size or diameter that is no positive number, or options that contradict each other."""
    if pixel_size is not None and not (math.isfinite(pixel_size) and pixel_size > 0):
        raise ScaleError(f"--pixel-size {pixel_size:g}: give the slide's pixel size in um/px, a positive number "
                         "(e.g. 0.25 for a 40x scan)")
    if diameter is not None and not (math.isfinite(diameter) and diameter > 0):
        raise ScaleError(f"--diameter {diameter:g}: give the objects' typical diameter in pixels of the slide, "
                         "a positive number (e.g. 20)")
    if diameter is not None and pixel_size is not None:
        raise ScaleError("--pixel-size and --diameter both set the scale: pass one of them")
    if diameter is not None and not rescale:
        raise ScaleError("--diameter asks for rescaling and --no-rescale turns it off: pass one of them")


def scale_factor(slide_um: float | None, model_um: float | None, *, slide_from: str = "the file",
                 model_diameter: float | None = None, diameter: float | None = None, rescale: bool = True,
                 tolerance: float = RESCALE_TOLERANCE) -> tuple[float, str]:
    """(model pixels per slide pixel, why) from the slide's and the model's pixel sizes
    (um/px), or from the objects' diameter in slide pixels (`diameter`, --diameter) and the
    model's (`model_diameter`, training-label pixels). 1.0 where not rescaled: rescaling
    turned off, a size unknown, or the sizes within `tolerance` of each other. The options
    must have passed `check_options`."""
    if diameter is not None:
        if model_diameter is None:
            raise ScaleError("--diameter needs a model that records its objects' diameter, and this one does not: "
                             "give the slide's --pixel-size instead (or retrain the model with --pixel-size)")
        factor = model_diameter / diameter
        detail = f"objects {diameter:g} px from --diameter, model {model_diameter:g} px"
    elif not rescale:
        return 1.0, "none: --no-rescale"
    elif model_um is None:
        return 1.0, "none: the model records no pixel size"
    elif slide_um is None:
        return 1.0, "none: the slide has no pixel size; give --pixel-size or --diameter"
    else:
        factor = slide_um / model_um
        detail = f"slide {_um(slide_um)} um/px from {slide_from}, model {_um(model_um)} um/px"
    if abs(factor - 1.0) <= tolerance:
        return 1.0, f"none: {detail}, within {tolerance:.0%}"
    return factor, detail


def plan_scale(factor: float, why: str, level: int, downsamples: Sequence[tuple[float, float]],
               tolerance: float = RESCALE_TOLERANCE, **numbers) -> Scale:
    """The `Scale` of a run segmenting pyramid `level` (each level's (y, x) downsample
    from level 0 in `downsamples`) at `factor` model pixels per slide pixel: the input is
    read from the coarsest level at least as fine as the model's pixels (within
    `tolerance`), resampled unless that level is within `tolerance` of them. `numbers`
    (slide_um, slide_from, model_um, diameter, model_diameter) go into the record."""
    if factor == 1.0:
        return Scale(1.0, (1.0, 1.0), level, (1.0, 1.0), f"scale 1 ({why})", **numbers)
    here = downsamples[level]
    # Pixel sizes of this level and the coarser ones, in pixels of this level.
    relative = [(fy / here[0] + fx / here[1]) / 2 for fy, fx in downsamples[level:]]
    offset, read = choose_level(relative, 1.0 / factor, tolerance)
    chosen = level + offset
    if abs(read - 1.0) <= tolerance:
        read = 1.0  # the level is at the model's scale: read as it is
    fy, fx = downsamples[chosen]
    steps = (read * here[0] / fy, read * here[1] / fx)
    effective = math.sqrt(steps[0] * steps[1])
    where = f"; input from level {chosen}" if chosen != level else ""
    return Scale(effective, steps, chosen, (read, read), f"scale {effective:.2f} ({why}{where})", **numbers)


def model_block(block: Block, steps: tuple[float, float], align: int) -> Block:
    """The model-space output a slide block's pixels need (the reach of resampling back
    included), starting on the model-space tile grid (a multiple of `align`)."""
    ky, kx = taps(block.y0, block.y1, steps[0]), taps(block.x0, block.x1, steps[1])
    return Block(block.index, block.plane, ky.lo // align * align, ky.hi, kx.lo // align * align, kx.hi)


def scaled_block_size(block: int, factor: float, align: int, limit: int = MAX_MODEL_BLOCK) -> int:
    """The default block size for a run at `factor`: `block`, or the largest multiple of
    `align` whose model-space side stays within `limit` (at least `align`)."""
    if block * factor <= limit:
        return block
    return max(align, int(limit / factor) // align * align)
