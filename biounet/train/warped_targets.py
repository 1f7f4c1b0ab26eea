"""Class targets computed in torch from (warped) instance ids, on any device.

Warping a class target with nearest sampling changes the width of its thin
parts: at 2x zoom a 1-px boundary becomes 2 px, at 0.5x half of the 1-px
boundaries and separation lines vanish, and touching cells merge. Warping
the instance ids instead (nearest keeps every id) and computing the target
afterwards keeps boundaries and separation lines 1 px wide at any zoom.

These are the torch twins of `biounet.train.targets.three_class_target` and
`binary_target` (8-connectivity), equal to them pixel for pixel on the same
ids; ids are (N, H, W) integers, 0 = background, `ignore` = unannotated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from biounet.train.targets import IGNORE_INDEX


def _as_float(ids: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) float copy that holds every id exactly (float64 beyond 2^24)."""
    wide = ids.numel() > 0 and int(ids.abs().max()) >= 2**24
    return ids[:, None].to(torch.float64 if wide else torch.float32)


def _min_pool(x: torch.Tensor) -> torch.Tensor:
    return -F.max_pool2d(-x, 3, stride=1)


def class_target_from_instances(ids: torch.Tensor, target: str, ignore: int = -1) -> torch.Tensor:
    """uint8 (N, H, W) class target of instance ids: "3class" (0 background, 1 interior,
    2 boundary) or "binary" (0 background and separation lines, 1 cell); 255 where ignored.

    3class: an instance pixel with a neighbour of another value is boundary; the image edge
    is not. binary: an instance pixel next to a smaller id yields to background, so every
    contact gets a 1-px line.
    """
    if target not in ("3class", "binary"):
        raise ValueError(f"no class target {target!r} from instances; use 3class or binary")
    skip = ids == ignore
    inst = ids.masked_fill(skip, 0)
    foreground = inst != 0
    values = _as_float(inst)
    if target == "3class":
        padded = F.pad(values, (1, 1, 1, 1), mode="replicate")
        high, low = F.max_pool2d(padded, 3, stride=1), _min_pool(padded)
        edge = foreground & ((high != values) | (low != values))[:, 0]
        out = foreground.to(torch.uint8)
        out[edge] = 2
    else:
        top = float(values.max()) + 1 if values.numel() else 1.0
        work = torch.where(values != 0, values, torch.full_like(values, top))
        lowest = _min_pool(F.pad(work, (1, 1, 1, 1), value=top))
        out = (foreground & ~(lowest < work)[:, 0]).to(torch.uint8)
    out[skip] = IGNORE_INDEX
    return out


def class_weight_map(target: torch.Tensor, per_class: torch.Tensor, border: torch.Tensor) -> torch.Tensor:
    """float32 (N, H, W) loss weights of a class target (paper eq. 2): each pixel's class weight
    (`per_class` (N, classes)) plus the border term on background; 0 where ignored."""
    classes = per_class.shape[1]
    index = target.long().clamp(max=classes - 1).flatten(1)
    weight = per_class.to(torch.float32).gather(1, index).view(target.shape)
    weight = weight + torch.where(target == 0, border, torch.zeros_like(border))
    return weight * (target != IGNORE_INDEX)
