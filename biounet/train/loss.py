"""Training losses: the paper's weighted softmax cross-entropy, Dice, MSE/MAE.

Every loss takes the network output cropped to the target's size and the
batch's (target, weight, mask) from `biounet.train.data`; unannotated pixels
(mask False, class target 255) never contribute. Means are over annotated
pixels, so the loss scale does not depend on how much of a patch is annotated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from biounet.train.targets import IGNORE_INDEX


def _valid(target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    valid = target != IGNORE_INDEX
    return valid if mask is None else valid & mask


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                           mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over annotated pixels of w(x) * -log p_target(x) (paper eq. 1).

    logits (N,K,H,W); target (N,H,W) class indices, IGNORE_INDEX = unannotated;
    weight (N,H,W) the weight map (None = 1).
    """
    ce = F.cross_entropy(logits.float(), target.long(), reduction="none", ignore_index=IGNORE_INDEX)
    valid = _valid(target, mask)
    if weight is not None:
        ce = ce * weight
    return (ce * valid).sum() / valid.sum().clamp_min(1)


def soft_dice(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
              eps: float = 1.0) -> torch.Tensor:
    """1 - mean soft Dice of the foreground classes (1..K-1) over the batch's annotated pixels."""
    probs = torch.softmax(logits.float(), dim=1)
    valid = _valid(target, mask)
    classes = logits.shape[1]
    onehot = F.one_hot(torch.where(valid, target.long(), 0), classes).permute(0, 3, 1, 2).float()
    keep = valid[:, None].float()
    dims = (0, 2, 3)
    inter = (probs * onehot * keep).sum(dims)
    total = (probs * keep).sum(dims) + (onehot * keep).sum(dims)
    dice = (2 * inter + eps) / (total + eps)
    return 1.0 - dice[1:].mean()


def regression_loss(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                    kind: str = "mse", weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared ("mse") or absolute ("mae") error over annotated pixels.

    output (N,1,H,W) or (N,H,W); target (N,H,W).
    """
    if output.ndim == 4:
        output = output[:, 0]
    diff = output.float() - target.float()
    err = diff.square() if kind == "mse" else diff.abs() if kind == "mae" else None
    if err is None:
        raise ValueError(f"unknown regression loss {kind!r}; use mse or mae")
    valid = torch.ones_like(target, dtype=torch.bool) if mask is None else mask
    if weight is not None:
        err = err * weight
    return (err * valid).sum() / valid.sum().clamp_min(1)


@dataclass(frozen=True)
class Loss:
    """The training loss for a target kind.

    Classification ("binary", "3class"): weighted cross-entropy, plus `dice`
    times the soft Dice loss. Regression ("distance"): `regression` (mse|mae).
    """

    target: str = "binary"
    dice: float = 0.0
    regression: str = "mse"

    def __call__(self, output: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                 mask: torch.Tensor) -> torch.Tensor:
        if self.target == "distance":
            return regression_loss(output, target, mask, self.regression)
        loss = weighted_cross_entropy(output, target, weight, mask)
        if self.dice:
            loss = loss + self.dice * soft_dice(output, target, mask)
        return loss
