"""The whole-slide TIFF variants tifffile knows (Aperio SVS, Hamamatsu NDPI, Leica SCN,
Philips TIFF, Ventana BIF, OME-TIFF): which series is the slide itself (not its
label, macro or thumbnail images), the format's name, and its scale (`ScanInfo`).
"""

from __future__ import annotations

import logging
import re
import threading
from contextlib import contextmanager
from typing import Any, Iterator

import tifffile

from biounet.read import slide_meta
from biounet.read.slide_meta import ScanInfo

FORMAT_NAMES = {"svs": "Aperio SVS", "ndpi": "Hamamatsu NDPI", "scn": "Leica SCN", "philips": "Philips TIFF",
                "bif": "Ventana BIF", "ome": "OME-TIFF"}
_METADATA_ERRORS = (ValueError, TypeError, KeyError, IndexError, UnicodeDecodeError, SyntaxError)  # ParseError is a SyntaxError


class _TiffLog(logging.Filter):
    """tifffile's log messages: kept (not printed) while `kept_log` is active in this thread;
    "BIF series tiles are not stitched" always dropped (biounet reads BIFs whose tiles
    overlap through OpenSlide, which stitches them)."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        kept = getattr(self.local, "kept", None)
        if kept is not None:
            kept.append(message)
            return False
        return "tiles are not stitched" not in message


_LOG = _TiffLog()
logging.getLogger("tifffile").addFilter(_LOG)
BROKEN = ("offset", "corrupt", "truncat")  # words of tifffile's messages about a broken file structure


@contextmanager
def kept_log() -> Iterator[list[str]]:
    """tifffile's log messages in this thread while the context is active, kept in the list
    it yields instead of printed (a truncated file makes tifffile log lost pages and go on)."""
    before = getattr(_LOG.local, "kept", None)
    _LOG.local.kept = kept = []
    try:
        yield kept
    finally:
        _LOG.local.kept = before


def broken_structure(messages: list[str]) -> str | None:
    """The first of tifffile's messages that says the file's structure is broken (an IFD
    offset past the end of a truncated file, ...), or None."""
    found = next((m for m in messages if any(word in m.lower() for word in BROKEN)), None)
    return re.sub(r"^<[^>]*>\s*", "", found) if found else None  # without tifffile's "<TiffPages @8>"


def main_series(tif: tifffile.TiffFile) -> int:
    """Index of the series that is the slide: for Leica SCN the main (not the macro) image
    of the XML, for every other format the first series."""
    if tif.is_scn:
        try:
            image = slide_meta.scn_main_image(tif.scn_metadata or "")
        except _METADATA_ERRORS:
            image = None
        if image is not None:
            for i, series in enumerate(tif.series):
                if series.levels[0].pages and getattr(series.levels[0].pages[0], "index", None) == image["ifd"]:
                    return i
    return 0


def format_name(tif: tifffile.TiffFile, series: Any) -> str:
    """"Aperio SVS", "OME-TIFF", ... "BigTIFF" or "TIFF", by tifffile's series kind."""
    name = FORMAT_NAMES.get(getattr(series, "kind", ""), "")
    if not name:
        name = "OME-TIFF" if tif.is_ome else ("BigTIFF" if tif.is_bigtiff else "TIFF")
    return name


def has_tile_joints(tif: tifffile.TiffFile, series: Any) -> bool:
    """Whether a Ventana BIF's level 0 lists tile joints (EncodeInfo's TileJointInfo): its
    tiles overlap and must be stitched, which OpenSlide does and tifffile does not."""
    if getattr(series, "kind", "") != "bif":
        return False
    xmp = series.levels[0].pages[0].tags.valueof(700)
    text = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else str(xmp or "")
    return "TileJointInfo" in text


def scan_info(tif: tifffile.TiffFile, series: Any) -> ScanInfo:
    """Level 0's pixel size and the objective power, from the format's own metadata, else
    (pixel size only) from the TIFF resolution tags."""
    kind = getattr(series, "kind", "")
    page = series.levels[0].keyframe
    try:
        if kind == "svs":
            info = slide_meta.aperio(tif.pages.first.description)
        elif kind == "ndpi":
            return slide_meta.ndpi(page.tags.valueof(65421), resolution(page))
        elif kind == "scn":
            image = slide_meta.scn_main_image(tif.scn_metadata or "")
            info = slide_meta.scn(image) if image else ScanInfo()
        elif kind == "philips":
            info = slide_meta.philips(tif.philips_metadata or "")
        elif kind == "bif":
            xmp = tif.pages.first.tags.valueof(700)
            info = slide_meta.bif(xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else str(xmp or ""))
        elif tif.is_ome and tif.ome_metadata:
            info = slide_meta.ome(tif.ome_metadata)
        else:
            info = ScanInfo()
    except _METADATA_ERRORS:  # metadata text that does not parse: as if there were none
        info = ScanInfo()
    if info.pixel_size:
        return info
    from_tags = resolution(page)
    if not from_tags:
        return info
    return ScanInfo(from_tags, info.objective_power,
                    "TIFF resolution tags" + (f", {info.source}" if info.source else ""))


def resolution(page: Any) -> dict[str, tuple[float, str]]:
    """A page's pixel size from its XResolution / YResolution / ResolutionUnit tags."""
    tags = page.tags
    unit = tags.valueof("ResolutionUnit")
    return slide_meta.resolution(tags.valueof("XResolution"), tags.valueof("YResolution"),
                                 int(unit) if unit is not None else None)
