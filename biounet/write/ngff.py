"""NGFF (OME-Zarr) metadata: multiscales of the image, labels and probabilities, and the
labels list with colours and class names. Written last, labels list at the very end,
so that napari sees a segmentation only once all of it exists."""

from __future__ import annotations

from pathlib import Path

import zarr

VERSIONS = ("0.4", "0.5")


def scale_transforms(axes: str, pixel_size: dict, factors: list[tuple[int, int]], means: bool = False) -> list[list[dict]]:
    """Coordinate transforms of pyramid levels downsampled by (fy, fx) each.

    A level of `means` (each pixel the mean of f x f pixels below) is centred on
    its pixels, so it is shifted by (f - 1) / 2 pixels of level 0; a level that
    takes every f-th pixel is not.
    """
    out = []
    for fy, fx in factors:
        scale, shift = [], []
        for a in axes:
            base = pixel_size.get(a, (1.0, ""))[0] if a in "zyx" else 1.0
            f = {"y": fy, "x": fx}.get(a, 1)
            scale.append(base * f)
            shift.append(base * (f - 1) / 2)
        transform = [{"type": "scale", "scale": scale}]
        if means and any(shift):
            transform.append({"type": "translation", "translation": shift})
        out.append(transform)
    return out


def axes_meta(axes: str, pixel_size: dict) -> list[dict]:
    types = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
    meta = []
    for a in axes:
        entry = {"name": a, "type": types[a]}
        unit = pixel_size.get(a, (None, ""))[1]
        if a in "zyx" and unit:
            entry["unit"] = unit
        meta.append(entry)
    return meta


def multiscales(name: str, axes: str, pixel_size: dict, factors: list[tuple[int, int]], means: bool,
                ngff: str) -> dict:
    """One multiscales entry: level paths "0", "1", ... with their transforms."""
    datasets = [{"path": str(i), "coordinateTransformations": t}
                for i, t in enumerate(scale_transforms(axes, pixel_size, factors, means))]
    entry = {"datasets": datasets, "name": name, "axes": axes_meta(axes, pixel_size)}
    if ngff == "0.4":
        entry["version"] = "0.4"
    return entry


def _ome(ngff: str, attrs: dict) -> dict:
    """Attributes in the version's place: top level for 0.4, under "ome" for 0.5."""
    return attrs if ngff == "0.4" else {"ome": {"version": ngff, **attrs}}


def write_multiscales(root: Path, group_path: str, entry: dict, ngff: str, extra: dict | None = None) -> None:
    """A group's multiscales (and e.g. its image-label) attributes, keeping the others."""
    group = zarr.open_group(str(root), path=group_path, mode="r+")
    group.attrs.update(_ome(ngff, {"multiscales": [entry], **(extra or {})}))


def image_label(colours: list[list[int]] | None, properties: list[dict] | None, ngff: str) -> dict:
    """The image-label attributes of a labels image: colours and per-value properties."""
    meta: dict = {}
    if colours:
        meta["colors"] = [{"label-value": i, "rgba": list(c)} for i, c in enumerate(colours)]
    if properties:
        meta["properties"] = properties
    meta["version"] = ngff
    return {"image-label": meta}


RGB_COLOURS = ("FF0000", "00FF00", "0000FF")  # omero colours of a colour image's red, green, blue


def omero_rgb(ngff: str) -> dict:
    """omero rendering metadata of an 8-bit colour image (c = red, green, blue): viewers show
    it in its colours (napari: one RGB layer in biounet's reader, three additive channels in
    napari-ome-zarr's)."""
    channels = [{"label": name, "color": colour, "active": True, "coefficient": 1.0, "family": "linear",
                 "inverted": False, "window": {"min": 0, "max": 255, "start": 0, "end": 255}}
                for name, colour in zip(("red", "green", "blue"), RGB_COLOURS)]
    return {"omero": {"channels": channels, "rdefs": {"model": "color"}, "version": ngff}}


def write_labels_list(root: Path, names: list[str], ngff: str) -> None:
    """The `labels` group's list of label images: what makes readers show them."""
    group = zarr.open_group(str(root), path="labels", mode="r+")
    if ngff == "0.4":
        group.attrs.update({"labels": names})
    else:
        group.attrs.update({"ome": {"labels": names, "version": ngff}})
