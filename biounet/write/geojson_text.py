"""GeoJSON text of objects: each object's outline (from its pixels) and its QuPath properties.

Geometries are written by compiled code straight from a label image, many objects
per call (`geometries`): tracing and number formatting in Python would cost
about 100 µs an object, a million objects' worth of minutes. Properties follow
what QuPath 0.4 and later read and write: `objectType`, `name`,
`classification` {name, color [r, g, b]} and `measurements` as a JSON object of
name -> number (QuPath's own export; it also reads the older list form).
"""

from __future__ import annotations

import json

import numpy as np
from numba import njit

from biounet.measure.outline import ring_polygons, trace_rings

_OPTIONS = {"cache": True, "nogil": True}
_POLYGON = np.frombuffer(b'{"type":"Polygon","coordinates":', np.uint8)
_MULTIPOLYGON = np.frombuffer(b'{"type":"MultiPolygon","coordinates":', np.uint8)
DECIMALS = 3  # coordinates that are not whole pixels (a slide segmented at a coarser level)


@njit(**_OPTIONS)
def _put_text(buf: np.ndarray, pos: int, text: np.ndarray) -> int:
    buf[pos:pos + len(text)] = text
    return pos + len(text)


@njit(**_OPTIONS)
def _put_int(buf: np.ndarray, pos: int, value: int) -> int:
    if value < 0:
        buf[pos] = 45  # -
        pos += 1
        value = -value
    digits, rest = 1, value
    while rest >= 10:
        rest //= 10
        digits += 1
    for i in range(digits - 1, -1, -1):
        buf[pos + i] = 48 + value % 10
        value //= 10
    return pos + digits


