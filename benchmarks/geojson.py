"""9. QuPath GeoJSON export, streamed: a GeoJSON of the gigabyte class and the export's peak memory.

The instances are real: BBBC039 label fields (the training split, the fields
of the suite's image mosaics) tiled into a large labels array, numbered in
raster order of each object's first pixel as `segment` numbers them, written
chunk by chunk with biounet's own writer (NGFF 0.4, 1024 px zstd chunks) with
their object table (real intensities of the matching image fields, 0.65 µm
pixels). Never the whole array in memory. Then `biounet export-geojson` runs
as a process on the whole slide and on a quarter of it (half the side): wall
time, objects/s and peak RSS. Streaming means the peak does not grow with the
objects.

    python -m benchmarks --only geojson
    python -m benchmarks.geojson OUT.ome.zarr --size 60000    # just build a labels output
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import tifffile

from benchmarks.common import GIB, Context, Section, Target, biounet_cmd, run_child
from benchmarks.make_slide import DATA, field_index

LABELS = DATA.parent / "labels"
CHUNK = 1024
PIXEL_SIZE = 0.65


def _sources(count: int = 16) -> tuple[list[np.ndarray], list[np.ndarray]]:
    names = sorted(p.name for p in DATA.glob("*.tif"))[:count]
    return ([tifffile.imread(LABELS / n).astype(np.int32) for n in names],
            [tifffile.imread(DATA / n) for n in names])


def _field_ids(labels: list[np.ndarray], size: int) -> tuple[dict, int]:
    """Global ids of every field's labels (field (fy, fx) -> lookup table), numbered by the
    raster position of each object's first pixel in the mosaic; and the object count."""
    fh, fw = labels[0].shape
    firsts: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}
    luts, count = {}, 0
    for fy in range(-(-size // fh)):
        h = min(fh, size - fy * fh)
        found = []  # (row, column, field column, label) of each object of this row of fields
        for fx in range(-(-size // fw)):
            w, src = min(fw, size - fx * fw), field_index(fy, fx, len(labels))
            if (src, h, w) not in firsts:
                ids, first = np.unique(labels[src][:h, :w].reshape(-1), return_index=True)
                firsts[src, h, w] = ids[ids > 0], first[ids > 0]
            ids, first = firsts[src, h, w]
            found.append(np.stack([fy * fh + first // w, fx * fw + first % w, np.full_like(ids, fx), ids], 1))
        found = np.concatenate(found)
        found = found[np.lexsort((found[:, 1], found[:, 0]))]
        numbers = np.arange(count + 1, count + len(found) + 1, dtype=np.int32)
        for fx in range(-(-size // fw)):
            mine = found[:, 2] == fx
            luts[fy, fx] = np.zeros(int(labels[field_index(fy, fx, len(labels))].max()) + 1, np.int32)
            luts[fy, fx][found[mine, 3]] = numbers[mine]
        count += len(found)
    return luts, count


def _mosaic(y0: int, y1: int, x0: int, x1: int, sources: list[np.ndarray], luts: dict | None) -> np.ndarray:
    """Rows y0:y1, columns x0:x1 of the mosaic of `sources` (relabelled through `luts`)."""
    fh, fw = sources[0].shape
    out = np.zeros((y1 - y0, x1 - x0), np.int32 if luts is not None else sources[0].dtype)
    for fy in range(y0 // fh, (y1 - 1) // fh + 1):
        ys = slice(max(y0, fy * fh), min(y1, (fy + 1) * fh))
        for fx in range(x0 // fw, (x1 - 1) // fw + 1):
            xs = slice(max(x0, fx * fw), min(x1, (fx + 1) * fw))
            piece = sources[field_index(fy, fx, len(sources))][ys.start - fy * fh:ys.stop - fy * fh,
                                                                xs.start - fx * fw:xs.stop - fx * fw]
            out[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = piece if luts is None else luts[fy, fx][piece]
    return out


def labels_output(path: Path, size: int) -> int:
    """A complete biounet output (labels/instances and the object table) of a size x size
    mosaic of real label fields, written chunk by chunk; its object count."""
    import zarr

    from biounet.measure.table import ObjectTable, block_part, write_table
    from biounet.plan.outputs import table_path
    from biounet.plan.layout import OutputLayout
    from biounet.write.store import INSTANCES, ArraySpec, OutputStore

    labels, images = _sources()
    luts, count = _field_ids(labels, size)
    layout = OutputLayout("yx", (size, size), CHUNK, {"y": (PIXEL_SIZE, "micrometer"), "x": (PIXEL_SIZE, "micrometer")})
    store = OutputStore(path, layout, [ArraySpec(INSTANCES, "int32")])
    store.create()
    table = ObjectTable.empty(count)
    for b in layout.blocks(0):
        chunk = _mosaic(b.y0, b.y1, b.x0, b.x1, labels, luts)
        store.write(INSTANCES, 0, b, chunk)
        table.add(block_part(chunk, _mosaic(b.y0, b.y1, b.x0, b.x1, images, None), b.y0, b.x0))
    write_table(table, table_path(path), PIXEL_SIZE)
    zarr.open_group(str(path), mode="r+").attrs["biounet"] = {
        "status": "complete", "params": {"level": 0, "input": f"BBBC039 label mosaic {size} x {size}"}}
    return count


def measure(ctx: Context) -> Section:
    size = ctx.sizes["geojson"]
    rows, rss, growth = [], {}, 1.0
    for name, side in (("quarter", size // 2), ("whole", size)):
        out = ctx.output(f"geojson-{side}.ome.zarr")
        objects = labels_output(out, side)
        target = out.with_name(f"geojson-{side}.geojson")
        target.unlink(missing_ok=True)
        samples: list[tuple[int, int]] = []  # (bytes written so far, peak RSS so far)

        def watch(peak: int) -> None:
            written = [p.stat().st_size for p in out.parent.glob(f".{target.name}.*.tmp") if p.exists()]
            samples.append((max(written, default=0), peak))

        run = run_child(biounet_cmd("export-geojson", str(out), "-o", str(target), "--class-name", "Nucleus",
                                    "--no-progress"), watch=watch)
        summary = re.search(r": (\d+) objects, .* in ([\d.]+) s", run.stdout)
        written, seconds = int(summary.group(1)), float(summary.group(2))
        assert written == objects, (written, objects)
        final = target.stat().st_size
        rss[name] = run.peak_rss / GIB
        at_quarter = max((peak for done, peak in samples if done <= final / 4), default=run.peak_rss)
        growth = run.peak_rss / at_quarter
        rows.append([f"{side} x {side}", f"{objects:,}", f"{final / 1e9:.3f} GB", f"{seconds:.1f}",
                     f"{run.seconds:.1f}", f"{objects / seconds:,.0f}", f"{at_quarter / GIB:.3f}", f"{rss[name]:.3f}"])
        target.unlink()
    section = Section("QuPath GeoJSON export (streamed)", "python -m benchmarks --only geojson")
    section.lines += ["Real BBBC039 label fields tiled into one labels array (ids in raster order, as `segment` "
                      "numbers them), written with biounet's writer (NGFF 0.4, 1024 px chunks) with its object "
                      "table; `biounet export-geojson` as a process, one run each: the export's time as it "
                      "reports it, the process's wall time (start-up included), and its peak RSS once a quarter "
                      "of the file was written and at the end.", ""]
    section.table(["slide", "objects", "GeoJSON", "export s", "process s", "objects/s", "peak RSS at 1/4 GiB",
                   "peak RSS GiB"], rows)
    section.targets.append(Target("GeoJSON export peak RSS, end / at 1/4 of the file (whole slide)", f"{growth:.2f}",
                                  "<= 1.1", growth <= 1.1))
    ratio = rss["whole"] / rss["quarter"]
    section.targets.append(Target("GeoJSON export peak RSS, whole / quarter slide", f"{ratio:.2f}", "<= 1.2",
                                  ratio <= 1.2))
    return section


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--size", type=int, default=60000)
    args = p.parse_args(argv)
    print(f"wrote {args.out}: {labels_output(args.out, args.size)} objects")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
