"""Choose a model's post-processing parameters on annotated validation images.

The network output is computed once per image; each candidate setting of the
post-processing (e.g. the smallest object kept, how far seeds grow) is then
scored with the same `score` and `summarize` as `biounet evaluate`, and the
one with the best average F1 (or AJI or PQ: `select_by`) is written into a
copy of the model file. This is what StarDist's threshold optimisation does
for its own post-processing: the network is untouched, only how its output
becomes objects.
"""

from __future__ import annotations

import itertools
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from biounet.evaluate.run import ImageScores, load_prepared, matched_files, model_outputs, score, summarize
from biounet.label.instances import postprocess
from biounet.model.file import save_model
from biounet.model.postprocess import DEFAULTS
from biounet.model.spec import ModelSpec
from biounet.model.unet import UNet
from biounet.predict.normalize import with_scope
from biounet.read.files import DataError, read_labels

MIN_SIZES = (10, 20, 30, 45, 60, 90)
GRIDS: dict[str, dict[str, tuple]] = {
    "components": {"threshold": (0.3, 0.4, 0.5, 0.6, 0.7), "min_size": MIN_SIZES},
    "watershed_3class": {"expand": (2, 3, 4, 6), "min_size": MIN_SIZES},
    "watershed_distance": {"seed_threshold": (0.3, 0.4, 0.5, 0.6, 0.7), "min_size": MIN_SIZES},
}


SUMMARY_KEYS = ("average_f1", "f1_0.50", "f1_0.90", "aji", "pq", "missed", "extra", "splits", "merges")
MEAN_KEYS = ("average_f1", "f1_0.50", "f1_0.90", "aji", "pq")  # held-out halves: means; the counts add up
SELECT_BY = ("average_f1", "aji", "pq")  # what a setting may be chosen by (higher is better)


def candidates(name: str, base: dict) -> list[dict]:
    """Every parameter setting of the grid of method `name`, on top of `base`, the current setting first."""
    grid = GRIDS[name]
    settings = [{**base, **dict(zip(grid, values))} for values in itertools.product(*grid.values())]
    return [dict(base)] + [s for s in settings if s != base]


Example = tuple[str, np.ndarray, np.ndarray]  # (image name, labels, network output)


def grid_scores(name: str, settings: Sequence[dict], examples: Sequence[Example],
                done: Callable[[int], object] | None = None) -> list[list[ImageScores]]:
    """Per setting, the scores of every example (in order), as `evaluate` scores them; `done(n)` after
    each setting's n examples (a progress bar's update)."""
    rows = []
    for params in settings:
        rows.append([score(n, lab, postprocess(name, out, **params)) for n, lab, out in examples])
        if done is not None:
            done(len(examples))
    return rows


def _bar(progress: bool, models: int):
    """The progress bar of a tuning run: settings x images scored, with the rate (stderr)."""
    from tqdm import tqdm

    return tqdm(total=0, desc="tune", unit=" scores", disable=not progress, file=sys.stderr, mininterval=1.0,
                postfix=f"model 1/{models}: predicting")


def headline(summary: dict) -> dict:
    """The columns a tuning table reports."""
    return {k: summary[k] for k in SUMMARY_KEYS}


def best(rows: Sequence[dict], select_by: str = "average_f1") -> int:
    """Index of the best row: highest `select_by` (a column of `SELECT_BY`), the earlier one on a tie (the
    current setting comes first, so tuning never changes a model for nothing)."""
    if select_by not in SELECT_BY:
        raise DataError(f"cannot choose by {select_by!r}: choose by one of {', '.join(SELECT_BY)}")
    return max(range(len(rows)), key=lambda i: (rows[i][select_by], -i))


def choose(name: str, base: dict, examples: Sequence[Example],
           select_by: str = "average_f1", done: Callable[[int], object] | None = None) -> tuple[dict, list[dict]]:
    """(best parameters by `select_by`, one row per candidate) for (name, labels, network output) examples."""
    settings = candidates(name, base)
    rows = [{**params, **headline(summarize(scores))}
            for params, scores in zip(settings, grid_scores(name, settings, examples, done))]
    return settings[best(rows, select_by)], rows


