"""Choose a model's post-processing parameters on annotated validation images.

The network output is computed once per image; each candidate setting of the
post-processing (e.g. the smallest object kept, how far seeds grow) is then
scored with the same `score` and `summarize` as `biounet evaluate`, and the
one with the best average F1 is written into a copy of the model file. This is
what StarDist's threshold optimisation does for its own post-processing: the
network is untouched, only how its output becomes objects.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from biounet.evaluate.run import load_prepared, matched_files, model_outputs, score, summarize
from biounet.model.file import ModelSpec, save_model
from biounet.label.instances import postprocess
from biounet.model.postprocess import DEFAULTS
from biounet.predict.normalize import with_scope
from biounet.read.files import DataError, read_labels

MIN_SIZES = (10, 20, 30, 45, 60, 90)
GRIDS: dict[str, dict[str, tuple]] = {
    "components": {"threshold": (0.3, 0.4, 0.5, 0.6, 0.7), "min_size": MIN_SIZES},
    "watershed_3class": {"expand": (2, 3, 4, 6), "min_size": MIN_SIZES},
    "watershed_distance": {"seed_threshold": (0.3, 0.4, 0.5, 0.6, 0.7), "min_size": MIN_SIZES},
}


def candidates(name: str, base: dict) -> list[dict]:
    """Every parameter setting of the grid of method `name`, on top of `base`, the current setting first."""
    grid = GRIDS[name]
    settings = [{**base, **dict(zip(grid, values))} for values in itertools.product(*grid.values())]
    return [dict(base)] + [s for s in settings if s != base]


def choose(name: str, base: dict, examples: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> tuple[dict, list[dict]]:
    """(best parameters, one row per candidate) for (name, labels, network output) examples.

    Best = highest average F1; on a tie the earlier candidate (the current
    setting first) is kept, so tuning never changes a model for nothing.
    """
    settings, rows = candidates(name, base), []
    for params in settings:
        summary = summarize([score(n, lab, postprocess(name, out, **params)) for n, lab, out in examples])
        rows.append({**params, **{k: summary[k] for k in ("average_f1", "f1_0.50", "f1_0.90", "missed", "extra")}})
    best = max(range(len(rows)), key=lambda i: (rows[i]["average_f1"], -i))
    return settings[best], rows


def tune(model: str | os.PathLike, images_dir: str | os.PathLike, labels_dir: str | os.PathLike,
         out: str | os.PathLike, *, device: str = "auto", channels: Sequence[int] | None = None,
         tile: int | None = None, normalize_over: str | None = None) -> tuple[dict, list[dict]]:
    """Write `model` with the post-processing that scores best on the images to `out`.

    Returns (chosen parameters, rows of every candidate). The images are
    normalised as `evaluate` does (`normalize_over`, then also stored in the
    copy); the choice is recorded in the model's provenance.
    """
    from biounet.zoo import is_package

    if is_package(model):
        raise DataError(f"{model} is a bioimage.io package: tune writes a biounet model file, so tune the "
                        "model it was exported from")
    labels, images = matched_files(labels_dir, images_dir, "image")
    truth = {name: read_labels(path) for name, path in labels.items()}
    net, spec = load_prepared(model, device)
    post = spec.postprocess or {"name": "components", "params": {}}
    if post["name"] not in GRIDS:
        raise DataError(f"no tuning grid for post-processing {post['name']!r}")
    outputs = model_outputs(net, spec, images, {n: lab.shape for n, lab in truth.items()}, channels=channels,
                            tile=tile, normalize_over=normalize_over)
    examples = [(name, truth[name], output) for name, output in outputs]
    base = {**DEFAULTS[post["name"]], **post.get("params", {})}
    best, rows = choose(post["name"], base, examples)
    provenance = {**spec.provenance, "postprocess_tuned_on": {
        "images": str(Path(images_dir)), "count": len(examples), "average_f1": max(r["average_f1"] for r in rows),
    }}
    tuned: ModelSpec = replace(spec, postprocess={"name": post["name"], "params": best}, provenance=provenance,
                               normalization=with_scope(spec.normalization, normalize_over))
    save_model(out, net, tuned)
    return best, rows
