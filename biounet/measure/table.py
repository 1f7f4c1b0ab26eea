"""The object table: per-object sums added block by block, a CSV, a summary line.

Each block contributes the sums of the objects it holds (`TablePart`, from
label pass 2); objects cut by block faces add up. Memory: a few numbers per
object, never an image.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, fields
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from biounet.measure.intensity import mean_intensity

if TYPE_CHECKING:
    from biounet.label.pass2 import LocalSums


@dataclass
class TablePart:
    """One block's objects: ids (sorted), plane, pixels, sums of rows, columns and
    intensities (exact, as `LocalSums` keeps them), and bounding boxes (n, 4: y0, x0, y1, x1)."""

    ids: np.ndarray
    plane: int
    area: np.ndarray
    sum_y: np.ndarray
    sum_x: np.ndarray
    intensity: np.ndarray
    intensity_high: np.ndarray
    box: np.ndarray

    @classmethod
    def of(cls, sums: LocalSums, plane: int) -> "TablePart":
        """Group a block's local sums by final id (several local ids may be one object)."""
        have = np.flatnonzero(sums.area)
        order = have[np.argsort(sums.final[have], kind="stable")]  # local ids by final id
        final = sums.final[order]
        starts = np.flatnonzero(np.r_[True, final[1:] != final[:-1]]) if len(final) else np.zeros(0, np.int64)

        def add(values: np.ndarray) -> np.ndarray:
            return np.add.reduceat(values[order], starts) if len(starts) else values[:0]

        box = sums.box[order]
        box = np.stack([np.minimum.reduceat(box[:, 0], starts), np.minimum.reduceat(box[:, 1], starts),
                        np.maximum.reduceat(box[:, 2], starts), np.maximum.reduceat(box[:, 3], starts)], 1) \
            if len(starts) else np.zeros((0, 4), np.int64)
        return cls(final[starts].astype(np.int64), plane, add(sums.area), add(sums.sum_y), add(sums.sum_x),
                   add(sums.intensity), add(sums.intensity_high), box)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **{f.name: np.asarray(getattr(self, f.name)) for f in fields(self)})
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "TablePart":
        with np.load(io.BytesIO(data)) as f:
            values = {f_.name: f[f_.name] for f_ in fields(cls)}
        values["plane"] = int(values["plane"])
        return cls(**values)


@dataclass
class ObjectTable:
    """Per-object measurements, index = object id (row 0 unused); intensity sums in
    `intensity_dtype` (biounet.measure.intensity.sum_dtype of the pixels), so exact."""

    area: np.ndarray
    sum_y: np.ndarray
    sum_x: np.ndarray
    y0: np.ndarray
    x0: np.ndarray
    y1: np.ndarray
    x1: np.ndarray
    intensity: np.ndarray
    intensity_high: np.ndarray
    plane: np.ndarray

    @classmethod
    def empty(cls, n: int, intensity_dtype: np.dtype | str = np.float64) -> "ObjectTable":
        big = np.iinfo(np.int64).max
        return cls(
            np.zeros(n + 1, np.int64), np.zeros(n + 1), np.zeros(n + 1),
            np.full(n + 1, big), np.full(n + 1, big), np.full(n + 1, -1), np.full(n + 1, -1),
            np.zeros(n + 1, intensity_dtype), np.zeros(n + 1, np.int64), np.full(n + 1, -1),
        )

    def add(self, part: TablePart | None) -> None:
        """Add one block's part (objects cut by blocks add up)."""
        if part is None or not len(part.ids):
            return
        ids = part.ids
        self.area[ids] += part.area
        self.sum_y[ids] += part.sum_y
        self.sum_x[ids] += part.sum_x
        self.intensity[ids] += part.intensity
        self.intensity_high[ids] += part.intensity_high
        np.minimum.at(self.y0, ids, part.box[:, 0])
        np.minimum.at(self.x0, ids, part.box[:, 1])
        np.maximum.at(self.y1, ids, part.box[:, 2])
        np.maximum.at(self.x1, ids, part.box[:, 3])
        self.plane[ids] = part.plane


def table_of(parts: Iterable[TablePart | None], count: int) -> ObjectTable:
    """The object table of `count` objects from every block's part (in any order)."""
    parts = list(parts)
    table = ObjectTable.empty(count, next((p.intensity.dtype for p in parts if p is not None), np.float64))
    for part in parts:
        table.add(part)
    return table


HEADER = ["id", "plane", "centroid_y", "centroid_x", "area_px", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1",
          "mean_intensity"]


def table_columns(table: ObjectTable, pixel_size: float | None = None) -> tuple[list[str], list[np.ndarray]]:
    """CSV header and columns (one row per object present, by id)."""
    ids = np.flatnonzero(table.area)
    area = table.area[ids]
    header = list(HEADER)
    columns = [ids, table.plane[ids], np.round(table.sum_y[ids] / area, 2), np.round(table.sum_x[ids] / area, 2),
               area, table.y0[ids], table.x0[ids], table.y1[ids], table.x1[ids],
               np.round(mean_intensity(table.intensity[ids], table.intensity_high[ids], area), 3)]
    if pixel_size:
        header.append("area_um2")
        columns.append(np.round(area * pixel_size**2, 3))
    return header, columns


def csv_rows(columns: list[np.ndarray], start: int, stop: int) -> str:
    """Rows start:stop of the table as CSV text (Python's shortest float repr)."""
    out = io.StringIO()
    csv.writer(out).writerows(zip(*(c[start:stop].tolist() for c in columns)))
    return out.getvalue()


def write_table(table: ObjectTable, path: Path, pixel_size: float | None = None, rows_per_batch: int = 8192) -> None:
    """CSV: id, plane, centroid (y, x), area, bounding box, mean intensity (pixels; and µm² if known)."""
    header, columns = table_columns(table, pixel_size)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerow(header)
        for start in range(0, len(columns[0]), rows_per_batch):
            f.write(csv_rows(columns, start, start + rows_per_batch))


def read_table(path: Path, rows_per_batch: int = 65536) -> Iterator[tuple[list[str], np.ndarray]]:
    """The CSV `write_table` wrote, a batch of rows at a time: its header and a (rows, columns)
    float64 array (ids and pixel counts exact up to 2^53), never the whole file in memory."""
    with open(path, newline="") as f:
        header = next(csv.reader([f.readline()]), [])
        while True:
            lines = list(islice(f, rows_per_batch))
            if not lines:
                return
            yield header, np.loadtxt(lines, delimiter=",", ndmin=2, dtype=np.float64)


def summary(table: ObjectTable) -> str:
    """One line: object count and area distribution."""
    areas = table.area[table.area > 0]
    if not areas.size:
        return "0 objects"
    q = np.percentile(areas, [5, 50, 95])
    return (f"{areas.size} objects; area px: median {q[1]:.0f}, 5-95% {q[0]:.0f}-{q[2]:.0f}, "
            f"min {areas.min()}, max {areas.max()}")


def block_part(labels: np.ndarray, image: np.ndarray, y0: int = 0, x0: int = 0, plane: int = 0) -> TablePart | None:
    """The table part of a block of final labels (any label image) and its intensities."""
    from biounet.label.pass2 import relabel_measured

    labels = np.ascontiguousarray(labels, np.int32)
    if not labels.any():
        return None
    identity = np.arange(int(labels.max()) + 1, dtype=np.int32)
    return TablePart.of(relabel_measured(labels, identity, image, y0, x0)[1], plane)
