"""Pixel size and objective power from the metadata text of whole-slide formats.

Pure functions of the text (or tag values) each format stores, so each is
tested directly: Aperio's ImageDescription, NDPI's tags, Leica SCN XML, Philips
XML, Ventana BIF XMP, TIFF resolution tags, OME-XML and OpenSlide's
properties. Each returns a `ScanInfo`; a value that is missing or makes no
sense (zero, negative, not a number) is left out rather than guessed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from xml.etree import ElementTree

UM = "micrometer"
PER_UNIT_UM = {2: 25400.0, 3: 10000.0}  # TIFF ResolutionUnit inch, centimetre -> micrometres


@dataclass(frozen=True)
class ScanInfo:
    """What a slide's metadata says about its scale.

    pixel_size: {"y": (size, unit), "x": (size, unit), ...} of level 0, where known.
    objective_power: the scanner's objective magnification (40.0 for a 40x scan), or None.
    source: where they were read, e.g. "Aperio ImageDescription (MPP, AppMag)"; "" if nowhere.
    """

    pixel_size: dict[str, tuple[float, str]] = field(default_factory=dict)
    objective_power: float | None = None
    source: str = ""


def _positive(value: Any) -> float | None:
    """`value` as a positive finite float, else None."""
    try:
        number = float(str(value).strip().strip('"'))
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _square(um: float | None) -> dict[str, tuple[float, str]]:
    return {"y": (um, UM), "x": (um, UM)} if um else {}


def aperio(description: str) -> ScanInfo:
    """Aperio SVS: `MPP = 0.2520` (um/px) and `AppMag = 40` in level 0's ImageDescription,
    fields separated by `|`."""
    fields = {}
    for item in description.split("|")[1:]:
        key, sep, value = item.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    mpp, mag = _positive(fields.get("MPP")), _positive(fields.get("AppMag"))
    used = [name for name, v in (("MPP", mpp), ("AppMag", mag)) if v]
    return ScanInfo(_square(mpp), mag, f"Aperio ImageDescription ({', '.join(used)})" if used else "")


def resolution(x: tuple[int, int] | None, y: tuple[int, int] | None, unit: int | None) -> dict[str, tuple[float, str]]:
    """Pixel size from TIFF XResolution / YResolution (pixels per unit, as rationals) and
    ResolutionUnit (2 inch, 3 centimetre); {} without a unit, or for tifffile's default of
    1 pixel per unit, which says nothing."""
    factor = PER_UNIT_UM.get(int(unit)) if unit is not None else None
    if not factor:
        return {}
    out = {}
    for axis, value in (("y", y), ("x", x)):
        if value and value[0] and value[1]:
            size = factor * value[1] / value[0]
            if size > 0 and abs(size - factor) > 1e-9:
                out[axis] = (size, UM)
    return out


def ndpi(magnification: Any, pixel_size: dict[str, tuple[float, str]]) -> ScanInfo:
    """Hamamatsu NDPI: the source lens (tag 65421, e.g. 40.0) and the resolution tags."""
    mag = _positive(magnification)
    used = [name for name, v in (("resolution", pixel_size), ("Magnification", mag)) if v]
    return ScanInfo(pixel_size, mag, f"NDPI tags ({', '.join(used)})" if used else "")


def philips(xml: str) -> ScanInfo:
    """Philips TIFF: DICOM_PIXEL_SPACING of the first pixel-data representation of the WSI
    image (else of the WSI image itself), in mm, rows then columns, values quoted; the
    objective from DICOM_DERIVATION_DESCRIPTION's `levels=`, as OpenSlide reads it (a first
    entry up to 200; scanners often store other numbers there, then there is none)."""
    root = ElementTree.fromstring(xml)
    wsi = next((obj for obj in root.iter("DataObject") if obj.get("ObjectType") == "DPScannedImage"
                and _attribute(obj, "PIM_DP_IMAGE_TYPE") == "WSI"), root)
    spacing = next((_attribute(rep, "DICOM_PIXEL_SPACING") for rep in wsi.iter("DataObject")
                    if rep.get("ObjectType") == "PixelDataRepresentation"), None)
    spacing = spacing or _attribute(wsi, "DICOM_PIXEL_SPACING")
    pixel_size = {}
    values = (spacing or "").replace('"', " ").split()
    if len(values) == 2:
        y, x = (_positive(v) for v in values)
        if x and y:
            pixel_size = {"y": (y * 1000.0, UM), "x": (x * 1000.0, UM)}
    mag = None
    match = re.search(r"(?:^|-)levels=(\d+)", _attribute(wsi, "DICOM_DERIVATION_DESCRIPTION") or "")
    if match and 0 < int(match.group(1)) <= 200:
        mag = float(match.group(1))
    used = [name for name, v in (("DICOM_PIXEL_SPACING", pixel_size), ("DICOM_DERIVATION_DESCRIPTION", mag)) if v]
    return ScanInfo(pixel_size, mag, f"Philips XML ({', '.join(used)})" if used else "")


def _attribute(obj: ElementTree.Element, name: str) -> str | None:
    """The text of a Philips DataObject's own Attribute `name` (not its descendants')."""
    for child in obj:
        if child.tag == "Attribute" and child.get("Name") == name:
            return (child.text or "").strip()
    return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def scn_images(xml: str) -> list[dict]:
    """The images of a Leica SCN collection, in order: name, level-0 IFD, level-0 width and
    height (px), view width and height (nm), objective, illumination, and whether it is the
    macro image (its view is the whole collection at offset 0, OpenSlide's rule)."""
    root = ElementTree.fromstring(xml)
    collection = next((c for c in root if _local(c.tag) == "collection"), None)
    if collection is None:
        return []
    size = (collection.get("sizeX"), collection.get("sizeY"))
    images = []
    for image in collection:
        if _local(image.tag) != "image":
            continue
        parts = {_local(c.tag): c for c in image}
        view, pixels = parts.get("view"), parts.get("pixels")
        dims = [d for d in (pixels if pixels is not None else []) if _local(d.tag) == "dimension"
                and d.get("z", "0") == "0" and d.get("c", "0") == "0"]
        if view is None or not dims:
            continue
        first = min(dims, key=lambda d: int(d.get("r", 0)))
        text = {_local(e.tag): (e.text or "").strip() for e in image.iter()}
        images.append({
            "name": image.get("name", ""), "ifd": int(first.get("ifd", -1)),
            "width": int(first.get("sizeX", 0)), "height": int(first.get("sizeY", 0)),
            "view_width_nm": _positive(view.get("sizeX")), "view_height_nm": _positive(view.get("sizeY")),
            "objective": _positive(text.get("objective")), "illumination": text.get("illuminationSource", ""),
            "macro": (view.get("offsetX") == "0" and view.get("offsetY") == "0"
                      and (view.get("sizeX"), view.get("sizeY")) == size),
        })
    return images


def scn_main_image(xml: str) -> dict | None:
    """The main image of a Leica SCN slide: the first brightfield image that is not the
    macro (else the first that is not the macro); None if there is none."""
    images = [i for i in scn_images(xml) if not i["macro"]]
    return next((i for i in images if i["illumination"] == "brightfield"), images[0] if images else None)


def scn(image: dict) -> ScanInfo:
    """Leica SCN: the pixel size of an image of `scn_images` (its view in nm over its
    level-0 size in px) and its objective."""
    pixel_size = {}
    if image["width"] and image["height"] and image["view_width_nm"] and image["view_height_nm"]:
        pixel_size = {"y": (image["view_height_nm"] / image["height"] / 1000.0, UM),
                      "x": (image["view_width_nm"] / image["width"] / 1000.0, UM)}
    mag = image["objective"]
    used = [name for name, v in (("view size", pixel_size), ("objective", mag)) if v]
    return ScanInfo(pixel_size, mag, f"Leica SCN XML ({', '.join(used)})" if used else "")


def bif(xmp: str) -> ScanInfo:
    """Ventana BIF: the iScan element of the first IFD's XMP (root or under Metadata):
    ScanRes (um/px) and Magnification."""
    root = ElementTree.fromstring(xmp)
    iscan = root if _local(root.tag) == "iScan" else next((e for e in root.iter() if _local(e.tag) == "iScan"), None)
    if iscan is None:
        return ScanInfo()
    mpp, mag = _positive(iscan.get("ScanRes")), _positive(iscan.get("Magnification"))
    used = [name for name, v in (("ScanRes", mpp), ("Magnification", mag)) if v]
    return ScanInfo(_square(mpp), mag, f"Ventana XMP ({', '.join(used)})" if used else "")


def ome(xml: str) -> ScanInfo:
    """OME-XML: the first image's PhysicalSizeX/Y/Z with their units, and the nominal
    magnification of the objective it names (or of the instrument's only objective)."""
    root = ElementTree.fromstring(xml)
    image = next((e for e in root if _local(e.tag) == "Image"), None)
    pixels = next((e for e in image if _local(e.tag) == "Pixels"), None) if image is not None else None
    pixel_size = {}
    for axis in "xyz":
        size = _positive(pixels.get(f"PhysicalSize{axis.upper()}")) if pixels is not None else None
        if size:
            pixel_size[axis] = (size, unit_name(pixels.get(f"PhysicalSize{axis.upper()}Unit", "µm")))
    ref = next((e.get("ID") for e in image if _local(e.tag) == "ObjectiveSettings"), None) if image is not None else None
    objectives = [e for e in root.iter() if _local(e.tag) == "Objective"]
    chosen = [e for e in objectives if e.get("ID") == ref] if ref else objectives[:1] if len(objectives) == 1 else []
    mag = _positive(chosen[0].get("NominalMagnification")) if chosen else None
    used = [name for name, v in (("PhysicalSize", pixel_size), ("NominalMagnification", mag)) if v]
    return ScanInfo(pixel_size, mag, f"OME-XML ({', '.join(used)})" if used else "")


def unit_name(unit: str) -> str:
    """An OME / NGFF length unit's NGFF name."""
    return {"µm": UM, "um": UM, "nm": "nanometer", "mm": "millimeter"}.get(unit, unit)


def openslide(properties: Mapping[str, str]) -> ScanInfo:
    """OpenSlide's standard properties: openslide.mpp-x / mpp-y (um/px) and
    openslide.objective-power."""
    x, y = _positive(properties.get("openslide.mpp-x")), _positive(properties.get("openslide.mpp-y"))
    mag = _positive(properties.get("openslide.objective-power"))
    pixel_size = {a: (v, UM) for a, v in (("y", y), ("x", x)) if v}
    used = [name for name, v in (("mpp", pixel_size), ("objective-power", mag)) if v]
    vendor = properties.get("openslide.vendor", "")
    return ScanInfo(pixel_size, mag, f"OpenSlide properties ({', '.join(([vendor] if vendor else []) + used)})"
                    if used else "")
