"""Planning: output blocks aligned to output chunks, and tiles inside a block.

Every tile's output origin lies on a multiple of the network's shift period
(16 for depth 5) in slide coordinates, which is also where its input starts in
the globally mirror-padded slide. Max pooling makes the network equivariant to
such shifts, so the stitched result equals one pass over the whole padded slide
whatever the tile size, block size or number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from biounet.model.geometry import TileSizes


@dataclass(frozen=True)
class Block:
    """One output block: a plane index (t, z, ... of the labels array) and a YX window."""

    index: int
    plane: tuple[int, ...]
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y1 - self.y0, self.x1 - self.x0)

    def describe(self) -> str:
        """Where the block lies, for messages: 'y 0-1024, x 2048-3072' (plus the plane)."""
        plane = f"plane {','.join(map(str, self.plane))}, " if self.plane else ""
        return f"{plane}y {self.y0}-{self.y1}, x {self.x0}-{self.x1}"

    def index_in(self, axes: str, ys: slice | None = None, xs: slice | None = None, c=slice(None)) -> tuple:
        """Index of this block's plane in an array with `axes` (a subset of "tczyx"):
        rows `ys` and columns `xs` (default: the block's own), channel(s) `c`."""
        plane = iter(self.plane)
        ys = slice(self.y0, self.y1) if ys is None else ys
        xs = slice(self.x0, self.x1) if xs is None else xs
        return tuple(next(plane) if a in "tz" else c if a == "c" else ys if a == "y" else xs for a in axes)

    def key(self) -> str:
        """A stable name, used by resume markers and logs."""
        plane = ".".join(map(str, self.plane)) or "-"
        return f"{plane}/{self.y0}-{self.y1}/{self.x0}-{self.x1}"


def plan_blocks(planes: tuple[int, ...], height: int, width: int, block: int, align: int) -> list[Block]:
    """Blocks of `block` x `block` output pixels covering every plane.

    `planes` are the sizes of the non-spatial axes of the output (t, z);
    `block` must be a multiple of `align` so every block starts aligned.
    """
    if block <= 0 or block % align:
        raise ValueError(f"block size {block} must be a positive multiple of {align}")
    blocks = []
    for plane in product(*(range(n) for n in planes)):
        for y0 in range(0, height, block):
            for x0 in range(0, width, block):
                blocks.append(
                    Block(len(blocks), plane, y0, min(y0 + block, height), x0, min(x0 + block, width))
                )
    return blocks


def tile_starts(start: int, stop: int, tile_out: int, align: int) -> list[int]:
    """Output origins of tiles covering [start, stop), each a multiple of `align`.

    Tiles advance by the largest multiple of `align` not above `tile_out`; the
    last one is pulled back (still aligned) so it ends as close to `stop` as it can.
    `start` must itself be aligned.
    """
    if start % align:
        raise ValueError(f"tile origin {start} is not a multiple of {align}")
    stride = (tile_out // align) * align
    if stride <= 0:
        raise ValueError(f"tile output {tile_out} is smaller than the alignment {align}")
    starts = [start]
    while starts[-1] + tile_out < stop:
        nxt = starts[-1] + stride
        last = -(-(stop - tile_out) // align) * align  # ceil to a multiple of align
        starts.append(min(nxt, max(last, start)))
        if starts[-1] == starts[-2]:
            starts.pop()
            break
    return starts


def tile_window(block: Block, tile_in: int, geometry: "TileSizes") -> tuple[int, int, int, int, list[int], list[int]]:
    """Input window (y0, y1, x0, x1, in slide coordinates, may reach past the edges)
    that a block's tiles need, and the tiles' output origins along y and x."""
    tile_out = geometry.output_size(tile_in)
    m = geometry.margin
    ys = tile_starts(block.y0, block.y1, tile_out, geometry.align)
    xs = tile_starts(block.x0, block.x1, tile_out, geometry.align)
    return block.y0 - m, ys[-1] + tile_out + m, block.x0 - m, xs[-1] + tile_out + m, ys, xs
