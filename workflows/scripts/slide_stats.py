"""Per-slide numbers for the workflow's summary, read from a biounet OME-Zarr.

Run by the Snakefile's `stats` rule (the `snakemake` object gives paths), or by
hand: python slide_stats.py OUT.ome.zarr HISTORY.jsonl STATS.json [SLIDE]

- objects: the number of distinct nonzero ids of `labels/instances/0`, when
  the output has an instance layer; empty otherwise.
- foreground_pixels: nonzero pixels of the class map `labels/classes/0`.
- count_from: which labels layer `objects` came from (instances) or "classes".
- seconds: wall time of the segment runs (the history file segment_slide.py
  keeps; a resumed slide adds up its runs, a run that only checked a finished
  output counts nothing).
Counting streams over the zarr chunks with Dask, so a slide never has to fit
in memory.
"""

import json
import sys
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import zarr


def _array(root: zarr.Group, path: str):
    try:
        node = root[path]
    except KeyError:
        return None
    return node if isinstance(node, zarr.Array) else None


def labels_counts(zarr_path: Path) -> dict:
    root = zarr.open_group(str(zarr_path), mode="r")
    classes = _array(root, "labels/classes/0")
    if classes is None:
        raise SystemExit(f"{zarr_path} has no labels/classes/0: not a finished biounet output")
    out = {
        "shape": "x".join(map(str, classes.shape)),
        "foreground_pixels": int(da.count_nonzero(da.from_zarr(classes)).compute()),
        "objects": None,
        "count_from": "classes",
    }
    instances = _array(root, "labels/instances/0")
    if instances is not None:
        ids = da.unique(da.from_zarr(instances)).compute()
        out["objects"] = int(np.count_nonzero(ids))
        out["count_from"] = "instances"
    attrs = root.attrs.get("biounet", {})
    out["status"] = attrs.get("status")
    from biounet.write.runfolder import read_run_record

    record = read_run_record(zarr_path)
    if record is not None:
        out["blocks"] = record.get("blocks")
    multiscales = root["labels/classes"].attrs.get("multiscales") or root["labels/classes"].attrs.get(
        "ome", {}).get("multiscales")
    if multiscales:
        out["axes"] = "".join(a["name"] for a in multiscales[0]["axes"])
    return out


def wall_seconds(history: Path) -> float | None:
    if not history.is_file():
        return None
    runs = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
    return round(sum(r["seconds"] for r in runs if r.get("kind") == "segment"), 2)


def slide_stats(zarr_path: Path, history: Path, slide: str | None = None) -> dict:
    with dask.config.set(scheduler="threads"):
        counts = labels_counts(zarr_path)
    name = zarr_path.name.removesuffix(".ome.zarr")
    return {"slide": name, "input": str(slide) if slide else None, "output": str(zarr_path),
            **counts, "seconds": wall_seconds(history)}


def main() -> None:
    if "snakemake" in globals():
        sm = globals()["snakemake"]
        stats = slide_stats(Path(sm.params.zarr), Path(sm.params.history), sm.params.slide)
        out = Path(sm.output[0])
    else:
        if len(sys.argv) not in (4, 5):
            raise SystemExit(__doc__)
        stats = slide_stats(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[4] if len(sys.argv) == 5 else None)
        out = Path(sys.argv[3])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(stats, indent=1) + "\n")


main()
