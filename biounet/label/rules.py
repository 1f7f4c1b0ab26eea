"""The instance rule ("seeded expansion") and its parameters.

Seeds are the connected components (4-connected) of the seed class; each seed
grows by at most `expand` pixels (nearest seed by Euclidean distance) into the
foreground (every class but 0); foreground that no seed reaches forms objects
of its own connected components; objects under `min_size` pixels are dropped
and the rest numbered 1..n in raster order of their first pixel.

- binary target (cells separated by background lines, as in the paper): seed
  class 1, expand 0, i.e. connected components of the foreground.
- 3class target (background / interior / boundary): seed class 1 (interior)
  grown a few pixels over the boundary ring.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biounet.model.postprocess import method_of, method_params


@dataclass(frozen=True)
class InstanceRule:
    """Parameters of seeded expansion (stored in a model's `postprocess`)."""

    seed_class: int = 1
    expand: int = 0
    min_size: int = 10

    @property
    def halo(self) -> int:
        """Pixels of neighbouring blocks that labelling a block looks at: growth reach
        plus one for connectivity across the face."""
        return self.expand + 1

    @classmethod
    def from_spec(cls, postprocess: dict) -> "InstanceRule":
        params = dict(postprocess.get("params", {}))
        return cls(**{k: params[k] for k in ("seed_class", "expand", "min_size") if k in params})


def instance_rule(name: str, **params) -> InstanceRule:
    """The seeded-expansion rule of a post-processing method."""
    p = method_params(name, params)
    return InstanceRule(
        seed_class=2 if name == "watershed_distance" else 1,
        expand=int(p.get("expand", 0)),
        min_size=int(p["min_size"]),
    )


def model_rule(postprocess: dict | None) -> InstanceRule:
    """The rule of a model spec's `postprocess` entry (None: the default method)."""
    name, params = method_of(postprocess)
    return instance_rule(name, **params)


def scaled_rule(rule: InstanceRule, factor: float) -> InstanceRule:
    """`rule` for a class map `factor` times coarser than the network's pixels (a run at the
    model's scale, `biounet.plan.scale`): growth reach in slide pixels (`expand` / factor,
    rounded) and the least area in slide pixels (`min_size` / factor^2, rounded, at least 1)."""
    if factor == 1.0:
        return rule
    return InstanceRule(rule.seed_class, int(round(rule.expand / factor)),
                        max(1, int(round(rule.min_size / factor**2))))


def disc_rings(distance: int) -> list[np.ndarray]:
    """Offsets (dy, dx) with 0 < dy^2 + dx^2 <= distance^2, grouped by that squared
    distance (nearest first), each group in raster order."""
    r = np.arange(-distance, distance + 1)
    dy, dx = (a.ravel() for a in np.meshgrid(r, r, indexing="ij"))
    d2 = dy * dy + dx * dx
    keep = (d2 > 0) & (d2 <= distance * distance)
    dy, dx, d2 = dy[keep], dx[keep], d2[keep]
    return [np.stack([dy[d2 == v], dx[d2 == v]], 1) for v in np.unique(d2)]


def disc_offsets(distance: int) -> np.ndarray:
    """(k, 2) int64 offsets of the disc of `distance`, nearest first, raster order within
    a ring: the order in which a pixel looks for its nearest seed (ties: first wins)."""
    rings = disc_rings(distance)
    return np.concatenate(rings).astype(np.int64) if rings else np.zeros((0, 2), np.int64)
