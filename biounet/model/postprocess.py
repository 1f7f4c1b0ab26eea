"""A model's post-processing: the named methods and their parameters.

Stored in a model's spec (`postprocess = {"name": ..., "params": {...}}`); the
class map is made from the network output by `biounet.predict.classes`, the
instances from the class map by `biounet.label`. The methods:

- ``components``: binary target. Class map: foreground probability >
  ``threshold``. Instances: connected components (4-connected) of foreground.
- ``watershed_3class``: background / interior / boundary. Class map: argmax.
  Instances: interior components as seeds, grown up to ``expand`` pixels over
  the boundary to the nearest seed.
- ``watershed_distance``: a normalised distance map (1,H,W). Class map:
  0 below ``foreground_threshold``, 2 above ``seed_threshold`` (cores), else 1.
  Instances: cores grown up to ``expand`` pixels down over the foreground.
- ``argmax``: any classifier (a bioimage.io package that names no post-processing
  of biounet's). Class map: the most probable class (one channel: > ``threshold``).
  Instances: connected components of class 1; other foreground classes form
  objects of their own.

Foreground no seed reaches becomes an object of its own; objects smaller than
``min_size`` pixels are dropped. (The "watershed" names are kept for model
files; the flood is a nearest-seed expansion because that is exact over blocks.)
"""

from __future__ import annotations

DEFAULTS = {
    "components": {"threshold": 0.5, "min_size": 10},
    "watershed_3class": {"expand": 4, "min_size": 10},
    "watershed_distance": {"foreground_threshold": 0.05, "seed_threshold": 0.5, "expand": 12, "min_size": 10},
    "argmax": {"threshold": 0.5, "min_size": 1},
}
DEFAULT_METHOD = {"name": "components", "params": {}}


def method_params(name: str, params: dict) -> dict:
    """The full parameters of method `name`: its defaults updated by `params` (checked)."""
    if name not in DEFAULTS:
        raise ValueError(f"unknown postprocessing {name!r}; choose from {sorted(DEFAULTS)}")
    unknown = set(params) - set(DEFAULTS[name])
    if unknown:
        raise ValueError(f"unknown parameters for {name}: {sorted(unknown)}")
    return {**DEFAULTS[name], **params}


def method_of(postprocess: dict | None) -> tuple[str, dict]:
    """(name, full parameters) of a model spec's `postprocess` entry (None: the default)."""
    post = postprocess or DEFAULT_METHOD
    return post["name"], method_params(post["name"], post.get("params", {}))
