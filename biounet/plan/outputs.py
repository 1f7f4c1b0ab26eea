"""Outputs seen from outside: default names, the object table and GeoJSON beside an
output, and an output's root attributes.

No heavy imports (zarr metadata is read as JSON): the CLI checks outputs before
it loads the pipeline, and the napari reader shares it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# Longest first: "slide.ome.tif" is "slide", not "slide.ome".
IMAGE_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr", ".btf", ".tf8", ".tf2",
                  ".svs", ".ndpi")
OUTPUT_SUFFIX = ".ome.zarr"


def stem(path: str | Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES, other: bool = True) -> str:
    """The name of `path` without its image suffix (any case): slide.ome.tif -> slide;
    without any other last suffix too if `other` (slide.png -> slide)."""
    name = Path(path).name
    lower = name.lower()
    for suffix in suffixes:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return (Path(name).stem or name) if other else name


def default_output(input: str | Path, output_dir: str | Path | None = None) -> Path:
    """Output for `input`: slide.tif -> slide.ome.zarr, beside the input or in `output_dir`.

    An input that would be its own output (slide.ome.zarr) gets slide.segmented.ome.zarr.
    """
    input = Path(input)
    folder = Path(output_dir) if output_dir is not None else input.parent
    out = folder / (stem(input) + OUTPUT_SUFFIX)
    if out.resolve() == input.resolve():
        out = folder / (stem(input) + ".segmented" + OUTPUT_SUFFIX)
    return out


def table_path(output: str | Path) -> Path:
    """The per-object CSV next to an output: slide.ome.zarr -> slide.objects.csv."""
    output = Path(output)
    return output.with_name(stem(output, (".ome.zarr", ".zarr"), other=False) + ".objects.csv")


def geojson_path(output: str | os.PathLike) -> Path:
    """The QuPath GeoJSON next to an output: slide.ome.zarr -> slide.geojson."""
    output = Path(output)
    return output.with_name(stem(output, (".ome.zarr", ".zarr"), other=False) + ".geojson")


def group_attributes(group: str | Path) -> dict | None:
    """A zarr group's attributes, read from zarr.json (v3) or .zattrs (v2); None if the
    folder is not a zarr group."""
    group = Path(group)
    try:
        if (group / "zarr.json").is_file():
            meta = json.loads((group / "zarr.json").read_text())
            return meta.get("attributes", {}) if meta.get("node_type") == "group" else None
        if (group / ".zgroup").is_file():
            return json.loads((group / ".zattrs").read_text()) if (group / ".zattrs").is_file() else {}
    except (OSError, ValueError):
        return None
    return None


def output_status(output: str | Path) -> str | None:
    """biounet's status of an existing output ("running", "complete"; "" for a folder or
    file that is no biounet output); None if nothing is there."""
    output = Path(output)
    if not output.exists():
        return None
    info = (group_attributes(output) or {}).get("biounet")
    return str(info.get("status", "")) if isinstance(info, dict) else ""
