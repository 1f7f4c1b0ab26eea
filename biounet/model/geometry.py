"""Tile geometry of a network: which input sizes are valid and what they produce.

With unpadded ("valid") 3x3 convolutions every level loses pixels, so only some
input sizes give an output at all, and PyTorch silently accepts sizes that break
the centre alignment. These pure functions say which sizes are valid and what
comes out, so that the tiling code never has to guess. A network that is no
biounet U-Net (a bioimage.io package) states its rule instead (`SizeRule`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


class TileSizeError(ValueError):
    """An input tile size the network cannot take."""


class TileSizes(ABC):
    """What every tile geometry answers from its smallest valid input (`min_input`), the
    step between valid sizes (`align`, also the shift period: tiles start on multiples of
    it), the context lost on each side (`margin`) and `is_valid`."""

    min_input: int
    align: int
    margin: int

    @abstractmethod
    def is_valid(self, size: int) -> bool:
        """Whether `size` is a valid input size."""

    @abstractmethod
    def describe(self) -> str:
        """What the network is, for messages ("a depth-5 valid U-Net")."""

    def sizes_text(self) -> str:
        """The valid input sizes, for messages: "188 + 16k"."""
        return f"{self.min_input} + {self.align}k"

    def output_size(self, size: int) -> int:
        """Output size for a valid input size; raises TileSizeError otherwise."""
        self.check(size)
        return size - 2 * self.margin

    def input_size(self, output: int) -> int:
        """Smallest valid input size whose output is at least `output` pixels."""
        return self.nearest_valid(output + 2 * self.margin, direction="up")

    def valid_sizes(self, lo: int, hi: int) -> list[int]:
        """All valid input sizes in [lo, hi]."""
        start = self.nearest_valid(max(lo, self.min_input), direction="up")
        return list(range(start, hi + 1, self.align))

    def nearest_valid(self, size: int, direction: str = "nearest") -> int:
        """The valid input size nearest to `size` ("nearest", "up" or "down")."""
        if size <= self.min_input:
            return self.min_input
        k, rest = divmod(size - self.min_input, self.align)
        below = self.min_input + k * self.align
        above = below if rest == 0 else below + self.align
        if direction == "up":
            return above
        if direction == "down":
            return below
        return below if size - below <= above - size else above

    def check(self, size: int) -> None:
        """Raise TileSizeError naming the nearest valid sizes if `size` is invalid."""
        if self.is_valid(size):
            return
        below = max(self.min_input, self.nearest_valid(size, "down"))
        above = self.nearest_valid(size, "up")
        near = sorted({below, above})
        raise TileSizeError(
            f"tile size {size} is not valid for {self.describe()}: "
            f"valid sizes are {self.sizes_text()}; nearest: "
            + " or ".join(map(str, near))
        )


@dataclass(frozen=True)
class Geometry(TileSizes):
    """Input/output size arithmetic of a U-Net of a given depth and padding.

    depth: number of resolution levels (5 in the paper).
    padding: "valid" (unpadded convolutions, the paper) or "same".
    context: for "same" networks, the margin cropped from each tile side so the
        kept centre sees enough context (defaults to the valid network's margin).
    """

    depth: int = 5
    padding: str = "valid"
    context: int | None = None

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")
        if self.padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {self.padding!r}")

    @property
    def align(self) -> int:
        """Shift period of the network (2^(depth-1)): tiles start on multiples of it."""
        return 2 ** (self.depth - 1)

    def simulate(self, size: int) -> int | None:
        """Output size a valid network gives for `size`, or None if it cannot.

        Walks the layer sizes: two 3x3 convolutions (-4 px) per level, 2x2 pooling
        that needs an even size, 2x up-convolution on the way back.
        """
        for _ in range(self.depth - 1):
            size -= 4
            if size < 2 or size % 2:
                return None
            size //= 2
        size -= 4
        for _ in range(self.depth - 1):
            if size < 1:
                return None
            size = 2 * size - 4
        return size if size >= 1 else None

    @property
    def valid_margin(self) -> int:
        """Pixels a valid network loses on each side: 92 for depth 5."""
        return (self._smallest_valid() - self.simulate(self._smallest_valid())) // 2

    def _smallest_valid(self) -> int:
        size = 1
        while self.simulate(size) is None:
            size += 1
        return size

    @property
    def margin(self) -> int:
        """Context pixels on each side of a tile that do not reach the output."""
        if self.padding == "valid":
            return self.valid_margin
        return self.valid_margin if self.context is None else self.context

    @property
    def min_input(self) -> int:
        """Smallest valid input size (188 for depth 5)."""
        if self.padding == "valid":
            return self._smallest_valid()
        k = -(-(2 * self.margin + 1) // self.align)
        return max(k, 1) * self.align

    def is_valid(self, size: int) -> bool:
        """Whether `size` is a valid input size."""
        if self.padding == "valid":
            return self.simulate(size) is not None
        return size >= self.min_input and size % self.align == 0

    def describe(self) -> str:
        return f"a depth-{self.depth} {self.padding} U-Net"


@dataclass(frozen=True)
class SizeRule(TileSizes):
    """The tile geometry a model states instead of a U-Net's depth (a bioimage.io package):
    valid inputs `min_input` + `align` k (only `min_input` when `fixed`), and `margin`
    pixels of each side that do not reach the kept output."""

    min_input: int
    align: int
    margin: int
    fixed: bool = False

    def __post_init__(self) -> None:
        if self.min_input < 1 or self.align < 1 or self.margin < 0:
            raise ValueError(f"invalid size rule: min {self.min_input}, step {self.align}, margin {self.margin}")

    def is_valid(self, size: int) -> bool:
        if self.fixed:
            return size == self.min_input
        return size >= self.min_input and (size - self.min_input) % self.align == 0

    def nearest_valid(self, size: int, direction: str = "nearest") -> int:
        return self.min_input if self.fixed else super().nearest_valid(size, direction)

    def valid_sizes(self, lo: int, hi: int) -> list[int]:
        return [s for s in super().valid_sizes(lo, hi) if self.is_valid(s)]

    def describe(self) -> str:
        return "this model"

    def sizes_text(self) -> str:
        return f"{self.min_input} only" if self.fixed else super().sizes_text()


def geometry_of(config) -> TileSizes:
    """The tile geometry of a network config (a `UNetConfig`): a size rule the config
    states in `extra["sizes"]` (a bioimage.io package's), else its U-Net's depth and padding
    (and, for a same-padded network, its context margin)."""
    sizes = config.extra.get("sizes")
    if sizes:
        return SizeRule(int(sizes["min"]), int(sizes["step"]), int(sizes["margin"]), bool(sizes.get("fixed", False)))
    return Geometry(config.depth, config.padding, getattr(config, "context", None))
