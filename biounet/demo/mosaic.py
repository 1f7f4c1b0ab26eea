"""Build a realistic large slide from fields of view: a mosaic written as a tiled,
pyramidal OME-TIFF with pixel size metadata (and its label mosaic).

Fields are cycled with flips and 180-degree turns so neighbours differ, and
separated by a few pixels of background so that no nucleus cut by a field edge
touches another one (object counts of the mosaic then add up).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

TILE = 256


def _variant(image: np.ndarray, k: int) -> np.ndarray:
    """One of four orientations that keep the field's shape."""
    return [image, image[::-1], image[:, ::-1], image[::-1, ::-1]][k % 4]


def build_mosaic(images: list[np.ndarray], labels: list[np.ndarray] | None, rows: int, cols: int, gap: int = 8) -> tuple[np.ndarray, np.ndarray | None]:
    """Images (and instance labels, ids made unique) tiled rows x cols with `gap` px between fields."""
    fh, fw = images[0].shape
    shape = (rows * (fh + gap) - gap, cols * (fw + gap) - gap)
    background = np.percentile(np.stack(images), 5)
    mosaic = np.full(shape, background, dtype=images[0].dtype)
    out_labels = np.zeros(shape, np.int32) if labels is not None else None
    offset = 0
    for r in range(rows):
        for c in range(cols):
            i = (r * cols + c) % len(images)
            k = (r * cols + c) // len(images)
            y, x = r * (fh + gap), c * (fw + gap)
            mosaic[y : y + fh, x : x + fw] = _variant(images[i], k)
            if labels is not None:
                lab = _variant(labels[i], k).astype(np.int32)
                out_labels[y : y + fh, x : x + fw] = np.where(lab > 0, lab + offset, 0)
                offset += int(lab.max())
    return mosaic, out_labels


def write_pyramidal_ome_tiff(path: Path, image: np.ndarray, pixel_size: float, min_size: int = 256) -> None:
    """Tiled OME-TIFF with 2x-downsampled SubIFD levels down to `min_size` px."""
    levels = [image]
    while max(levels[-1].shape) > 2 * min_size:
        prev = levels[-1].astype(np.float32)
        h, w = (prev.shape[0] // 2) * 2, (prev.shape[1] // 2) * 2
        prev = prev[:h, :w]
        levels.append(((prev[::2, ::2] + prev[1::2, ::2] + prev[::2, 1::2] + prev[1::2, 1::2]) / 4).round().astype(image.dtype))
    with tifffile.TiffWriter(path, bigtiff=image.nbytes > 2**31) as tif:
        tif.write(image, tile=(TILE, TILE), compression="zlib", subifds=len(levels) - 1,
                  metadata={"axes": "YX", "PhysicalSizeX": pixel_size, "PhysicalSizeY": pixel_size,
                            "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"})
        for level in levels[1:]:
            tif.write(level, tile=(TILE, TILE), compression="zlib", subfiletype=1)


def make_mosaic(folder: Path, out: Path, rows: int = 8, cols: int = 8, pixel_size: float = 0.65) -> tuple[Path, Path]:
    """Mosaic of the image/label pairs in `folder`/images and `folder`/labels."""
    names = sorted(p.name for p in (folder / "images").glob("*.tif"))
    images = [tifffile.imread(folder / "images" / n) for n in names]
    labels = [tifffile.imread(folder / "labels" / n) for n in names]
    mosaic, mosaic_labels = build_mosaic(images, labels, rows, cols)
    write_pyramidal_ome_tiff(out, mosaic, pixel_size)
    labels_path = out.with_name(out.name.replace(".ome.tif", "") + "_labels.tif")
    tifffile.imwrite(labels_path, mosaic_labels, tile=(TILE, TILE), compression="zlib")
    return out, labels_path
