"""napari reader: a biounet output (or any OME-Zarr image with NGFF labels) as layers.

- the image as a multiscale image layer (one per channel), contrast limits from
  percentiles of the lowest pyramid level;
- every labels image (biounet: `classes`, `instances`) as a visible multiscale
  labels layer named after it, coloured from its `image-label` colours, or with
  bright colours that stay visible on a dark image; class names (`image-label`
  properties) and, for `instances`, the object table beside the output
  (slide.ome.zarr -> slide.objects.csv) as layer features, shown on hover;
- biounet's `probabilities` image, if present, as hidden image layers.

Scale, translation, units and axis names come from the NGFF multiscales
metadata. Arrays are opened lazily (zarr + dask): only the lowest level of the
image is read, for contrast limits. Metadata is read from the JSON documents
directly (`.zattrs` for NGFF 0.4 / zarr v2, `zarr.json` for 0.5 / zarr v3), so
nothing lists the store's members.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

LayerData = tuple[Any, dict, str]

# Bright, saturated colours for instance ids (label 0 transparent): every one is
# well visible on a dark fluorescence image (HSV value 1, saturation 0.55-1).
INSTANCE_COLOURS = 61  # a prime, so neighbouring ids rarely share a colour
CONTRAST_PERCENTILES = (0.5, 99.8)
CONTRAST_PLANES = 16  # planes (t, z) of the lowest level read for contrast limits, at most


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """npe2 reader hook: a function reading `path` if it is an OME-Zarr image or has NGFF labels."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    root = Path(os.fspath(path))
    ome = _ome(root)
    if ome is None:
        return None
    if "multiscales" not in ome and not _label_names(root):
        return None
    return read


def read(path: str | list[str]) -> list[LayerData]:
    """Layer data of an output: image, probabilities (hidden), then each labels image."""
    if isinstance(path, (list, tuple)):
        path = path[0]
    root = Path(os.fspath(path))
    layers: list[LayerData] = []
    ome = _ome(root) or {}
    if "multiscales" in ome:
        layers.append(image_layer(root, ome, name=_display_name(root)))
    probabilities = _ome(root / "probabilities")
    if probabilities and "multiscales" in probabilities:
        layers.append(probabilities_layer(root, probabilities))
    for name in _label_names(root):
        label_ome = _ome(root / "labels" / name)
        if label_ome and "multiscales" in label_ome:
            layers.append(labels_layer(root, name, label_ome))
    return layers


def _display_name(root: Path) -> str:
    from biounet.plan.outputs import stem

    return stem(root, (".ome.zarr", ".zarr"), other=False)


# --- metadata ----------------------------------------------------------------


def _ome(group: Path) -> dict | None:
    """The NGFF metadata of a group (under "ome" in 0.5, top level in 0.4)."""
    from biounet.plan.outputs import group_attributes

    attrs = group_attributes(group)
    if attrs is None:
        return None
    return attrs["ome"] if isinstance(attrs.get("ome"), dict) else attrs


def _label_names(root: Path) -> list[str]:
    ome = _ome(root / "labels") or {}
    names = ome.get("labels") or []
    return [str(n) for n in names if isinstance(n, str)]


def _axes(ms: dict, ndim: int) -> list[dict]:
    axes = ms.get("axes")
    if not axes:  # NGFF < 0.3: always tczyx
        return [{"name": a} for a in "tczyx"[-ndim:]]
    return [a if isinstance(a, dict) else {"name": str(a)} for a in axes]


def _transform(ms: dict, ndim: int) -> tuple[list[float], list[float]]:
    """Scale and translation of level 0 (the dataset's, combined with the multiscale's own)."""
    scale, translate = [1.0] * ndim, [0.0] * ndim

    def apply(transforms: list[dict]) -> None:
        for t in transforms or []:
            if t.get("type") == "scale" and len(t.get("scale", [])) == ndim:
                for i, s in enumerate(t["scale"]):
                    scale[i] *= float(s)
                    translate[i] *= float(s)
            elif t.get("type") == "translation" and len(t.get("translation", [])) == ndim:
                for i, v in enumerate(t["translation"]):
                    translate[i] += float(v)

    apply(ms["datasets"][0].get("coordinateTransformations"))
    apply(ms.get("coordinateTransformations"))
    return scale, translate


def _levels(group: Path, ms: dict) -> list:
    """Every pyramid level of a multiscale group as a lazy dask array."""
    import dask.array as da
    import zarr

    levels = []
    for dataset in ms["datasets"]:
        arr = zarr.open_array(str(group / dataset["path"]), mode="r")
        levels.append(da.from_array(arr, chunks=arr.chunks, inline_array=True, name=f"biounet-napari-{_token(group, dataset['path'], arr)}"))
    return levels