@njit(**_OPTIONS)
def _put_coordinate(buf: np.ndarray, pos: int, corner: int, scale: float, decimals: int) -> int:
    """corner * scale: an integer if the scale is whole, else rounded to `decimals`, trailing zeros dropped."""
    if scale == np.floor(scale):
        return _put_int(buf, pos, corner * np.int64(scale))
    unit = 10**decimals
    fixed = np.int64(np.round(corner * scale * unit))
    if fixed < 0:
        buf[pos] = 45
        pos += 1
        fixed = -fixed
    pos = _put_int(buf, pos, fixed // unit)
    fraction = fixed % unit
    if fraction:
        buf[pos] = 46  # .
        pos += 1
        while fraction % 10 == 0:
            fraction //= 10
            decimals -= 1
        for i in range(decimals - 1, -1, -1):
            buf[pos + i] = 48 + fraction % 10
            fraction //= 10
        pos += decimals
    return pos


@njit(**_OPTIONS)
def _put_ring(buf: np.ndarray, pos: int, corners: np.ndarray, a: int, b: int, y0: int, x0: int, fy: float,
              fx: float, decimals: int) -> int:
    """[[x, y], ...] of ring corners[a:b], closed, shifted by (y0, x0) and scaled."""
    buf[pos] = 91  # [
    pos += 1
    for k in range(a, b + 1):
        i = k if k < b else a
        buf[pos] = 91
        pos = _put_coordinate(buf, pos + 1, x0 + corners[i, 0], fx, decimals)
        buf[pos] = 44  # ,
        pos = _put_coordinate(buf, pos + 1, y0 + corners[i, 1], fy, decimals)
        buf[pos] = 93  # ]
        buf[pos + 1] = 44
        pos += 2
    buf[pos - 1] = 93
    return pos


@njit(**_OPTIONS)
def _put_polygon(buf: np.ndarray, pos: int, corners: np.ndarray, starts: np.ndarray, order: np.ndarray, a: int,
                 b: int, y0: int, x0: int, fy: float, fx: float, decimals: int) -> int:
    buf[pos] = 91
    pos += 1
    for k in range(a, b):
        r = order[k]
        pos = _put_ring(buf, pos, corners, starts[r], starts[r + 1], y0, x0, fy, fx, decimals)
        buf[pos] = 44
        pos += 1
    buf[pos - 1] = 93
    return pos


@njit(**_OPTIONS)
def geometries(labels: np.ndarray, ids: np.ndarray, boxes: np.ndarray, origin_y: int, origin_x: int, fy: float,
               fx: float, decimals: int = DECIMALS) -> tuple[np.ndarray, np.ndarray]:
    """GeoJSON geometry text of objects of a 2-D label image, in one buffer.

    Object i is the pixels equal to ids[i] inside boxes[i] (y0, x0, y1, x1, in
    `labels`); its vertices are pixel corners of the slide ((origin + corner) * f:
    `labels[0, 0]` is slide pixel (origin_y, origin_x) and f scales to level 0). Its
    text is buf[offsets[i]:offsets[i + 1]]: a Polygon, or a MultiPolygon for an object
    in several pieces; empty if the box holds none of its pixels.
    """
    n = len(ids)
    offsets = np.zeros(n + 1, np.int64)
    buf = np.empty(max(4096, 1024 * n), np.uint8)
    pos = 0
    for i in range(n):
        y0, x0, y1, x1 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        corners, starts, area2, inside = trace_rings(labels[y0:y1, x0:x1] == ids[i])
        if len(area2):
            order, bounds = ring_polygons(corners, starts, area2, inside)
            # [x,y], at most 2 x (20 digits, a sign and a point) + 4 per corner, plus brackets
            need = 64 + 52 * (len(corners) + len(area2)) + 4 * len(bounds)
            if pos + need > len(buf):
                grown = np.empty(max(2 * len(buf), pos + need), np.uint8)
                grown[:pos] = buf[:pos]
                buf = grown
            pos = _put_text(buf, pos, _POLYGON if len(bounds) == 2 else _MULTIPOLYGON)
            oy, ox = origin_y + y0, origin_x + x0
            if len(bounds) == 2:
                pos = _put_polygon(buf, pos, corners, starts, order, 0, len(order), oy, ox, fy, fx, decimals)
            else:
                buf[pos] = 91
                pos += 1
                for p in range(len(bounds) - 1):
                    pos = _put_polygon(buf, pos, corners, starts, order, bounds[p], bounds[p + 1], oy, ox, fy, fx,
                                       decimals)
                    buf[pos] = 44
                    pos += 1
                buf[pos - 1] = 93
            buf[pos] = 125  # }
            pos += 1
        offsets[i + 1] = pos
    return buf[:pos], offsets


def json_numbers(values: np.ndarray) -> list[str | None]:
    """Numbers as JSON: whole ones without a point, others as Python's shortest repr, None
    for NaN and infinities (which JSON cannot hold)."""
    finite = np.isfinite(values)
    whole = (finite & (values == np.trunc(np.where(finite, values, 0))) & (np.abs(values) < 2**53)).tolist()
    return [str(int(v)) if w else repr(v) if f else None for v, w, f in zip(values.tolist(), whole, finite.tolist())]


class Features:
    """QuPath detections from outlines and measurements: `properties` with the object type,
    the name (the instance id), the class and the measurements; on a z-stack or time
    series the geometry's QuPath plane."""

    def __init__(self, class_name: str, colour: list[int], plane_of=None) -> None:
        self.classification = json.dumps({"name": class_name, "color": list(colour)}, ensure_ascii=False)
        self.plane_of = plane_of  # plane number -> QuPath's {"c": -1, "z": .., "t": ..}

    def lines(self, geometry: str, offsets: list[int], ids: list[int], measurements: dict[str, np.ndarray],
              planes: list[int]) -> list[str]:
        """One Feature (a line of JSON) per object: its geometry is geometry[offsets[k]:offsets[k + 1]]."""
        columns = [[None if v is None else f'"{name}":{v}' for v in json_numbers(values)]
                   for name, values in measurements.items()]
        out = []
        for k, i in enumerate(ids):
            shape = geometry[offsets[k]:offsets[k + 1]]
            if self.plane_of is not None:
                shape = shape[:-1] + ',"plane":' + json.dumps(self.plane_of(planes[k])) + "}"
            values = ",".join([c[k] for c in columns if c[k] is not None])
            out.append(f'{{"type":"Feature","id":{i},"geometry":{shape},"properties":{{"objectType":"detection",'
                       f'"name":"{i}","classification":{self.classification},"measurements":{{{values}}}}}}}')
        return out
