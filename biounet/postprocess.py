"""Network output -> class map -> instance labels (int32, 0 = background).

One rule serves evaluation (whole images in memory) and `segment` (a slide,
block by block): the output becomes a uint8 class map, and instances come from
the class map by seeded expansion (`biounet.write.instances`), which gives the
same objects whether run in one piece or chunk by chunk. The methods, by name
(stored in a model's `postprocess`):

- ``components``: binary target. Class map: foreground probability >
  ``threshold``. Instances: connected components (4-connected) of foreground.
- ``watershed_3class``: background / interior / boundary. Class map: argmax.
  Instances: interior components as seeds, grown up to ``expand`` pixels over
  the boundary to the nearest seed.
- ``watershed_distance``: a normalised distance map (1,H,W). Class map:
  0 below ``foreground_threshold``, 2 above ``seed_threshold`` (cores), else 1.
  Instances: cores grown up to ``expand`` pixels down over the foreground.

Foreground no seed reaches becomes an object of its own; objects smaller than
``min_size`` pixels are dropped. (The "watershed" names are kept for model
files; the flood is a nearest-seed expansion because that is exact over blocks.)
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from biounet.write.instances import InstanceRule, instances_from_classes

DEFAULTS = {
    "components": {"threshold": 0.5, "min_size": 10},
    "watershed_3class": {"expand": 4, "min_size": 10},
    "watershed_distance": {"foreground_threshold": 0.05, "seed_threshold": 0.5, "expand": 12, "min_size": 10},
}


def class_map(probs: np.ndarray) -> np.ndarray:
    """uint8 index of the most probable class per pixel (the first on ties, as argmax);
    probs are (C, ...). One comparison per class: 3x faster than np.argmax over axis 0."""
    best = probs[0]
    out = np.zeros(best.shape, np.uint8)
    for c in range(1, probs.shape[0]):
        better = probs[c] > best
        if c == 1:
            out = better.view(np.uint8).copy()
        else:
            out[better] = c
        if c + 1 < probs.shape[0]:
            best = np.maximum(best, probs[c])
    return out


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Drop objects under ``min_size`` pixels and renumber the rest 1..n (int32)."""
    labels = np.asarray(labels)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    new_ids = np.zeros(len(sizes), dtype=np.int32)
    new_ids[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return new_ids[labels]


def _params(name: str, params: dict) -> dict:
    if name not in DEFAULTS:
        raise ValueError(f"unknown postprocessing {name!r}; choose from {sorted(DEFAULTS)}")
    unknown = set(params) - set(DEFAULTS[name])
    if unknown:
        raise ValueError(f"unknown parameters for {name}: {sorted(unknown)}")
    return {**DEFAULTS[name], **params}


def output_classes(name: str, output: np.ndarray, **params) -> np.ndarray:
    """The uint8 class map a method reads instances from (what `segment` stores)."""
    p = _params(name, params)
    output = np.asarray(output)
    if name == "components":
        foreground = output[0] if output.shape[0] == 1 else 1.0 - output[0]
        return (foreground > p["threshold"]).astype(np.uint8)
    if name == "watershed_3class":
        if output.shape[0] != 3:
            raise ValueError(f"watershed_3class needs 3 classes, got {output.shape[0]}")
        return class_map(output)
    distance = output[0] if output.ndim == 3 else output
    if output.ndim == 3 and output.shape[0] != 1:
        raise ValueError(f"watershed_distance needs one channel, got {output.shape[0]}")
    classes = (distance > p["foreground_threshold"]).astype(np.uint8)
    classes[distance > p["seed_threshold"]] = 2
    return classes


def instance_rule(name: str, **params) -> InstanceRule:
    """The seeded-expansion rule of a method."""
    p = _params(name, params)
    return InstanceRule(
        seed_class=2 if name == "watershed_distance" else 1,
        expand=int(p.get("expand", 0)),
        min_size=int(p["min_size"]),
    )


def postprocess(name: str, output: np.ndarray, **params) -> np.ndarray:
    """Instances of one image's network output by the method called ``name``."""
    return instances_from_classes(output_classes(name, output, **params), instance_rule(name, **params))


def components(probs: np.ndarray, **params) -> np.ndarray:
    """Connected components of foreground > threshold."""
    return postprocess("components", probs, **params)


def watershed_3class(probs: np.ndarray, **params) -> np.ndarray:
    """Interior components as seeds, grown over the boundary class."""
    return postprocess("watershed_3class", probs, **params)


def watershed_distance(distance: np.ndarray, **params) -> np.ndarray:
    """Distance-map cores as seeds, grown over the foreground."""
    return postprocess("watershed_distance", distance, **params)


POSTPROCESS: dict[str, Callable[..., np.ndarray]] = {
    "components": components,
    "watershed_3class": watershed_3class,
    "watershed_distance": watershed_distance,
}
