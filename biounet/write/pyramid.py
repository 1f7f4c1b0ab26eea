"""Pyramid levels, block by block: a level-k block from the (up to) 2 x 2 blocks below it.

Labels take every second pixel (label values are never blended); the image and
probabilities take 2x2 means. Each block task reads its region of level k - 1,
shrinks it and writes one whole block (chunk or shard) of level k, so levels
are built by independent tasks as soon as the blocks below them exist.
"""

from __future__ import annotations

import numpy as np

from biounet.plan.blocks import Block
from biounet.write.store import OutputStore


def shrink(part: np.ndarray, labels: bool, step: tuple[int, int]) -> np.ndarray:
    """`part` (..., Y, X) shrunk by `step` (2 or 1) in y and x: labels take every
    second pixel, other data sy x sx means (the last odd row/column repeated), rounded
    half to even for integer and bool data, in `part`'s dtype."""
    sy, sx = step
    if labels:
        return part[..., ::sy, ::sx]
    if part.shape[-2] % sy or part.shape[-1] % sx:
        pad = [(0, 0)] * (part.ndim - 2) + [(0, part.shape[-2] % sy), (0, part.shape[-1] % sx)]
        part = np.pad(part, pad, mode="edge")
    pieces = [part[..., i::sy, j::sx] for j in range(sx) for i in range(sy)]
    if part.dtype.kind in "iu" and part.dtype.itemsize == 8:
        return _integer_mean(pieces)
    # Exact sums: float32 holds sums of 4 integers < 2^24 (8- and 16-bit pixels), float64
    # those of 32-bit integers and keeps float64 pixels' precision.
    small = part.dtype.kind in "biu" and part.dtype.itemsize <= 2
    out = pieces[0].astype(np.float32 if small else np.float64)
    for piece in pieces[1:]:
        out += piece
    out /= len(pieces)
    if part.dtype.kind in "biu":
        np.rint(out, out=out)
    return out.astype(part.dtype, copy=False)


def _integer_mean(pieces: list[np.ndarray]) -> np.ndarray:
    """The mean of equally shaped 64-bit integer arrays rounded half to even, computed in
    their own type (no float holds them exactly): sum of quotients and of remainders."""
    n = len(pieces)
    quotient = sum(p // n for p in pieces)
    remainder = sum(p % n for p in pieces)  # 0 .. n * (n - 1)
    out = quotient + remainder // n
    rest = remainder % n
    return out + ((2 * rest > n) | ((2 * rest == n) & (out % 2 == 1))).astype(out.dtype)


PIECE = 1024  # rows and columns of the output made at once (bounds memory for shard-sized blocks)


def pyramid_block(store: OutputStore, path: str, level: int, block: Block) -> None:
    """Make level `level` (>= 1) of array `path` in `block` from level `level - 1`."""
    spec = store.specs[path]
    sy, sx = store.layout.steps[level]
    *_, h, w = store.layout.level_shapes[level - 1]
    out = None
    for y0 in range(block.y0, block.y1, PIECE):
        for x0 in range(block.x0, block.x1, PIECE):
            y1, x1 = min(y0 + PIECE, block.y1), min(x0 + PIECE, block.x1)
            src = store.read(path, level - 1, block, slice(sy * y0, min(sy * y1, h)), slice(sx * x0, min(sx * x1, w)))
            part = shrink(src, spec.labels, (sy, sx))
            if out is None:
                out = np.empty(part.shape[:-2] + block.shape, part.dtype)
            out[..., y0 - block.y0 : y1 - block.y0, x0 - block.x0 : x1 - block.x0] = part
    store.write(path, level, block, out)
