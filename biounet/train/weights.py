"""The U-Net paper's pixel-wise loss weight map (Ronneberger et al. 2015, eq. 2).

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

- Touching instances are first separated by a 1-px background line
  (``targets.separate_touching``); d1, d2 are the distances to the nearest and
  second nearest of the separated instances.
- w_c balances the classes of the binary target (0 background incl. the lines,
  1 cell): inverse class frequency over the image's annotated pixels, scaled
  so the most frequent class weighs 1. Pass ``class_weights`` to use fixed
  (e.g. data-set wide) values instead.
- The border term is added on background pixels only (the gaps and lines the
  network must learn to predict; on a cell pixel d1 = 0 and the term would
  merely up-weight cell rims next to neighbours, which the paper's Fig. 3d
  does not show).
- Ignored pixels get weight 0, so the map doubles as the loss mask.

``border_term`` computes each instance's distance transform only inside its
bounding box grown by ``border_cutoff`` (where the term can exceed
``eps * w0``), keeping the two smallest distances per pixel as it goes; it
agrees with ``border_term_reference`` (one full-image transform per instance)
to within ``eps * w0``.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage as ndi

from biounet.train.targets import IGNORE_INDEX, ignore_mask, separate_touching

W0 = 10.0
SIGMA = 5.0
EPS = 1e-6


def border_cutoff(sigma: float = SIGMA, eps: float = EPS) -> float:
    """d1 + d2 beyond which the border term is below ``eps * w0`` (26.3 px for 5, 1e-6)."""
    return sigma * math.sqrt(2.0 * math.log(1.0 / eps))


def class_weights(
    target: np.ndarray, n_classes: int = 2, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """Inverse class frequencies, the most frequent class weighing 1 (absent classes 1)."""
    target = np.asarray(target)
    counts = np.bincount(target[target != ignore_index].ravel(), minlength=n_classes)
    counts = counts[:n_classes].astype(np.float64)
    weights = np.ones(n_classes)
    present = counts > 0
    weights[present] = counts.max() / counts[present]
    return weights


def _sequential(instances: np.ndarray) -> np.ndarray:
    """Ids 1..n so ``find_objects`` does not allocate a slot per unused id."""
    if instances.size == 0 or instances.max() <= 4 * instances.size:
        return instances
    ids, index = np.unique(instances, return_inverse=True)
    offset = 0 if ids[0] == 0 else 1
    return (index.reshape(instances.shape) + offset).astype(np.int64)


def _term(d1: np.ndarray, d2: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    # d2 is inf where fewer than two instances are in reach: exp(-inf) = 0.
    return (w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))).astype(np.float32)


def border_term(
    instances: np.ndarray, *, w0: float = W0, sigma: float = SIGMA, eps: float = EPS
) -> np.ndarray:
    """w0 * exp(-(d1 + d2)^2 / (2 sigma^2)) at every pixel, float32.

    ``instances`` are already separated labels (0 = background). Per instance,
    one distance transform inside its bounding box grown by the cutoff: outside
    that box the instance is farther than the cutoff, so it cannot be part of
    a pair whose term reaches ``eps * w0``.
    """
    instances = _sequential(np.asarray(instances))
    reach = math.ceil(border_cutoff(sigma, eps))
    d1 = np.full(instances.shape, np.inf)
    d2 = np.full(instances.shape, np.inf)
    for number, box in enumerate(ndi.find_objects(instances), start=1):
        if box is None:
            continue
        box = tuple(
            slice(max(s.start - reach, 0), min(s.stop + reach, n))
            for s, n in zip(box, instances.shape)
        )
        dist = ndi.distance_transform_edt(instances[box] != number)
        near, second = d1[box], d2[box]  # views: updated in place
        np.minimum(second, np.maximum(near, dist), out=second)
        np.minimum(near, dist, out=near)
    return _term(d1, d2, w0, sigma)


def border_term_reference(
    instances: np.ndarray, *, w0: float = W0, sigma: float = SIGMA
) -> np.ndarray:
    """Direct eq. 2 border term: a full-image distance transform per instance, sorted."""
    instances = np.asarray(instances)
    ids = np.unique(instances)
    ids = ids[ids != 0]
    if len(ids) < 2:
        return np.zeros(instances.shape, dtype=np.float32)
    dist = np.stack([ndi.distance_transform_edt(instances != i) for i in ids])
    dist.sort(axis=0)
    return _term(dist[0], dist[1], w0, sigma)


def _weight_map(
    labels: np.ndarray,
    border: Callable[[np.ndarray], np.ndarray],
    ignore: int | None,
    weights: Sequence[float] | None,
    connectivity: int,
) -> np.ndarray:
    instances = separate_touching(labels, ignore=ignore, connectivity=connectivity)
    skip = ignore_mask(labels, ignore)
    target = (instances != 0).astype(np.uint8)
    target[skip] = IGNORE_INDEX
    per_class = class_weights(target) if weights is None else np.asarray(weights, float)
    out = per_class[np.minimum(target, 1)].astype(np.float32)
    background = (instances == 0) & ~skip
    out[background] += border(instances)[background]
    out[skip] = 0.0
    return out


def weight_map(
    labels: np.ndarray,
    *,
    ignore: int | None = None,
    w0: float = W0,
    sigma: float = SIGMA,
    class_weights: Sequence[float] | None = None,
    connectivity: int = 2,
    eps: float = EPS,
) -> np.ndarray:
    """float32 loss weights for an instance label image (eq. 2; see module doc).

    Compute it on the whole annotated image, then crop and warp it with the
    image: the border term depends on cells outside a training patch.
    """
    return _weight_map(
        labels,
        lambda inst: border_term(inst, w0=w0, sigma=sigma, eps=eps),
        ignore,
        class_weights,
        connectivity,
    )


def weight_map_reference(
    labels: np.ndarray,
    *,
    ignore: int | None = None,
    w0: float = W0,
    sigma: float = SIGMA,
    class_weights: Sequence[float] | None = None,
    connectivity: int = 2,
) -> np.ndarray:
    """``weight_map`` with the direct border term; for tests and benchmarks."""
    return _weight_map(
        labels,
        lambda inst: border_term_reference(inst, w0=w0, sigma=sigma),
        ignore,
        class_weights,
        connectivity,
    )


CACHE_SIZE = 256
_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
_cache_lock = threading.Lock()


def _digest(labels: np.ndarray) -> str:
    labels = np.ascontiguousarray(labels)
    h = hashlib.blake2b(labels.view(np.uint8).ravel(), digest_size=16)
    h.update(f"{labels.dtype.str}{labels.shape}".encode())
    return h.hexdigest()


def cached_weight_map(
    labels: np.ndarray,
    *,
    ignore: int | None = None,
    w0: float = W0,
    sigma: float = SIGMA,
    class_weights: Sequence[float] | None = None,
    connectivity: int = 2,
    eps: float = EPS,
) -> np.ndarray:
    """``weight_map``, computed once per distinct label image and parameters.

    Keyed by a hash of the label bytes (about 1 ms per BBBC039 image), kept in
    a process-wide LRU of ``CACHE_SIZE`` entries. The result is read-only: copy
    it before changing it. Each DataLoader worker process has its own cache.
    """
    weights = None if class_weights is None else tuple(float(c) for c in class_weights)
    key = (_digest(labels), ignore, w0, sigma, weights, connectivity, eps)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    result = weight_map(
        labels,
        ignore=ignore,
        w0=w0,
        sigma=sigma,
        class_weights=weights,
        connectivity=connectivity,
        eps=eps,
    )
    result.setflags(write=False)
    with _cache_lock:
        _cache[key] = result
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return result


def clear_weight_cache() -> None:
    """Empty the ``cached_weight_map`` cache."""
    with _cache_lock:
        _cache.clear()
