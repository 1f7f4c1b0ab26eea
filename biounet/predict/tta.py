"""Test-time augmentation: the network run on flipped (and transposed) copies of a
batch, its outputs turned back and averaged.

The U-Net paper averaged 7 rotated versions of each EM tile (section 4). A
tile's output region is centred in its input, so a flip or a transpose of the
input maps every output pixel back onto the same image pixel; and all valid
tile sizes of a network are congruent modulo its shift period, so the average
stays independent of the tile size, like the plain output.

- `none`: the network once (the default);
- `flips`: identity, up-down, left-right, both (= a 180 degree turn): 4 runs;
- `d4`: those and their transposes, the 8 symmetries of the square: 8 runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from biounet.plan.options import check_tta

if TYPE_CHECKING:  # the module stays torch-free, so the CLI can list the modes without loading torch
    import torch

# A symmetry as (transpose first?, dims flipped after it); its inverse flips the same dims, then transposes.
_FLIPS: tuple[tuple[int, ...], ...] = ((), (-2,), (-1,), (-2, -1))
SYMMETRIES: dict[str, tuple[tuple[bool, tuple[int, ...]], ...]] = {
    "none": ((False, ()),),
    "flips": tuple((False, f) for f in _FLIPS),
    "d4": tuple((t, f) for t in (False, True) for f in _FLIPS),
}


def runs_of(mode: str) -> int:
    """Network runs per tile (the cost factor of `mode`)."""
    return len(SYMMETRIES[check_tta(mode)])


def forward(x: torch.Tensor, transpose: bool, flips: tuple[int, ...]) -> torch.Tensor:
    """A symmetry of the last two axes applied to `x`."""
    if transpose:
        x = x.transpose(-2, -1)
    return x.flip(flips) if flips else x


def inverse(y: torch.Tensor, transpose: bool, flips: tuple[int, ...]) -> torch.Tensor:
    """Undo `forward(., transpose, flips)`."""
    if flips:
        y = y.flip(flips)
    return y.transpose(-2, -1) if transpose else y


def averaged(predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mode: str) -> torch.Tensor:
    """`predict(x)` averaged over the symmetries of `mode` (probabilities, or a
    regression output), in float32; `none` is `predict(x)` itself, bit for bit."""
    symmetries = SYMMETRIES[check_tta(mode)]
    if len(symmetries) == 1:
        return predict(x)
    total = None
    for transpose, flips in symmetries:
        y = inverse(predict(forward(x, transpose, flips)).float(), transpose, flips)
        total = y if total is None else total.add_(y)
    return total.div_(len(symmetries))
