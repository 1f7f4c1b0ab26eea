"""Mirror (reflect) indexing: the context the paper invents beyond a slide's edge."""

from __future__ import annotations

import numpy as np


def mirror_index(index: np.ndarray | int, n: int) -> np.ndarray:
    """Map any integer coordinates into [0, n) by reflecting at the edges.

    Same as numpy.pad(mode="reflect") (the edge pixel is not repeated), for
    pads of any width: reflection is periodic with period 2(n - 1).
    """
    index = np.asarray(index)
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    j = np.mod(index, period)
    return np.where(j < n, j, period - j)


def mirror_window(read, shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Read the window [y0, y1) x [x0, x1) of a mirror-extended image.

    `read(ys, xs)` returns the image region for two slices (the last two axes);
    only the bounding box of the rows and columns actually needed is read.
    """
    iy = mirror_index(np.arange(y0, y1), shape[0])
    ix = mirror_index(np.arange(x0, x1), shape[1])
    ylo, yhi, xlo, xhi = iy.min(), iy.max() + 1, ix.min(), ix.max() + 1
    region = np.asarray(read(slice(ylo, yhi), slice(xlo, xhi)))
    # Inside the slide the window is the region itself: no copy through the index arrays.
    rows = slice(None) if y0 >= 0 and y1 <= shape[0] else iy - ylo
    cols = slice(None) if x0 >= 0 and x1 <= shape[1] else ix - xlo
    return region[..., rows, :][..., cols]
