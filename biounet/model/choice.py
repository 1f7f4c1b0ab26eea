"""The shipped model `segment` runs when none is named: one for the kind of image.

An RGB brightfield slide (3 channels of 8 bits, light: H&E, say) gets the
H&E nuclei model, anything else the fluorescence nuclei model. Pure functions of what is
known about the image: no heavy imports, nothing read here.
"""

from __future__ import annotations

LIGHT = 0.25
"""A median brightness above this fraction of the pixel type's range is brightfield:
transmitted light. Fluorescence is dark where there is no stain (DSB2018's fluorescence
fields: medians 0.01-0.05), H&E light even where tissue fills the field (MoNuSeg's 30
training tiles, no glass in any: 0.32-0.83; DSB2018's H&E tiles about 0.7)."""
BRIGHTFIELD_FORMATS = ("Aperio SVS", "Hamamatsu", "Leica SCN", "Philips TIFF", "Ventana BIF", "3DHISTECH MRXS",
                       "Sakura SVSLIDE", "Trestle TIFF")
"""Whole-slide scanners' formats (`Image.format` starts with one): brightfield scans."""


def modality(format: str) -> str | None:
    """What an image's format says of its light: "brightfield" for a whole-slide scanner's
    format, None when the format does not say."""
    return "brightfield" if format.startswith(BRIGHTFIELD_FORMATS) else None


def looks_rgb(channels: int, dtype: str) -> bool:
    """Whether the model's input would be 3 channels of 8 bits: colour, as a camera or a
    scanner writes it."""
    return channels == 3 and str(dtype) == "uint8"


def default_model(channels: int, dtype: str, modality: str | None = None, background: float | None = None,
                  picked: bool = False) -> tuple[str, str]:
    """(shipped model name, why) for an image whose model input has `channels` channels of
    `dtype` (`picked`: chosen with --channel from more): `he-nuclei` for RGB brightfield
    (3 x uint8, and a scanner's format or a median brightness `background` above LIGHT, as a
    fraction of the range), else `nuclei`."""
    if looks_rgb(channels, dtype) and (modality == "brightfield" or
                                        (modality is None and background is not None and background > LIGHT)):
        return "he-nuclei", "default for RGB brightfield"
    if channels == 1:
        return "nuclei", "default for one channel picked by --channel" if picked else \
            "default for single-channel fluorescence"
    return "nuclei", "default"