def halves(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """The two folds of cross-fitting: the names sorted, then alternately A (1st, 3rd, ...) and B (2nd, 4th, ...).

    Deterministic, independent of the file system's order, and balanced (sizes differ by at most one).
    """
    ordered = sorted(names)
    return ordered[0::2], ordered[1::2]


@dataclass
class CrossFit:
    """Two-fold cross-fitted post-processing: tuned on one half, scored on the other, and the reverse.

    folds: per fold, {"tuned_on", "scored_on", "images", "params", "tuned", "held_out"} (the last two: the
    headline scores of the chosen setting on its tuning half and on the held-out half). held_out: the reported
    figure, the mean of the two held-out halves' F1 columns (each image is held out once; counts are summed
    over both halves). as_is: the model's own setting scored on all images; in_sample: tuned and scored on all
    of them (the optimistic figure cross-fitting corrects).
    """

    halves: dict[str, list[str]]
    folds: list[dict]
    held_out: dict
    as_is: dict
    as_is_params: dict
    in_sample: dict
    in_sample_params: dict
    select_by: str = "average_f1"


def cross_fit(name: str, base: dict, examples: Sequence[Example], select_by: str = "average_f1") -> CrossFit:
    """Cross-fit the post-processing `name` (its grid around `base`) over `examples`, choosing by `select_by`
    (see `CrossFit`)."""
    settings = candidates(name, base)
    return cross_fit_grid(settings, grid_scores(name, settings, examples), [n for n, _, _ in examples], select_by)


def cross_fit_grid(settings: Sequence[dict], scores: Sequence[Sequence[ImageScores]],
                   names: Sequence[str], select_by: str = "average_f1") -> CrossFit:
    """Cross-fit a choice by `select_by` among `settings` (the current one first), given each setting's scores
    of the images `names` (in that order). A setting may name its model too (checkpoint selection)."""
    if len(names) < 2:
        raise DataError(f"cross-fitting needs at least 2 annotated images (one per half); got {len(names)}")
    position = {n: i for i, n in enumerate(names)}

    def on(subset: Sequence[str], k: int) -> dict:
        return headline(summarize([scores[k][position[n]] for n in subset]))

    split = dict(zip("AB", halves(names)))
    folds = []
    for tuned_on, scored_on in (("A", "B"), ("B", "A")):
        k = best([on(split[tuned_on], j) for j in range(len(settings))], select_by)
        folds.append({"tuned_on": tuned_on, "scored_on": scored_on, "images": len(split[scored_on]),
                      "params": settings[k], "tuned": on(split[tuned_on], k), "held_out": on(split[scored_on], k)})
    held_out = {key: (float(np.mean([f["held_out"][key] for f in folds])) if key in MEAN_KEYS
                      else int(sum(f["held_out"][key] for f in folds))) for key in SUMMARY_KEYS}
    everything = [on(names, k) for k in range(len(settings))]
    k = best(everything, select_by)
    return CrossFit(split, folds, held_out, everything[0], dict(settings[0]), everything[k], dict(settings[k]),
                    select_by)


def _examples(model: str | os.PathLike, images_dir: str | os.PathLike, labels_dir: str | os.PathLike, *,
              device: str, channels: Sequence[int] | None, tile: int | None,
              normalize_over: str | None, tta: str = "none") -> tuple[UNet, ModelSpec, str, dict, list[Example]]:
    """(network, spec, post-processing name, its current parameters, examples) of a model on a folder."""
    from biounet.model.zoo_package import is_package

    if is_package(model):
        raise DataError(f"{model} is a bioimage.io package: tune writes a biounet model file, so tune the "
                        "model it was exported from")
    labels, images = matched_files(labels_dir, images_dir, "image")
    truth = {name: read_labels(path) for name, path in labels.items()}
    net, spec = load_prepared(model, device, tta=tta)
    post = spec.postprocess or {"name": "components", "params": {}}
    if post["name"] not in GRIDS:
        raise DataError(f"no tuning grid for post-processing {post['name']!r}")
    outputs = model_outputs(net, spec, images, {n: lab.shape for n, lab in truth.items()}, channels=channels,
                            tile=tile, normalize_over=normalize_over)
    examples = [(name, truth[name], output) for name, output in outputs]
    return net, spec, post["name"], {**DEFAULTS[post["name"]], **post.get("params", {})}, examples


def save_tuned(out: str | os.PathLike, net: UNet, spec: ModelSpec, post: str, params: dict, tuned_on: dict,
               normalize_over: str | None = None) -> None:
    """A copy of a model with the post-processing `post(params)`; `tuned_on` (the images and their
    scores) goes into its provenance as `postprocess_tuned_on`."""
    provenance = {**spec.provenance, "postprocess_tuned_on": tuned_on}
    tuned: ModelSpec = replace(spec, postprocess={"name": post, "params": params}, provenance=provenance,
                               normalization=with_scope(spec.normalization, normalize_over))
    save_model(out, net, tuned)


def _tuned_on(images_dir, count: int, row: dict, select_by: str) -> dict:
    """What a tuned model's provenance records: the images, the metric chosen by and the choice's scores."""
    return {"images": str(Path(images_dir)), "count": count, "metric": select_by,
            **{k: row[k] for k in SELECT_BY}}


def tune(model: str | os.PathLike, images_dir: str | os.PathLike, labels_dir: str | os.PathLike,
         out: str | os.PathLike, *, device: str = "auto", channels: Sequence[int] | None = None,
         tile: int | None = None, normalize_over: str | None = None, tta: str = "none",
         select_by: str = "average_f1", progress: bool = False) -> tuple[dict, list[dict]]:
    """Write `model` with the post-processing that scores best on the images (by `select_by`: average_f1, aji
    or pq) to `out`.

    Returns (chosen parameters, rows of every candidate). The images are
    normalised as `evaluate` does (`normalize_over`, then also stored in the
    copy); the choice is recorded in the model's provenance. `tta` is the test-time
    augmentation to tune for (`biounet.predict.tta`; not stored in the copy). `progress`: a bar on stderr.
    """
    with _bar(progress, 1) as bar:
        net, spec, post, base, examples = _examples(model, images_dir, labels_dir, device=device, channels=channels,
                                                    tile=tile, normalize_over=normalize_over, tta=tta)
        bar.total = len(candidates(post, base)) * len(examples)
        bar.set_postfix_str("model 1/1: scoring")
        chosen, rows = choose(post, base, examples, select_by, bar.update)
    row = rows[best(rows, select_by)]
    save_tuned(out, net, spec, post, chosen, _tuned_on(images_dir, len(examples), row, select_by), normalize_over)
    return chosen, rows


def tune_cross_fit(models: str | os.PathLike | Sequence[str | os.PathLike], images_dir: str | os.PathLike,
                   labels_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, device: str = "auto",
                   channels: Sequence[int] | None = None, tile: int | None = None,
                   normalize_over: str | None = None, tta: str = "none", select_by: str = "average_f1",
                   progress: bool = False) -> CrossFit:
    """Two-fold cross-fitted tuning on a validation folder (see `CrossFit` and `halves`), choosing by
    `select_by` (average_f1, aji or pq).

    Several models (e.g. the snapshots of one run, `biounet train
    --snapshot-every`) make the checkpoint part of the choice: a setting is
    then a model and its post-processing, chosen together on each half. Each
    network runs once per image and every setting is scored once per image,
    so one model costs what `tune` costs. With `out`, the model and setting
    chosen on all the images (what `tune` writes) are written there too.
    Normalisation statistics are those `evaluate` takes (of the whole folder
    for a folder-normalised model): they come from the images, never from labels.
    `tta`: the networks' test-time augmentation (`biounet.predict.tta`). `progress`: a bar on stderr
    (settings x images scored, which model).
    """
    paths = [models] if isinstance(models, (str, os.PathLike)) else list(models)
    labels = [Path(p).name for p in paths]
    if len(set(labels)) < len(labels):
        labels = [str(p) for p in paths]
    settings, scores, names, posts = [], [], None, []
    with _bar(progress, len(paths)) as bar:
        for i, path in enumerate(paths):
            bar.set_postfix_str(f"model {i + 1}/{len(paths)}: predicting")
            _, spec, post, base, examples = _examples(path, images_dir, labels_dir, device=device,
                                                      channels=channels, tile=tile, normalize_over=normalize_over,
                                                      tta=tta)
            grid = candidates(post, base)
            bar.total = bar.n + (len(paths) - i) * len(grid) * len(examples)  # the same grid for those to come
            bar.set_postfix_str(f"model {i + 1}/{len(paths)}: scoring")
            scores += grid_scores(post, grid, examples, bar.update)
            settings += [{"model": labels[i], **p} for p in grid] if len(paths) > 1 else grid
            posts += [(i, post)] * len(grid)
            names = [n for n, _, _ in examples]
            del examples
    result = cross_fit_grid(settings, scores, names, select_by)
    if out is not None:
        k = settings.index(result.in_sample_params)
        i, post = posts[k]
        net, spec = load_prepared(paths[i], "cpu")
        params = {key: v for key, v in result.in_sample_params.items() if key != "model"}
        save_tuned(out, net, spec, post, params, _tuned_on(images_dir, len(names), result.in_sample, select_by),
                   normalize_over)
    return result


def format_cross_fit(result: CrossFit) -> str:
    """A plain-text table of a cross-fit: each held-out half, their mean, and the in-sample figures."""
    def setting(params: dict) -> str:
        return " ".join(f"{k}={v}" for k, v in params.items())

    def values(row: dict) -> list[str]:
        return [f"{row[k]:.4f}" if k in MEAN_KEYS else str(row[k]) for k in SUMMARY_KEYS]

    n = sum(len(v) for v in result.halves.values())
    lines = [["scored on", "tuned on", "setting", *SUMMARY_KEYS]]
    for fold in result.folds:
        lines.append([f"{fold['scored_on']} ({fold['images']})", fold["tuned_on"], setting(fold["params"]),
                      *values(fold["held_out"])])
    lines.append(["held out", "cross-fit", "mean of the halves", *values(result.held_out)])
    lines.append([f"all ({n})", "- (as is)", setting(result.as_is_params), *values(result.as_is)])
    lines.append([f"all ({n})", f"all ({n})", setting(result.in_sample_params), *values(result.in_sample)])
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    text = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
            for row in lines]
    sizes = ", ".join(f"{k}: {len(v)} images" for k, v in result.halves.items())
    return "\n".join([f"cross-fit on {n} images, halves by sorted name, alternately ({sizes}); "
                      f"chosen by {result.select_by}", *text])
