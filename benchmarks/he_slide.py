"""An H&E whole slide made of real tissue on glass, region by region, and its SVS file.

Tissue: real MoNuSeg training tiles (H&E, 40x, 1000 x 1000 px; each cell of the mosaic a
tile, flipped or turned at random) inside a few sections of irregular outline: ellipses
perturbed by smooth and fine noise, thresholded so that `tissue` of the area is tissue. Glass: near white with a faint tint, per-pixel noise and dust specks, as scanners
show it. Every pixel is a function of its position and the seed, so any region can be
made on its own: a slide larger than memory is written tile by tile, and tests make small
ones in memory.

    python -m benchmarks.he_slide slide.svs --size 20480     # an SVS-style pyramidal TIFF
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import tifffile

MONUSEG = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "monuseg" / "train" / "images"
CELL = 1000  # MoNuSeg tiles are 1000 x 1000 px
FIELD = 64  # slide pixels per pixel of the tissue field
GLASS = (236.0, 235.0, 240.0)
DUST_PER_MPX = 3.0  # specks per million pixels of slide


@dataclass
class HESlide:
    """A height x width slide with `tissue` of its area tissue, in `pieces` sections."""

    height: int
    width: int
    tissue: float = 0.5
    pieces: int = 3
    seed: int = 0
    _tiles: list = field(default_factory=list, repr=False)

    @cached_property
    def field(self) -> np.ndarray:
        """The tissue field, one value per FIELD x FIELD px: tissue where it is above `threshold`.
        Each section is an ellipse (random size, shape and angle, centred in the middle half of
        the slide, as sections are laid on a slide) whose edge is made irregular by smooth
        noise, and ragged by fine noise."""
        from scipy import ndimage as ndi

        rng = np.random.default_rng(self.seed)
        h, w = self.height, self.width
        shape = (-(-h // FIELD) + 2, -(-w // FIELD) + 2)
        yy, xx = (np.mgrid[: shape[0], : shape[1]] - 0.5) * FIELD
        out = np.full(shape, -np.inf)
        for _ in range(self.pieces):
            cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
            ry, rx = rng.uniform(0.5, 1.0, 2) * np.array([h, w]) / np.sqrt(self.pieces) / 2
            angle = rng.uniform(0, np.pi)
            u = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
            v = (xx - cx) * np.cos(angle) - (yy - cy) * np.sin(angle)
            out = np.maximum(out, 1 - (u / ry) ** 2 - (v / rx) ** 2)
        smooth = ndi.gaussian_filter(rng.standard_normal(shape), min(h, w) / FIELD / 24, mode="wrap")
        ragged = ndi.gaussian_filter(rng.standard_normal(shape), 1.0, mode="wrap")
        return out + 0.3 * smooth / smooth.std() + 0.06 * ragged / ragged.std()

    @cached_property
    def threshold(self) -> float:
        inner = self.field[1:-1, 1:-1]  # the field pixels over the slide
        return float(np.quantile(inner, 1 - self.tissue))

    @cached_property
    def dust(self) -> np.ndarray:
        """(n, 4): y, x, radius (px) and darkness (0-1) of every speck of dust."""
        rng = np.random.default_rng(self.seed + 1)
        n = rng.poisson(DUST_PER_MPX * self.height * self.width / 1e6)
        return np.stack([rng.uniform(0, self.height, n), rng.uniform(0, self.width, n),
                         rng.uniform(0.6, 1.6, n), rng.uniform(0.2, 0.5, n)], 1)

    def tiles(self) -> list[np.ndarray]:
        if not self._tiles:
            files = sorted(MONUSEG.glob("*.tif"))
            assert files, f"MoNuSeg images expected in {MONUSEG} (see ../shared/data/README.md)"
            self._tiles.extend(tifffile.imread(f) for f in files)
        return self._tiles

    def cell(self, cy: int, cx: int) -> np.ndarray:
        """The tile of mosaic cell (cy, cx): a MoNuSeg tile, flipped and turned by the cell's draw."""
        rng = np.random.default_rng([self.seed, cy, cx])
        tiles = self.tiles()
        tile = tiles[int(rng.integers(len(tiles)))]
        return np.rot90(tile[:, ::-1] if rng.integers(2) else tile, int(rng.integers(4)))

    def tissue_mask(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Where the region is tissue (the field interpolated to pixels)."""
        from scipy import ndimage as ndi

        ys = (np.arange(y0, y1) + 0.5) / FIELD + 0.5
        xs = (np.arange(x0, x1) + 0.5) / FIELD + 0.5
        values = ndi.map_coordinates(self.field, np.stack(np.meshgrid(ys, xs, indexing="ij")), order=1)
        return values > self.threshold

    def region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels [y0:y1, x0:x1] of the slide, (h, w, 3) uint8."""
        h, w = y1 - y0, x1 - x0
        rng = np.random.default_rng([self.seed, 7, y0, x0])
        glass = np.asarray(GLASS) + rng.normal(0.0, 2.0, (h, w, 1)) + rng.normal(0.0, 1.0, (h, w, 3))
        for sy, sx, radius, dark in self.dust:
            ya, yb = max(y0, int(sy) - 2), min(y1, int(sy) + 3)
            xa, xb = max(x0, int(sx) - 2), min(x1, int(sx) + 3)
            if ya < yb and xa < xb:
                yy, xx = np.ogrid[ya:yb, xa:xb]
                inside = (yy + 0.5 - sy) ** 2 + (xx + 0.5 - sx) ** 2 <= radius**2
                glass[ya - y0:yb - y0, xa - x0:xb - x0][inside] *= 1 - dark
        out = np.clip(np.rint(glass), 0, 255).astype(np.uint8)
        mask = self.tissue_mask(y0, y1, x0, x1)
        if mask.any():
            for cy in range(y0 // CELL, (y1 - 1) // CELL + 1):
                for cx in range(x0 // CELL, (x1 - 1) // CELL + 1):
                    ys = slice(max(y0, cy * CELL), min(y1, (cy + 1) * CELL))
                    xs = slice(max(x0, cx * CELL), min(x1, (cx + 1) * CELL))
                    part = mask[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
                    if not part.any():
                        continue
                    tile = self.cell(cy, cx)[ys.start - cy * CELL:ys.stop - cy * CELL,
                                             xs.start - cx * CELL:xs.stop - cx * CELL]
                    view = out[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
                    view[part] = tile[part]
        return out

    def image(self) -> np.ndarray:
        """The whole slide in memory (small slides only)."""
        return self.region(0, self.height, 0, self.width)


def area_down(image: np.ndarray, factor: int) -> np.ndarray:
    """Means of factor x factor pixel blocks (the size floored, as scanners' levels are)."""
    h, w = image.shape[0] // factor, image.shape[1] // factor
    blocks = image[:h * factor, :w * factor].reshape(h, factor, w, factor, -1)
    return blocks.mean(axis=(1, 3)).round().astype(np.uint8)


class Downsampled:
    """`slide` scanned at a lower magnification: each pixel the mean of `factor` x `factor` of
    its pixels (a 20x scan of a 40x slide with `factor` 2)."""

    def __init__(self, slide: HESlide, factor: int):
        self.slide, self.factor = slide, factor
        self.height, self.width = slide.height // factor, slide.width // factor

    def region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        f = self.factor
        return area_down(self.slide.region(y0 * f, y1 * f, x0 * f, x1 * f), f)


def write_svs(path: Path, slide: HESlide | Downsampled, mpp: float = 0.25, mag: int = 40, tile: int = 256,
              levels: int = 3, quality: int = 90) -> Path:
    """An Aperio SVS of `slide`: tiled JPEG level 0 written strip by strip (never whole in
    memory), a thumbnail, then levels of 4x, 16x, ... (`levels` in all), each page with
    Aperio's ImageDescription (`MPP`, `AppMag`)."""
    h, w = slide.height, slide.width
    head = "Aperio Image Library v12.0.15 \r\n"
    meta = f"|AppMag = {mag}|StripeWidth = 2040|ScanScope ID = SS1302|MPP = {mpp:.4f}|ImageID = biounet-bench"
    quarter = []  # level 1 (4x), made while level 0 streams

    def level0():
        for ty in range(0, h, tile):
            strip = slide.region(ty, min(ty + tile, h), 0, w)
            quarter.append(area_down(strip, 4) if strip.shape[0] >= 4 else strip[:0, : w // 4])
            padded = np.zeros((tile, -(-w // tile) * tile, 3), np.uint8)
            padded[: strip.shape[0], :w] = strip
            for tx in range(0, w, tile):
                yield padded[:, tx:tx + tile]

    def description(size: tuple[int, int] | None) -> str:
        down = f" -> {size[1]}x{size[0]}" if size else ""
        return f"{head}{w}x{h} [0,0 {w}x{h}] ({tile}x{tile}){down} JPEG/RGB Q={quality}{meta}"

    options = {"photometric": "rgb", "compression": "jpeg", "compressionargs": {"level": quality}, "metadata": None}
    with tifffile.TiffWriter(path, bigtiff=h * w * 3 > 2**31) as tw:
        tw.write(level0(), shape=(h, w, 3), dtype=np.uint8, tile=(tile, tile), description=description(None),
                 **options)
        pyramid = [np.concatenate(quarter)]
        thumb = area_down(pyramid[0], 8)
        tw.write(thumb, rowsperstrip=16, description=f"{head}{w}x{h} -> {thumb.shape[1]}x{thumb.shape[0]} - {meta}",
                 **options)
        while len(pyramid) < levels - 1:
            pyramid.append(area_down(pyramid[-1], 4))
        for level in pyramid:
            tw.write(level, tile=(tile, tile), description=description(level.shape[:2]), **options)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", type=Path)
    p.add_argument("--size", type=int, default=20480)
    p.add_argument("--tissue", type=float, default=0.5)
    args = p.parse_args(argv)
    write_svs(args.path, HESlide(args.size, args.size, args.tissue))
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
