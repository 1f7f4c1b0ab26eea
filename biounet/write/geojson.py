"""QuPath GeoJSON of a finished output, streamed: every object one detection polygon.

    from biounet.write.geojson import export_geojson
    export_geojson("slide.ome.zarr")                        # writes slide.geojson beside it
    export_geojson("slide.ome.zarr", "slide.geojson.gz", class_name="Nucleus")

A FeatureCollection with one Feature per object of `labels/instances`, in
level-0 pixel coordinates of the slide (a run at `--level L` is scaled up to
level 0), which QuPath 0.4 and later import by drag and drop or File > Import
objects (`.geojson.gz` too). Vertices are pixel corners: rasterised back (pixel
centres inside) a polygon gives exactly its object's pixels; holes are interior
rings, an object in several pieces a MultiPolygon.

It streams: the object table lists objects by id, which is raster order of each
object's first pixel (plane, then row), so table and labels are read together a
strip at a time (one row of label chunks), each chunk decoded once. An object
within one chunk is outlined from that chunk, one crossing a chunk face from the
chunks it touches, and one reaching into the next strip waits for it, keeping
only the rows of this strip it needs (its height times the slide's width). An
object taller than a strip is read on its own. Memory: a few chunks, that band
and one strip's rows of the table, whatever the number of objects; the file is
written under a temporary name and renamed once complete.
"""

from __future__ import annotations

import gzip
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from biounet.plan.outputs import geojson_path, group_attributes, output_status, table_path

SUFFIXES = (".geojson", ".geojson.gz", ".json", ".json.gz")  # what QuPath imports
COLOUR = (255, 64, 64)  # the foreground class's colour in the output's class map (pipeline.stages.CLASS_COLOURS)
TABLE_COLUMNS = ("id", "plane", "centroid_y", "centroid_x", "area_px", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1",
                 "mean_intensity")


class GeoJSONError(ValueError):
    """An output or a destination the export cannot use (a usage error)."""


class GeoJSONDataError(RuntimeError):
    """An output whose table and labels disagree, or a file that could not be written."""


class _Unordered(Exception):
    """The table is not in raster order of the objects (not biounet's numbering)."""


@dataclass
class GeoJSONResult:
    """What an export wrote."""

    path: Path
    objects: int
    bytes: int
    seconds: float


