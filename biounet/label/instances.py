"""Instance labels of a whole class map held in (or read from) one array: pass 1 on
every block, the merge, pass 2 on every block. `segment` runs the same steps as
block tasks (`biounet.pipeline`); this is the in-memory form for evaluation,
training validation and tests, with the same result for any block size.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from biounet.label.merge import merge
from biounet.label.pass1 import first_pass
from biounet.label.pass2 import LocalSums, second_pass
from biounet.label.rules import InstanceRule, instance_rule
from biounet.label.window import Bands, halo_window
from biounet.plan.blocks import Block, plan_blocks
from biounet.predict.classes import output_classes


def label_instances(classes, labels, block: int, rule: InstanceRule, threads: int = 2,
                    each: Callable[[Block, np.ndarray, LocalSums | None], None] | None = None,
                    intensity: Callable[[Block], np.ndarray] | None = None) -> int:
    """Write instance labels of the class map `classes` into `labels` (both array-like,
    same shape (..., Y, X), e.g. zarr arrays chunked by `block`). Returns the count.

    `each(block, final, sums)` is called with every block's final labels (and, with
    `intensity(block)` given, its objects' sums) as they are written.
    """
    shape = classes.shape
    blocks = plan_blocks(shape[:-2], shape[-2], shape[-1], block, 1)
    halo = rule.halo
    grid = {(b.plane, b.y0 // block, b.x0 // block): b for b in blocks}
    bands = {}

    def read(b: Block) -> np.ndarray:
        return np.asarray(classes[b.plane + (slice(b.y0, b.y1), slice(b.x0, b.x1))])

    def keep_bands(b: Block) -> None:
        bands[b.index] = Bands.of(read(b), halo)

    def window(b: Block):
        row, col = b.y0 // block, b.x0 // block
        return halo_window(b, read(b), lambda dy, dx: bands[grid[(b.plane, row + dy, col + dx)].index], halo,
                           shape[-2], shape[-1])

    def one(b: Block):
        win, y0, x0 = window(b)
        return first_pass(win, (y0, x0), b, rule, shape)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(keep_bands, blocks))
        results = list(pool.map(one, blocks))
        joined = merge(results, shape, rule)

        def two(i: int) -> None:
            b = blocks[i]
            win, y0, x0 = window(b)
            final, sums = second_pass(win, (y0, x0), b, rule, joined.block_lut(i),
                                      (lambda: intensity(b)) if intensity else None)
            labels[b.plane + (slice(b.y0, b.y1), slice(b.x0, b.x1))] = final
            if each is not None:
                each(b, final, sums)

        list(pool.map(two, range(len(blocks))))
    return joined.count


def instances_from_classes(classes: np.ndarray, rule: InstanceRule) -> np.ndarray:
    """In-memory instance labels (int32) of a class map: the same rule in one block."""
    out = np.zeros(classes.shape, np.int32)
    label_instances(classes, out, max(classes.shape[-2:]), rule, threads=1)
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


def postprocess(name: str, output: np.ndarray, **params) -> np.ndarray:
    """Instances of one image's network output by the post-processing method ``name``."""
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
