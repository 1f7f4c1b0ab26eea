"""The output's geometry: pyramid levels, chunks, shards and the blocks of every level.

Pure arithmetic, decided before anything is written. A *block* is the unit of
work and of writing: one chunk of every array for NGFF 0.4 (zarr v2), one
shard (several chunks) for NGFF 0.5 (zarr v3), so two tasks never write into
the same file. Every pyramid level is cut into blocks of the same size, so a
level-k block is made from (up to) 2 x 2 blocks of level k - 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from biounet.plan.blocks import Block, plan_blocks

MIN_LEVEL_SIZE = 256  # stop the pyramid once a level fits in this many pixels


def pyramid_factors(height: int, width: int) -> list[int]:
    """Downsampling factors 1, 2, 4, ... until the level fits in MIN_LEVEL_SIZE."""
    factors = [1]
    while max(height, width) / factors[-1] > MIN_LEVEL_SIZE:
        factors.append(factors[-1] * 2)
    return factors


def level_steps(height: int, width: int) -> list[tuple[int, int]]:
    """Per pyramid level its (y, x) downsampling step from the level below: (1, 1) for
    level 0, then 2 per axis, except along an axis already one pixel long."""
    steps = [(1, 1)]
    h, w = height, width
    for _ in range(1, len(pyramid_factors(height, width))):
        sy, sx = (2 if h > 1 else 1), (2 if w > 1 else 1)
        h, w = -(-h // sy), -(-w // sx)
        steps.append((sy, sx))
    return steps


@dataclass(frozen=True)
class OutputLayout:
    """Shapes, axes, blocks and chunking of an output store.

    axes: the labels' axes (a subset of "tzyx" ending in "yx"); arrays with
    channels (image, probabilities) add "c" in NGFF position.
    block: edge of a block in pixels (a chunk for NGFF 0.4, a shard for 0.5).
    chunk: edge of a chunk inside a block (equal to `block` for NGFF 0.4).
    """

    axes: str
    shape: tuple[int, ...]
    block: int
    pixel_size: dict[str, tuple[float, str]] = field(default_factory=dict)
    ngff: str = "0.4"
    chunk: int | None = None

    @property
    def sharded(self) -> bool:
        return self.ngff == "0.5" and self.chunk_edge < self.block

    @property
    def chunk_edge(self) -> int:
        return self.block if self.chunk is None else min(self.chunk, self.block)

    @property
    def zarr_format(self) -> int:
        return 3 if self.ngff == "0.5" else 2

    @cached_property
    def steps(self) -> list[tuple[int, int]]:
        return level_steps(*self.shape[-2:])

    @cached_property
    def level_shapes(self) -> list[tuple[int, ...]]:
        """The labels' shape at every pyramid level."""
        shapes = [tuple(self.shape)]
        for sy, sx in self.steps[1:]:
            *lead, h, w = shapes[-1]
            shapes.append((*lead, -(-h // sy), -(-w // sx)))
        return shapes

    @property
    def levels(self) -> int:
        return len(self.level_shapes)

    def factors(self) -> list[tuple[int, int]]:
        """Cumulative (y, x) downsampling of every level against level 0."""
        out = [(1, 1)]
        for sy, sx in self.steps[1:]:
            out.append((out[-1][0] * sy, out[-1][1] * sx))
        return out

    def blocks(self, level: int = 0) -> list[Block]:
        """The blocks of a pyramid level (indices 0..n-1 in plane, row, column order)."""
        *lead, h, w = self.level_shapes[level]
        return plan_blocks(tuple(lead), h, w, self.block, 1)

    def children(self, level: int, block: Block) -> list[int]:
        """Indices of the level `level - 1` blocks that level-`level` `block` is made from."""
        sy, sx = self.steps[level]
        *lead, h, w = self.level_shapes[level - 1]
        rows, cols = -(-h // self.block), -(-w // self.block)
        plane = 0
        for i, n in zip(block.plane, lead):
            plane = plane * n + i
        ys = range(block.y0 * sy // self.block, -(-min(block.y1 * sy, h) // self.block))
        xs = range(block.x0 * sx // self.block, -(-min(block.x1 * sx, w) // self.block))
        return [(plane * rows + r) * cols + c for r in ys for c in xs]

    def with_channels(self, channels: int, shape: tuple[int, ...] | None = None) -> tuple[str, tuple[int, ...]]:
        """Axes and shape (of level 0, or of `shape`) of an array with a c axis in NGFF position."""
        shape = tuple(self.shape if shape is None else shape)
        i = 1 if self.axes.startswith("t") else 0
        return self.axes[:i] + "c" + self.axes[i:], shape[:i] + (channels,) + shape[i:]

    def array_shape(self, level: int, channels: int = 0) -> tuple[str, tuple[int, ...]]:
        """Axes and shape of an array (with `channels` > 0: with a c axis) at a level."""
        shape = self.level_shapes[level]
        return self.with_channels(channels, shape) if channels else (self.axes, shape)

    def chunking(self, level: int, channels: int = 0) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        """(chunks, shards or None) of an array at a level: one plane of one block (all
        channels); with sharding, chunks of `chunk` pixels inside block-sized shards."""
        axes, shape = self.array_shape(level, channels)

        def edge(size: int, n: int) -> int:
            return min(size, n)

        chunks = tuple(channels if a == "c" else edge(self.chunk_edge, n) if a in "yx" else 1
                       for a, n in zip(axes, shape))
        if not self.sharded:
            return tuple(channels if a == "c" else edge(self.block, n) if a in "yx" else 1
                         for a, n in zip(axes, shape)), None
        shards = tuple(c if a not in "yx" else min(self.block, -(-n // c) * c) for a, c, n in zip(axes, chunks, shape))
        return chunks, shards
