"""Object outlines: an object's pixels as polygons whose vertices are pixel corners.

Pixel (y, x) is the unit square [x, x + 1] x [y, y + 1]; an object is the union
of its pixels' squares and its outline follows their edges, so a polygon
rasterised back (pixel centres inside) gives exactly the object's pixels. Only
corners where the outline turns are vertices.

Rings are GeoJSON's: closed (first vertex repeated), the exterior with positive
signed area in (x, y) (counter-clockwise with y up, the right-hand rule; on
screen, y down, it runs clockwise) and holes negative. Pixels that touch only at
a corner are kept apart: two such pieces are two polygons of a MultiPolygon, and
a pocket closed off by a corner contact is a hole, each touching the rest at that
corner point, which keeps every ring simple (valid OGC geometry).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_OPTIONS = {"cache": True, "nogil": True}

# Directions of travel along pixel edges, y pointing down: 0 east, 1 south, 2 west, 3 north.


@njit(inline="always", **_OPTIONS)
def _edge(h_edges, v_edges, y: int, x: int, d: int) -> bool:
    """Whether an outline edge leaves corner (y, x) in direction d (the object on its right, on screen)."""
    if d == 0:
        return x < h_edges.shape[1] and h_edges[y, x] > 0
    if d == 1:
        return y < v_edges.shape[0] and v_edges[y, x] > 0
    if d == 2:
        return x > 0 and h_edges[y, x - 1] < 0
    return y > 0 and v_edges[y - 1, x] < 0


@njit(inline="always", **_OPTIONS)
def _use(h_edges, v_edges, y: int, x: int, d: int) -> None:
    """Mark an edge traced (+-1 becomes +-2: still there for `_edge`, no longer a start)."""
    if d == 0:
        h_edges[y, x] = 2
    elif d == 1:
        v_edges[y, x] = 2
    elif d == 2:
        h_edges[y, x - 1] = -2
    else:
        v_edges[y - 1, x] = -2


@njit(inline="always", **_OPTIONS)
def _saddle(mask, y: int, x: int) -> bool:
    """Corner (y, x) touched by two object pixels that meet only there (diagonally)."""
    h, w = mask.shape
    if y <= 0 or x <= 0 or y >= h or x >= w:
        return False
    a, b, c, d = mask[y - 1, x - 1], mask[y - 1, x], mask[y, x - 1], mask[y, x]
    return a == d and b == c and a != b


@njit(inline="always", **_OPTIONS)
def _inside_pixel(y: int, x: int, d: int) -> tuple[int, int]:
    """The object pixel on the right of the edge leaving corner (y, x) in direction d."""
    if d == 0:
        return y, x
    if d == 1:
        return y, x - 1
    if d == 2:
        return y - 1, x - 1
    return y - 1, x


@njit(**_OPTIONS)
def trace_rings(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every simple ring of the outline of a 2-D boolean mask.

    Returns the corners (n, 2) int32 as (x, y), ring i being corners[starts[i]:starts[i + 1]]
    (not closed); twice each ring's signed area (int64: > 0 exterior, < 0 hole); and an
    object pixel (y, x) next to each ring (to find which exterior holds a hole).
    """
    h, w = mask.shape
    if h == 0 or w == 0:
        return np.zeros((0, 2), np.int32), np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros((0, 2), np.int32)
    h_edges = np.empty((h + 1, w), np.int8)  # +1: top of a pixel, run east; -1: bottom, run west
    v_edges = np.empty((h, w + 1), np.int8)  # +1: right side, run south; -1: left side, run north
    count = 0
    for x in range(w):
        h_edges[0, x] = np.int8(mask[0, x])
        h_edges[h, x] = -np.int8(mask[h - 1, x])
        count += np.int8(mask[0, x]) + np.int8(mask[h - 1, x])
    for y in range(1, h):
        for x in range(w):
            e = np.int8(mask[y, x]) - np.int8(mask[y - 1, x])
            h_edges[y, x] = e
            count += abs(e)
    for y in range(h):
        v_edges[y, 0] = -np.int8(mask[y, 0])
        v_edges[y, w] = np.int8(mask[y, w - 1])
        count += np.int8(mask[y, 0]) + np.int8(mask[y, w - 1])
        for x in range(1, w):
            e = np.int8(mask[y, x - 1]) - np.int8(mask[y, x])
            v_edges[y, x] = e
            count += abs(e)
    corners = np.empty((count + 1, 2), np.int32)  # a corner starts a distinct edge: at most `count`
    starts = np.zeros(count // 4 + 2, np.int64)  # a ring has at least 4 edges
    inside = np.empty((count // 4 + 1, 2), np.int32)
    path = np.empty((count + 1, 2), np.int32)  # the ring being traced: its corners (x, y) ...
    leave = np.empty(count + 1, np.int8)  # ... and the direction each is left in
    saddle_at = np.empty((count + 1, 3), np.int64)  # saddle corners of this ring: y, x, index in path
    rings = 0
    total = 0
    for sy in range(h + 1):
        for sx in range(w):
            if h_edges[sy, sx] != 1 and h_edges[sy, sx] != -1:  # none, or traced
                continue
            y, x, d = (sy, sx, 0) if h_edges[sy, sx] == 1 else (sy, sx + 1, 2)
            y0, x0, d0 = y, x, d
            n, saddles = 0, 0
            if _saddle(mask, y, x):
                path[0, 0], path[0, 1], leave[0] = x, y, d
                saddle_at[0, 0], saddle_at[0, 1], saddle_at[0, 2] = y, x, 0
                n, saddles = 1, 1
            while True:
                _use(h_edges, v_edges, y, x, d)
                y += (d == 1) - (d == 3)
                x += (d == 0) - (d == 2)
                # Turn right (around the same pixel) where possible: diagonal pixels stay apart.
                right, left = (d + 1) % 4, (d + 3) % 4
                nd = right if _edge(h_edges, v_edges, y, x, right) else (
                    d if _edge(h_edges, v_edges, y, x, d) else left)
                closing = y == y0 and x == x0 and nd == d0
                if nd != d:
                    k = -1
                    if _saddle(mask, y, x):
                        for s in range(saddles):
                            if saddle_at[s, 0] == y and saddle_at[s, 1] == x:
                                k = int(saddle_at[s, 2])
                    if k >= 0:  # back at a saddle of this ring: the loop since then is a ring of its own
                        for i in range(k, n):
                            corners[total + i - k, 0], corners[total + i - k, 1] = path[i, 0], path[i, 1]
                        inside[rings, 0], inside[rings, 1] = _inside_pixel(path[k, 1], path[k, 0], leave[k])
                        total += n - k
                        rings += 1
                        starts[rings] = total
                        n = k + 1
                        leave[k] = nd
                        kept = 0
                        for s in range(saddles):
                            if saddle_at[s, 2] <= k:
                                saddle_at[kept] = saddle_at[s]
                                kept += 1
                        saddles = kept
                    else:
                        if _saddle(mask, y, x):
                            saddle_at[saddles, 0], saddle_at[saddles, 1], saddle_at[saddles, 2] = y, x, n
                            saddles += 1
                        path[n, 0], path[n, 1], leave[n] = x, y, nd
                        n += 1
                if closing:
                    break
                d = nd
            if n >= 4:  # what is left (only the start corner, when the ring closed at a saddle)
                for i in range(n):
                    corners[total + i, 0], corners[total + i, 1] = path[i, 0], path[i, 1]
                inside[rings, 0], inside[rings, 1] = _inside_pixel(path[0, 1], path[0, 0], leave[0])
                total += n
                rings += 1
                starts[rings] = total
    area2 = np.zeros(rings, np.int64)
    for r in range(rings):
        a, b = starts[r], starts[r + 1]
        for i in range(a, b):
            j = i + 1 if i + 1 < b else a
            area2[r] += np.int64(corners[i, 0]) * corners[j, 1] - np.int64(corners[j, 0]) * corners[i, 1]
    return corners[:total], starts[: rings + 1], area2, inside[:rings]


@njit(**_OPTIONS)
def _contains(corners: np.ndarray, a: int, b: int, y: float, x: float) -> bool:
    """Whether the point (x, y) lies inside ring corners[a:b] (crossing count; never on an
    edge here: the points are pixel centres, half-way between corners)."""
    inside = False
    for i in range(a, b):
        j = i + 1 if i + 1 < b else a
        yi, yj = corners[i, 1], corners[j, 1]
        if (yi > y) != (yj > y):
            xi, xj = corners[i, 0], corners[j, 0]
            if xi + (y - yi) * (xj - xi) / (yj - yi) > x:
                inside = not inside
    return inside


@njit(**_OPTIONS)
def ring_polygons(corners: np.ndarray, starts: np.ndarray, area2: np.ndarray,
                  inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rings (as `trace_rings` gives them) into polygons: ring numbers `order`, polygon p
    being order[bounds[p]:bounds[p + 1]], its exterior first, then its holes.

    A hole belongs to the smallest exterior around an object pixel next to it: the
    pixel lies in the piece the hole is cut out of, and pieces nest (an island in a
    hole is an exterior of its own, inside a bigger one)."""
    rings = len(area2)
    owner = np.full(rings, -1, np.int64)
    exteriors = 0
    for r in range(rings):
        if area2[r] > 0:
            owner[r] = r
            exteriors += 1
    for r in range(rings):
        if area2[r] > 0:
            continue
        y, x = inside[r, 0] + 0.5, inside[r, 1] + 0.5
        for e in range(rings):
            if area2[e] > 0 and (owner[r] < 0 or area2[e] < area2[owner[r]]) and (
                    exteriors == 1 or _contains(corners, starts[e], starts[e + 1], y, x)):
                owner[r] = e
    order = np.empty(rings, np.int64)
    bounds = np.zeros(exteriors + 1, np.int64)
    n, p = 0, 0
    for e in range(rings):
        if area2[e] <= 0:
            continue
        order[n] = e
        n += 1
        for r in range(rings):
            if area2[r] < 0 and owner[r] == e:
                order[n] = r
                n += 1
        p += 1
        bounds[p] = n
    return order, bounds


def polygons(mask: np.ndarray) -> list[list[np.ndarray]]:
    """The outline of the pixels set in `mask` (2-D) as polygons, each a list of closed rings
    (k + 1, 2) of (x, y) pixel corners in the mask's frame: its exterior, then its holes."""
    corners, starts, area2, inside = trace_rings(np.ascontiguousarray(mask, dtype=np.bool_))
    order, bounds = ring_polygons(corners, starts, area2, inside)
    rings = [np.concatenate([corners[a:b], corners[a:a + 1]]) for a, b in zip(starts[:-1], starts[1:])]
    return [[rings[r] for r in order[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]
