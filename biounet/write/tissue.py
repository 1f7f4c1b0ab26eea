"""The tissue mask as a labels image of the output, `labels/tissue`: small (one pixel per
`factor` x `factor` slide pixels) and multiscale, placed by its NGFF transforms so that
napari lays it over the image. Values: 1 tissue, 2 its margin predicted for the network's
context, 0 glass (not predicted)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from biounet.plan.layout import MIN_LEVEL_SIZE
from biounet.write import ngff

TISSUE = "labels/tissue"
COLOURS = [[0, 0, 0, 0], [0, 200, 90, 255], [255, 190, 0, 255]]
NAMES = ["glass", "tissue", "context"]
CHUNK = 1024


def levels_of(layer: np.ndarray) -> list[np.ndarray]:
    """The mask and every second pixel of it, again, until a level fits MIN_LEVEL_SIZE."""
    levels = [layer]
    while max(levels[-1].shape) > MIN_LEVEL_SIZE:
        levels.append(levels[-1][::2, ::2])
    return levels


def transforms(pixel_size: dict, factor: int, level: int) -> list[dict]:
    """NGFF transforms of level `level`: each pixel spans factor * 2**level slide pixels, and its
    mask pixel (the mean of factor x factor slide pixels) is centred (factor - 1) / 2 pixels in."""
    scale, shift = [], []
    for axis in "yx":
        base = pixel_size.get(axis, (1.0, ""))[0]
        scale.append(base * factor * 2**level)
        shift.append(base * (factor - 1) / 2)
    out = [{"type": "scale", "scale": scale}]
    if factor > 1:
        out.append({"type": "translation", "translation": shift})
    return out


def write_tissue(root: str | Path, layer: np.ndarray, factor: int, pixel_size: dict, version: str) -> None:
    """Write the mask (uint8, thumbnail grid) with its pyramid and metadata under `labels/tissue`;
    readers list it once `labels` names it (`ngff.write_labels_list`, at the end of a run)."""
    zarr_format = 2 if version == "0.4" else 3
    group = zarr.open_group(str(root), path=TISSUE, mode="a", zarr_format=zarr_format)
    levels = levels_of(layer)
    for i, data in enumerate(levels):
        options: dict = ({"chunk_key_encoding": {"name": "v2", "separator": "/"}} if zarr_format == 2
                         else {"dimension_names": ["y", "x"]})
        array = group.create_array(str(i), shape=data.shape, chunks=tuple(min(CHUNK, n) for n in data.shape),
                                   dtype="uint8", fill_value=0, overwrite=True, **options)
        array[...] = data
    entry = ngff.multiscales("tissue", "yx", pixel_size, [(1, 1)] * len(levels), False, version)
    for i, dataset in enumerate(entry["datasets"]):
        dataset["coordinateTransformations"] = transforms(pixel_size, factor, i)
    label = ngff.image_label(COLOURS, [{"label-value": i, "class": c} for i, c in enumerate(NAMES)], version)
    ngff.write_multiscales(Path(root), TISSUE, entry, version, label)