def _layer_data(levels: list, kwargs: dict) -> tuple[Any, dict]:
    """A pyramid as napari takes it: a list of levels, or one array if there is one level
    (napari 0.9 mistakes a one-level multiscale labels list for 2-D data)."""
    if len(levels) > 1:
        return levels, {**kwargs, "multiscale": True}
    return levels[0], {**kwargs, "multiscale": False}


def _token(group: Path, path: str, arr: Any) -> str:
    from dask.base import tokenize

    try:
        stamp = (group / path).stat().st_mtime_ns
    except OSError:
        stamp = None
    return tokenize(str(group.resolve()), path, stamp, arr.shape, str(arr.dtype))


def _spatial(ms: dict, levels: list, skip: str = "c") -> dict:
    """Layer keyword arguments: scale, translate, units, axis labels (without the `skip` axis)."""
    ndim = levels[0].ndim
    axes = _axes(ms, ndim)
    scale, translate = _transform(ms, ndim)
    keep = [i for i, a in enumerate(axes) if a.get("name") != skip]
    units = [_unit(axes[i]) for i in keep]
    out = {
        "scale": [scale[i] for i in keep],
        "translate": [translate[i] for i in keep],
        "axis_labels": [str(axes[i].get("name")) for i in keep],
    }
    if any(u != "pixel" for u in units):
        out["units"] = units
    return out


def _unit(axis: dict) -> str:
    unit = axis.get("unit")
    if not unit:
        return "pixel"
    try:
        import pint

        pint.get_application_registry().Unit(unit)
    except Exception:  # noqa: BLE001 - an NGFF unit pint does not know: leave the axis in pixels
        return "pixel"
    return str(unit)


def _per_channel(kwargs: dict, count: int) -> dict:
    """napari's channel_axis takes a list with one entry per channel, or one entry for all;
    a list of axis names (strings are iterable) would be misread as one per channel:
    give every channel its own copy of the axis-wise arguments."""
    for key in ("scale", "translate", "axis_labels", "units"):
        if key in kwargs:
            kwargs[key] = [list(kwargs[key]) for _ in range(count)]
    return kwargs


def _channel_index(ms: dict, ndim: int) -> int | None:
    names = [a.get("name") for a in _axes(ms, ndim)]
    return names.index("c") if "c" in names else None


# --- layers ------------------------------------------------------------------


def is_rgb(channels: list[dict], dtype) -> bool:
    """Whether omero channel metadata describes an 8-bit colour image: red, green, blue."""
    from biounet.write.ngff import RGB_COLOURS

    return str(dtype) == "uint8" and [str(ch.get("color", "")).upper() for ch in channels] == list(RGB_COLOURS)


def image_layer(root: Path, ome: dict, name: str) -> LayerData:
    """The image at the root: multiscale, one layer per channel, contrast limits from the lowest level."""
    ms = ome["multiscales"][0]
    levels = _levels(root, ms)
    kwargs: dict = {"name": name, **_spatial(ms, levels)}
    c = _channel_index(ms, levels[0].ndim)
    limits = contrast_limits(levels[-1], c)
    if c is None:
        kwargs["contrast_limits"] = limits[0]
        return (*_layer_data(levels, kwargs), "image")
    channels = (ome.get("omero") or {}).get("channels") or []
    if is_rgb(channels, levels[0].dtype) and levels[0].shape[c] == 3:  # a brightfield scan: one colour layer
        import dask.array as da

        kwargs.update(rgb=True)
        return (*_layer_data([da.moveaxis(level, c, -1) for level in levels], kwargs), "image")
    labels = [ch.get("label") for ch in channels] if len(channels) == levels[0].shape[c] else []
    count = levels[0].shape[c]
    kwargs.update(
        channel_axis=c,
        name=[f"{name} {labels[i] if labels and labels[i] else i}" for i in range(count)] if count > 1 else [name],
        contrast_limits=limits,
    )
    if count == 1:
        kwargs["colormap"] = ["gray"]
    return (*_layer_data(levels, _per_channel(kwargs, count)), "image")


def probabilities_layer(root: Path, ome: dict) -> LayerData:
    """biounet's class probabilities (c axis): hidden image layers, one per class."""
    ms = ome["multiscales"][0]
    levels = _levels(root / "probabilities", ms)
    c = _channel_index(ms, levels[0].ndim)
    classes = _class_names(root)
    top = 255.0 if levels[0].dtype.kind in "ui" else 1.0
    count = levels[0].shape[c] if c is not None else 1
    names = [f"probability {classes.get(i, i)}" for i in range(count)]
    kwargs = {"visible": False, **_spatial(ms, levels), "colormap": "magma"}
    if c is None:
        return (*_layer_data(levels, {**kwargs, "name": names[0], "contrast_limits": [0.0, top]}), "image")
    kwargs.update(channel_axis=c, name=names, contrast_limits=[[0.0, top]] * count, colormap=["magma"] * count,
                  blending=["additive"] * count, visible=[False] * count)
    return (*_layer_data(levels, _per_channel(kwargs, count)), "image")