def check_destination(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """A GeoJSON path that can be written: a name QuPath imports, an existing folder that is
    writable, and no existing file unless `overwrite`."""
    path = Path(path)
    if not path.name.lower().endswith(SUFFIXES):
        raise GeoJSONError(f"{path}: name the GeoJSON file .geojson (or .geojson.gz to compress it)")
    if path.is_dir():
        raise GeoJSONError(f"{path} is a folder; name a .geojson file")
    if path.exists() and not overwrite:
        raise GeoJSONError(f"{path} exists; pass --overwrite to replace it")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise GeoJSONError(f"cannot write {path}: folder {parent} does not exist; create it or choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise GeoJSONError(f"cannot write into {parent} (permission denied); choose another path")
    return path


def export_geojson(output: str | os.PathLike, path: str | os.PathLike | None = None, *, class_name: str | None = None,
                   overwrite: bool = False, progress: bool = True) -> GeoJSONResult:
    """Write every object of a complete biounet output as a QuPath detection (see the module).

    `path` defaults to slide.geojson beside slide.ome.zarr (.geojson.gz compresses);
    `class_name` to the model's object name ("Nucleus" for the shipped nuclei model,
    else the model's foreground class). `progress` shows a bar of objects and their
    rate. Raises GeoJSONError for an output that is missing or unfinished and a path
    that cannot be written; nothing is left behind on failure.
    """
    started = time.perf_counter()
    source = Source.open(output, class_name)
    dest = check_destination(path if path is not None else geojson_path(output), overwrite)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        try:
            objects = _write(tmp, source, ordered=True, progress=progress)
        except _Unordered:  # a table numbered otherwise than biounet numbers: sorted in memory
            objects = _write(tmp, source, ordered=False, progress=progress)
        os.replace(tmp, dest)
    except OSError as err:
        raise GeoJSONDataError(f"cannot write {dest}: {err.strerror or err}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return GeoJSONResult(dest, objects, dest.stat().st_size, time.perf_counter() - started)


def _write(tmp: Path, source: "Source", ordered: bool, progress: bool) -> int:
    """Every Feature into `tmp` (gzip-compressed if it is named *.gz.PID.tmp); the number written."""
    from tqdm.auto import tqdm

    compress = [s.lower() for s in tmp.suffixes[-3:-2]] == [".gz"]
    bar = tqdm(total=source.count, unit="obj", unit_scale=True, desc="geojson", disable=not progress, smoothing=0.1)
    written = 0
    try:
        with (gzip.GzipFile(tmp, "wb", compresslevel=6, mtime=0) if compress else open(tmp, "wb")) as f:
            f.write(b'{"type":"FeatureCollection","features":[\n')
            for features in source.features(ordered):
                if features:
                    f.write(((",\n" if written else "") + ",\n".join(features)).encode())
                    written += len(features)
                    bar.update(len(features))
            f.write(b"\n]}\n")
    finally:
        bar.close()
    return written


@dataclass
class Source:
    """A complete output opened for export: its instance labels (level 0), object table,
    the scale to level 0 and the class its objects get."""

    output: Path
    labels: object  # the zarr.Array labels/instances/0
    folder: Path  # where that array's chunks are
    table: Path
    axes: str  # of the labels, e.g. "yx", "zyx" or "tzyx"
    scale: tuple[float, float]  # level-0 pixels per pixel of the labels (y, x)
    class_name: str
    count: int | None  # objects, as the run recorded them (for the progress bar)

    @classmethod
    def open(cls, output: str | os.PathLike, class_name: str | None = None) -> "Source":
        """Check that `output` is a complete biounet output and open it (GeoJSONError if not)."""
        output = Path(output)
        status = output_status(output)
        if status is None:
            raise GeoJSONError(f"output {output} not found; check the path")
        if status == "":
            raise GeoJSONError(f"{output} is not a biounet output (no biounet status in its attributes); pass the "
                               "OME-Zarr that `biounet segment` wrote")
        if status != "complete":
            raise GeoJSONError(f"output {output} is not complete (status {status}): finish it first (rerun the "
                               "segment command that started it), then export")
        table = table_path(output)
        if not table.is_file():
            raise GeoJSONError(f"object table {table} not found beside {output}; `biounet segment` writes it with "
                               "the output (rerun segment with --overwrite to make it again)")
        import zarr  # once the usage errors are answered: they need no zarr

        from biounet.write.runfolder import read_run_record

        try:
            labels = zarr.open_array(str(output), path="labels/instances/0", mode="r")
        except (FileNotFoundError, KeyError, ValueError):
            raise GeoJSONError(f"{output} has no labels/instances/0 array; pass an output of `biounet segment`") from None
        params = (group_attributes(output) or {}).get("biounet", {}).get("params", {})
        return cls(output, labels, output / "labels" / "instances" / "0", table, _label_axes(output, labels.ndim),
                   _level_scale(output, params), class_name or default_class_name(output, params),
                   (read_run_record(output) or {}).get("objects"))

    def features(self, ordered: bool = True) -> Iterator[list[str]]:
        """The Features (lines of JSON), a batch of objects at a time. `ordered`: the table
        is streamed, and _Unordered raised where it is not in raster order."""
        from biounet.write.geojson_text import Features

        lead = tuple(self.labels.shape[:-2])
        plane_of = (lambda p: _qupath_plane(self.axes[:-2], lead, p)) if lead else None
        features = Features(self.class_name, list(COLOUR), plane_of)
        with open(self.table, newline="") as f:
            um2 = f.readline().strip().split(",")[10:11] == ["area_um2"]
        walk = _Walk(self.labels, self.folder, self.scale)
        strips = _by_strip(self.table, walk.rows, walk.strips, walk.strips * int(np.prod(lead, dtype=np.int64)),
                           ordered)
        for key, rows in strips:
            plane, strip = divmod(key, walk.strips)
            for text, offsets, done in walk.strip(plane, strip, rows):
                yield features.lines(text, offsets, done[:, 0].astype(np.int64).tolist(),
                                     _measurements(done, self.scale, um2), [plane] * len(done))


def _measurements(rows: np.ndarray, scale: tuple[float, float], um2: bool) -> dict[str, np.ndarray]:
    """Objects' rows of the table in the GeoJSON's frame: level-0 pixels, pixel (0, 0) being
    the square from (0, 0) to (1, 1), so its centre is (0.5, 0.5)."""
    fy, fx = scale
    out = {"Area px": np.round(rows[:, 4] * fy * fx, 2), "Centroid X px": np.round((rows[:, 3] + 0.5) * fx, 2),
           "Centroid Y px": np.round((rows[:, 2] + 0.5) * fy, 2), "Mean intensity": rows[:, 9]}
    if um2:
        out["Area µm^2"] = rows[:, 10]
    return out


def _by_strip(table: Path, rows_per_strip: int, strips_per_plane: int, strips: int,
              ordered: bool) -> Iterator[tuple[int, np.ndarray]]:
    """(key, rows) for every strip key 0 .. strips - 1 in order, key = plane * strips_per_plane
    + the strip of the object's top row, rows the table's rows of its objects (maybe none).

    `ordered`: streamed, for a table in raster order of the objects (biounet's ids), raising
    _Unordered where a key goes back; otherwise the whole table is read and sorted first."""
    from biounet.measure.table import read_table

    def keyed() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        batches = read_table(table)
        while True:
            try:
                header, rows = next(batches)
            except StopIteration:
                return
            except ValueError as err:
                raise GeoJSONDataError(f"{table} cannot be read as an object table ({err})") from None
            if header[:len(TABLE_COLUMNS)] != list(TABLE_COLUMNS):
                raise GeoJSONDataError(f"{table} is not a biounet object table (its columns: {', '.join(header)})")
            keys = rows[:, 1].astype(np.int64) * strips_per_plane + rows[:, 5].astype(np.int64) // rows_per_strip
            if len(keys) and (keys.min() < 0 or keys.max() >= strips):
                raise GeoJSONDataError(f"{table} has objects outside the labels (plane or row out of range): it "
                                       "does not belong to this output")
            yield keys, rows

    batches = keyed()
    if not ordered:
        everything = list(batches)
        if everything:
            keys = np.concatenate([k for k, _ in everything])
            order = np.argsort(keys, kind="stable")
            batches = iter([(keys[order], np.concatenate([r for _, r in everything])[order])])
    held, key, last, width = [], 0, -1, len(TABLE_COLUMNS)
    for keys, rows in batches:
        width = rows.shape[1]
        if keys[0] < last or np.any(np.diff(keys) < 0):
            raise _Unordered
        last = keys[-1]
        cuts = np.flatnonzero(np.diff(keys)) + 1
        for k, part in zip(keys[np.r_[0, cuts]].tolist(), np.split(rows, cuts)):
            while key < k:
                yield key, np.concatenate(held) if held else np.zeros((0, width))
                held, key = [], key + 1
            held.append(part)
    while key < strips:
        yield key, np.concatenate(held) if held else np.zeros((0, width))
        held, key = [], key + 1


class _Walk:
    """The labels' side of the export: a strip's objects outlined from its chunks, each
    decoded once, and from the band of the strip before (see the module's docstring)."""

    def __init__(self, labels, folder: Path, scale: tuple[float, float]) -> None:
        self.labels, self.folder, self.scale = labels, folder, scale
        self.height, self.width = labels.shape[-2:]
        self.rows, self.cols = labels.chunks[-2:]
        self.strips = -(-self.height // self.rows)
        self.lead = tuple(labels.shape[:-2])
        self.waiting = np.zeros((0, len(TABLE_COLUMNS)))  # objects of the last strip that reach into this one
        self.band, self.band_y0 = np.zeros((0, self.width), np.int32), 0  # the last strip's rows they need

    def strip(self, plane: int, strip: int, rows: np.ndarray) -> Iterator[tuple[str, list[int], np.ndarray]]:
        """Outlines of every object that ends in this strip, and of those beginning in it
        that are taller than a strip: batches of (geometry text, offsets, table rows), each
        as soon as it is made (a strip's text grows with the slide's width)."""
        lead = tuple(int(i) for i in np.unravel_index(plane, self.lead)) if self.lead else ()
        s0, s1 = strip * self.rows, min(self.height, (strip + 1) * self.rows)
        box = rows[:, 5:9].astype(np.int64)
        tall = box[:, 2] - box[:, 0] > self.rows
        wait = ~tall & (box[:, 2] > s1)
        if strip == 0:
            self.waiting = self.waiting[:0]
        now = np.concatenate([self.waiting, rows[~tall & ~wait]]) if len(self.waiting) else rows[~tall & ~wait]
        later = rows[wait]
        now_box, later_box = now[:, 5:9].astype(np.int64), later[:, 5:9].astype(np.int64)
        first, last = now_box[:, 1] // self.cols, (now_box[:, 3] - 1) // self.cols
        band_y0 = int(later_box[:, 0].min()) if len(later) else s1
        band = np.zeros((s1 - band_y0, self.width), np.int32)
        inside = (now_box[:, 0] >= s0) & (first == last)  # within one chunk of this strip
        crossing = np.flatnonzero(~inside)
        crossing = crossing[np.argsort(last[crossing], kind="stable")]
        chunks: dict[int, np.ndarray] = {}
        done = 0  # crossing objects outlined
        for c in _columns(np.concatenate([now_box, later_box]), self.cols).tolist():
            x0 = c * self.cols
            chunks[c] = self._read(lead, s0, s1, x0, min(self.width, x0 + self.cols))
            these = np.flatnonzero(inside & (first == c))
            if len(these):
                local = now_box[these] - [s0, x0, s0, x0]
                yield self._outline(chunks[c], now[these], local, s0, x0)
            while done < len(crossing) and last[crossing[done]] == c:
                i = crossing[done]
                y0, x0_, y1, x1 = now_box[i]
                crop = self._crop(chunks, now_box[i], s0)
                yield self._outline(crop, now[i:i + 1], np.array([[0, 0, y1 - y0, x1 - x0_]]), y0, x0_)
                done += 1
            if len(band):
                band[:, x0:x0 + chunks[c].shape[1]] = chunks[c][band_y0 - s0:]
            keep = min([c + 1] + first[crossing[done:]].tolist())
            for k in [k for k in chunks if k < keep]:
                del chunks[k]
        for i in np.flatnonzero(tall):
            y0, x0, y1, x1 = box[i]
            crop = self._read(lead, y0, y1, x0, x1)
            yield self._outline(crop, rows[i:i + 1], np.array([[0, 0, y1 - y0, x1 - x0]]), y0, x0)
        self.waiting, self.band, self.band_y0 = later, band, band_y0

    def _read(self, lead: tuple, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        from biounet.write.store import read_index

        return np.ascontiguousarray(read_index(self.labels, self.folder, lead + (slice(y0, y1), slice(x0, x1))),
                                    np.int32)

    def _crop(self, chunks: dict[int, np.ndarray], box: np.ndarray, s0: int) -> np.ndarray:
        """An object's box from the band above this strip and this strip's chunks."""
        y0, x0, y1, x1 = (int(v) for v in box)
        crop = np.empty((y1 - y0, x1 - x0), np.int32)
        if y0 < s0:
            crop[: s0 - y0] = self.band[y0 - self.band_y0:, x0:x1]
        for c in range(x0 // self.cols, (x1 - 1) // self.cols + 1):
            a, b = max(x0, c * self.cols), min(x1, (c + 1) * self.cols)
            crop[max(0, s0 - y0):, a - x0:b - x0] = chunks[c][max(y0, s0) - s0:y1 - s0, a - c * self.cols:b - c * self.cols]
        return crop

    def _outline(self, labels: np.ndarray, rows: np.ndarray, boxes: np.ndarray, y0: int,
                 x0: int) -> tuple[str, list[int], np.ndarray]:
        """Geometries of objects (table rows) in boxes of a label image whose pixel (0, 0) is
        slide pixel (y0, x0)."""
        from biounet.write.geojson_text import geometries

        ids = rows[:, 0].astype(np.int32)
        buf, offsets = geometries(labels, ids, np.ascontiguousarray(boxes, np.int64), y0, x0, *self.scale)
        empty = np.flatnonzero(offsets[1:] == offsets[:-1])
        if len(empty):
            raise GeoJSONDataError(f"object {ids[empty[0]]} of the object table has no pixel in labels/instances "
                                   "within its bounding box: table and labels do not belong together")
        return buf.tobytes().decode("ascii"), offsets.tolist(), rows


def _columns(boxes: np.ndarray, width: int) -> np.ndarray:
    """The chunk columns (of `width` pixels) that boxes (y0, x0, y1, x1) reach, sorted."""
    if not len(boxes):
        return np.zeros(0, np.int64)
    first, last = boxes[:, 1] // width, (boxes[:, 3] - 1) // width
    edges = np.zeros(int(last.max()) + 2, np.int64)
    np.add.at(edges, first, 1)
    np.add.at(edges, last + 1, -1)
    return np.flatnonzero(np.cumsum(edges)[:-1] > 0)


def _label_axes(output: Path, ndim: int) -> str:
    """The labels' axes from their NGFF metadata (else the usual ones for their rank)."""
    attrs = group_attributes(output / "labels" / "instances") or {}
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales") or [{}]
    axes = "".join(a.get("name", "") if isinstance(a, dict) else str(a) for a in multiscales[0].get("axes", []))
    return axes if len(axes) == ndim else "tzyx"[-ndim:]


def _qupath_plane(axes: str, shape: tuple[int, ...], plane: int) -> dict[str, int]:
    """QuPath's ImagePlane of plane number `plane` over the t and z axes `axes` of `shape`."""
    index = dict(zip(axes, (int(i) for i in np.unravel_index(plane, shape))))
    return {"c": -1, "z": index.get("z", 0), "t": index.get("t", 0)}


def _level_scale(output: Path, params: dict) -> tuple[float, float]:
    """Level-0 pixels per labels pixel (y, x): 1 unless the run segmented a coarser
    pyramid level, whose size is read from the input."""
    level = int(params.get("level") or 0)
    if not level:
        return 1.0, 1.0
    from biounet.read.image import ImageReadError, ImageUsageError, open_image

    source = params.get("input")
    try:
        image = open_image(source, params.get("axes"))
        (h0, w0), (hl, wl) = image.level_shape(0)[-2:], image.level_shape(level)[-2:]
    except (ImageUsageError, ImageReadError, OSError, IndexError) as err:
        reason = " ".join(str(err).split())
        raise GeoJSONError(f"{output} was segmented at pyramid level {level} of {source}, which cannot be read "
                           f"({reason}): level-0 coordinates need the sizes of its levels; restore the input") from None
    return h0 / hl, w0 / wl


def default_class_name(output: Path, params: dict) -> str:
    """What the objects are called: the shipped model's object ("Nucleus", "Cell") if a
    shipped model made the output, else the model's foreground class (class 1)."""
    from biounet.model.names import OBJECTS, shipped_name

    name = shipped_name(params.get("model_sha256"))
    if name in OBJECTS:
        return OBJECTS[name]
    attrs = group_attributes(Path(output) / "labels" / "classes") or {}
    label = attrs.get("image-label") or attrs.get("ome", {}).get("image-label") or {}
    for entry in label.get("properties", []):
        if entry.get("label-value") == 1 and entry.get("class"):
            return str(entry["class"])
    return "Object"
