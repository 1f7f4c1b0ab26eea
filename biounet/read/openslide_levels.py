"""Slides read through OpenSlide (MRXS, VMS, SVSLIDE, DICOM and other formats tifffile cannot
read): each pyramid level as a (height, width, 3) uint8 array whose regions are read on
demand with `read_region`, never a whole level.

OpenSlide comes from the `wsi` extra (openslide-python and the openslide-bin wheel: no
system library). A level pickles as its path and level and reopens the slide on first
use, so Dask workers in other processes open the file themselves.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

INSTALL = "pip install 'biounet[wsi]'"
ONLY_OPENSLIDE = (".mrxs", ".vms", ".vmu", ".svslide", ".dcm", ".czi")
"""Suffixes of formats only OpenSlide reads (tifffile reads the TIFF-based ones)."""
CHUNK = 512


def _module():
    """The openslide module, or None when it (or its library) is not installed."""
    try:
        import openslide
    except (ImportError, OSError):
        return None
    return openslide


def installed() -> bool:
    return _module() is not None


def detect(path: str | Path) -> str | None:
    """OpenSlide's name for the format of `path` ("mirax", "aperio", ...), or None when it is
    none OpenSlide reads or OpenSlide is not installed."""
    openslide = _module()
    if openslide is None:
        return None
    try:
        return openslide.OpenSlide.detect_format(str(path))
    except openslide.OpenSlideError:
        return None


def errors() -> tuple[type[BaseException], ...]:
    """What OpenSlide raises for a file it cannot open or read."""
    openslide = _module()
    extra = (openslide.OpenSlideError,) if openslide is not None else ()
    return (*extra, OSError, ValueError)


class Slide:
    """An OpenSlide slide opened on first use, once per process (pickles as its path)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._slide = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    @property
    def slide(self):
        with self._lock:
            if self._slide is None:
                self._slide = _module().OpenSlide(self.path)
            return self._slide

    def levels(self) -> list["SlideLevel"]:
        """Every pyramid level, level 0 first."""
        slide = self.slide
        props = slide.properties
        background = _background(props.get("openslide.background-color"))
        out = []
        for i, (w, h) in enumerate(slide.level_dimensions):
            tile = (int(props.get(f"openslide.level[{i}].tile-height", 256)),
                    int(props.get(f"openslide.level[{i}].tile-width", 256)))
            out.append(SlideLevel(self, i, (h, w), float(slide.level_downsamples[i]), tile, background))
        return out


def _background(hex_colour: str | None) -> np.ndarray:
    """The slide's background colour (RGB), white unless it says otherwise."""
    try:
        value = int(str(hex_colour), 16)
    except (TypeError, ValueError):
        value = 0xFFFFFF
    return np.array([(value >> 16) & 255, (value >> 8) & 255, value & 255], np.float32)


class SlideLevel:
    """One level as a (height, width, 3) uint8 array: regions by indexing (slices, ints)."""

    def __init__(self, slide: Slide, level: int, shape: tuple[int, int], downsample: float,
                 tile: tuple[int, int], background: np.ndarray) -> None:
        self.slide, self.level, self.downsample = slide, level, downsample
        self.shape = (*shape, 3)
        self.ndim = 3
        self.dtype = np.dtype(np.uint8)
        # chunks of whole tiles, at least CHUNK px a side: OpenSlide's tiles can be 8 px high
        self.chunks = tuple(min(-(-CHUNK // t) * t, n) for t, n in zip(tile, shape)) + (3,)
        self.background = background

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        ys, xs, cs = key
        yi, xi = np.arange(self.shape[0])[ys], np.arange(self.shape[1])[xs]
        ya, xa = np.atleast_1d(yi), np.atleast_1d(xi)
        if ya.size and xa.size:  # the bounding region, then what the key picks from it
            y0, x0 = int(ya.min()), int(xa.min())
            region = self.region(y0, int(ya.max()) + 1, x0, int(xa.max()) + 1)
            out = region[np.ix_(ya - y0, xa - x0)]
        else:
            out = np.empty((ya.size, xa.size, 3), self.dtype)
        out = out[(0 if np.ndim(yi) == 0 else slice(None), 0 if np.ndim(xi) == 0 else slice(None))]
        return out[..., cs]

    def region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Rows y0:y1 and columns x0:x1 of this level, RGB, transparent pixels (outside the
        scanned areas) on the slide's background colour."""
        # read_region takes the top-left corner in level-0 pixels
        location = (int(round(x0 * self.downsample)), int(round(y0 * self.downsample)))
        rgba = np.asarray(self.slide.slide.read_region(location, self.level, (x1 - x0, y1 - y0)))
        alpha = rgba[..., 3:4]
        if alpha.min() == 255:
            return np.ascontiguousarray(rgba[..., :3])
        a = alpha.astype(np.float32) / 255.0
        return np.rint(rgba[..., :3] * a + self.background * (1.0 - a)).astype(np.uint8)