def _class_names(root: Path) -> dict[int, str]:
    label = (_ome(root / "labels" / "classes") or {}).get("image-label") or {}
    return {int(p["label-value"]): str(p.get("class", p["label-value"])) for p in label.get("properties") or []
            if "label-value" in p}


def labels_layer(root: Path, name: str, ome: dict) -> LayerData:
    """One NGFF labels image: visible, coloured, with features to show on hover."""
    ms = ome["multiscales"][0]
    group = root / "labels" / name
    levels = _levels(group, ms)
    label_meta = ome.get("image-label") or {}
    # The tissue mask (`segment --tissue`) starts hidden: it would veil half the slide.
    kwargs: dict = {"name": name, "visible": name != "tissue", **_spatial(ms, levels)}
    colours = {int(c["label-value"]): [v / 255.0 for v in c["rgba"]] for c in label_meta.get("colors") or []
               if "label-value" in c and len(c.get("rgba", [])) == 4}
    if colours:
        kwargs["colormap"] = {None: [0.0, 0.0, 0.0, 0.0], 0: [0.0, 0.0, 0.0, 0.0], **colours}
        kwargs["opacity"] = 0.5
    else:
        kwargs["colormap"] = bright_colours()
        kwargs["opacity"] = 0.8
    features = None
    if name == "instances":
        features = object_features(root)
    if features is None and label_meta.get("properties"):
        features = _property_features(label_meta["properties"])
    if features is not None:
        kwargs["features"] = features
    return (*_layer_data(levels, kwargs), "labels")


def bright_colours(count: int = INSTANCE_COLOURS, seed: int = 7):
    """(count + 1, 4) RGBA rows, row 0 transparent (background): hues spread by the golden ratio,
    full value and high saturation, so no instance is dark."""
    import colorsys

    import numpy as np

    rng = np.random.default_rng(seed)
    rows = [[0.0, 0.0, 0.0, 0.0]]
    for i in range(count):
        hue = (i * 0.6180339887) % 1.0
        sat = 0.55 + 0.45 * rng.random()
        rows.append([*colorsys.hsv_to_rgb(hue, sat, 1.0), 1.0])
    return np.asarray(rows, dtype=np.float32)


def object_features(root: Path):
    """The object table beside an output (slide.ome.zarr -> slide.objects.csv), indexed by
    instance id for napari (its `index` column); None if there is none."""
    from biounet.plan.outputs import table_path

    table = table_path(root)
    if not table.is_file():
        return None
    import pandas as pd

    try:
        frame = pd.read_csv(table)
    except (OSError, ValueError):
        return None
    if "id" not in frame.columns:
        return None
    frame.insert(0, "index", frame["id"].astype("int64"))
    return frame


def _property_features(properties: list[dict]):
    import pandas as pd

    rows = [p for p in properties if isinstance(p, dict) and "label-value" in p]
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    frame.insert(0, "index", frame.pop("label-value").astype("int64"))
    return frame


def contrast_limits(level: Any, c: int | None) -> list[list[float]]:
    """[low, high] per channel (one entry without a c axis): CONTRAST_PERCENTILES of the
    finite values of `level` (the lowest pyramid level; at most CONTRAST_PLANES planes)."""
    import numpy as np

    index = []
    for i, n in enumerate(level.shape[:-2]):
        if i == c or n <= CONTRAST_PLANES:
            index.append(slice(None))
        else:
            index.append(np.unique(np.linspace(0, n - 1, CONTRAST_PLANES).round().astype(int)))
    data = level
    for axis, pick in enumerate(index):  # one axis at a time (dask indexes one list at a time)
        if not isinstance(pick, slice):
            data = data[(slice(None),) * axis + (pick,)]
    values = np.asarray(data.compute() if hasattr(data, "compute") else data)
    if values.dtype == bool:
        values = values.astype(np.uint8)
    values = np.moveaxis(values, c, 0) if c is not None else values[None]
    out = []
    for channel in values:
        finite = channel[np.isfinite(channel)] if channel.dtype.kind == "f" else channel.ravel()
        if not finite.size:
            out.append([0.0, 1.0])
            continue
        low, high = (float(v) for v in np.percentile(finite, CONTRAST_PERCENTILES))
        if high <= low:
            low, high = float(finite.min()), float(finite.max())
        if high <= low:
            high = low + 1.0
        out.append([low, high])
    return out
