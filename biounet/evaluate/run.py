"""Score a folder of segmentations, or a model's predictions, against a folder of labels.

Files are matched by name stem (as in training). Predictions are instance
label images (0 = background; a 0/1 mask counts as its connected components),
e.g. a classical baseline's output or `biounet segment`'s; with a model, every
image goes through `predict_array` (the tiled engine of `segment`) and the
model's post-processing. The same `score` and `summarize` serve validation
during training, so validation scores and `biounet evaluate` agree.

Membrane-type data (labels that are 0/1 masks, e.g. ISBI 2012: 1 = cell
interior, 0 = membrane) also get the ISBI 2012 challenge's scores (pixel
error, foreground-restricted Rand error, V_Rand, V_Info: see
`biounet.evaluate.membranes`); with a model, over the thresholds of its
foreground (interior) probability, as the challenge scored probability maps;
with predictions, of their foreground mask. The data-set row takes the best
threshold for the data set as a whole; each image's row its own best.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from biounet.evaluate.membranes import MembraneCurves, MembraneScores, membrane_curves, membrane_summary
from biounet.evaluate.metrics import InstanceScores, aggregate, instance_scores
from biounet.label.instances import postprocess
from biounet.model.spec import ModelSpec
from biounet.model.unet import UNet
from biounet.predict.normalize import folder_stats, with_scope
from biounet.read.files import (
    INTERNAL_IGNORE,
    DataError,
    image_files,
    image_sample,
    is_class_mask,
    is_folder,
    read_image,
    read_labels,
    stem,
    to_instances,
)

INSTANCE_COLUMNS = ("aji", "pq", "sq", "rq")  # beside average_f1; see `biounet.evaluate.metrics`
POOLED_COLUMNS = ("average_f1_pooled", "aji_pooled", "pq_pooled", "sq_pooled", "rq_pooled")  # summary row only
MEMBRANE_COLUMNS = ("pixel_error", "rand_error", "rand_precision", "rand_recall", "rand_threshold", "v_rand",
                    "v_info")


@dataclass
class ImageScores:
    """All scores of one image."""

    name: str
    instance: InstanceScores
    membrane: MembraneScores | None = None
    curves: MembraneCurves | None = field(default=None, repr=False)  # what a data set's membrane scores need

    def row(self) -> dict:
        """Flat columns for tables and CSV."""
        s = self.instance
        out: dict = {"image": self.name, "n_true": s.n_true, "n_pred": s.n_pred}
        out.update({f"f1_{t:.2f}": f for t, f in zip(s.thresholds, s.f1)})
        out.update(average_f1=s.average_f1, **{k: getattr(s, k) for k in INSTANCE_COLUMNS}, missed=s.missed,
                   extra=s.extra, splits=s.splits, merges=s.merges, pixel_iou=s.foreground_iou,
                   pixel_dice=s.foreground_dice)
        if self.membrane is not None:
            out.update({k: getattr(self.membrane, k) for k in MEMBRANE_COLUMNS})
        return out


def foreground_probability(output: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """P(foreground) of a classification output (1 - P(class 0)); the output itself for regression."""
    if spec.unet.head == "classification":
        return 1.0 - output[0] if output.shape[0] > 1 else output[0]
    return output[0]


def prediction(output: np.ndarray, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """(instances, foreground) of one network output, by the model's post-processing.

    foreground: the probability for a classification model, the instance mask
    for regression (its own threshold lives in the post-processing).
    """
    post = spec.postprocess or {"name": "components", "params": {}}
    instances = postprocess(post["name"], output, **post.get("params", {}))
    if spec.unet.head == "classification":
        return instances, foreground_probability(output, spec)
    return instances, (instances != 0).astype(np.uint8)


def score(name: str, labels: np.ndarray, pred: np.ndarray, foreground: np.ndarray | None = None, *,
          membrane: bool = False, ignore: int | None = None) -> ImageScores:
    """Scores of a predicted instance image (and optional foreground) against labels.

    Ignored pixels are removed from truth and prediction before instance
    scoring, and left out of the membrane scores. `foreground` (probability or
    mask) drives the membrane scores; without it the predicted instances' mask does.
    """
    labels, pred = np.asarray(labels), np.asarray(pred)
    if labels.shape != pred.shape:
        raise DataError(f"{name}: labels are {labels.shape} but the prediction is {pred.shape}")
    truth = to_instances(labels, ignore)
    ignored = truth == INTERNAL_IGNORE
    truth[ignored] = 0
    predicted = to_instances(pred)
    predicted[ignored] = 0
    inst = instance_scores(truth, predicted)
    if not membrane:
        return ImageScores(name, inst)
    fg = (predicted != 0).astype(np.uint8) if foreground is None else foreground
    curves = membrane_curves(truth != 0, fg, valid=~ignored if ignored.any() else None)
    return ImageScores(name, inst, membrane_summary([curves]), curves)


def summarize(scores: Sequence[ImageScores]) -> dict:
    """Data-set row: per-image mean F1, AJI, PQ and IoU/Dice, pooled ones, summed counts, the data set's membrane
    scores."""
    agg = aggregate(s.instance for s in scores)
    out: dict = {"image": f"ALL ({len(scores)})", "n_true": agg["n_true"], "n_pred": agg["n_pred"]}
    out.update({f"f1_{t:.2f}": f for t, f in zip(agg["thresholds"], agg["f1"])})
    out.update(average_f1=agg["average_f1"], **{k: agg[k] for k in INSTANCE_COLUMNS}, missed=agg["missed"],
               extra=agg["extra"], splits=agg["splits"], merges=agg["merges"], pixel_iou=agg["foreground_iou"],
               pixel_dice=agg["foreground_dice"])
    if scores and all(s.curves is not None for s in scores):
        data_set = membrane_summary([s.curves for s in scores])
        out.update({k: getattr(data_set, k) for k in MEMBRANE_COLUMNS})
    out.update({k: agg[k] for k in POOLED_COLUMNS})
    return out


@dataclass
class EvaluationTable:
    """Per-image rows and the data-set summary row."""

    rows: list[dict]
    summary: dict
    membrane: bool = False
    scores: list[ImageScores] = field(default_factory=list, repr=False)

    def columns(self) -> list[str]:
        cols = list(self.rows[0]) if self.rows else []
        return cols + [c for c in self.summary if c not in cols]

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Per-image rows, then the summary row."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns(), restval="")
            writer.writeheader()
            writer.writerows([*self.rows, self.summary])
        return path

    def format(self, columns: Iterable[str] | None = None) -> str:
        """A plain-text table (headline columns by default)."""
        if columns is None:
            columns = ["image", "n_true", "n_pred", "f1_0.50", "f1_0.70", "f1_0.90", "average_f1", *INSTANCE_COLUMNS,
                       "missed", "extra", "splits", "merges", "pixel_iou", "pixel_dice"]
            if self.membrane:
                columns += ["pixel_error", "rand_error", "v_rand", "v_info"]
        columns = list(columns)

        def cell(value) -> str:
            return f"{value:.4f}" if isinstance(value, float) else str(value)

        body = [[cell(r.get(c, "")) for c in columns] for r in [*self.rows, self.summary]]
        widths = [max(len(c), *(len(row[i]) for row in body)) for i, c in enumerate(columns)]
        name_width = min(widths[0], 40)

        def line(values: list[str]) -> str:
            first = values[0] if len(values[0]) <= name_width else values[0][: name_width - 1] + "~"
            return "  ".join([first.ljust(name_width)] + [v.rjust(w) for v, w in zip(values[1:], widths[1:])])

        rule = "-" * len(line(columns))
        return "\n".join([line(columns), rule, *(line(r) for r in body[:-1]), rule, line(body[-1])])


def _files(path: Path) -> dict[str, Path]:
    return image_files(path) if is_folder(path) else {stem(path): path}


def matched_files(labels_dir: str | os.PathLike, others_dir: str | os.PathLike, kind: str) -> tuple[dict, dict]:
    """(labels, others) files by name; every label image needs its `kind` ("prediction" or "image")."""
    labels = _files(Path(labels_dir))
    others = _files(Path(others_dir))
    missing = sorted(set(labels) - set(others))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(f"no {kind} for {len(missing)} label image(s): {shown}")
    return labels, others


def model_outputs(net: UNet, spec: ModelSpec, images: dict[str, Path], shapes: dict[str, tuple], *,
                  channels: Sequence[int] | None = None, tile: int | None = None,
                  normalize_over: str | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """(name, network output) for each named image, as `segment` would predict it.

    `net` is prepared for its device. Normalisation is over each image or over
    all of them, as the model was trained unless `normalize_over` ("image" or
    "folder") says otherwise.
    """
    from biounet.predict.array import predict_array

    def checked(name: str, pixels: np.ndarray) -> np.ndarray:
        have, wanted = pixels.shape[0], spec.unet.in_channels
        if have != wanted:
            todo = (f"pick {wanted} of them with --channel" if have > wanted
                    else f"use a model trained for {have} channel(s)")
            raise DataError(f"{name}: the image has {have} channel(s) and the model takes {wanted}: {todo}")
        return pixels

    normalization = with_scope(spec.normalization, normalize_over)
    stats = folder_stats((checked(name, image_sample(images[name], channels)) for name in shapes), normalization)
    for name, shape in shapes.items():
        image = checked(name, read_image(images[name], channels))
        if image.shape[-2:] != tuple(shape):
            raise DataError(f"{name}: image is {image.shape[-2:]} pixels but its labels are {tuple(shape)}")
        yield name, predict_array(net, spec, image, tile=tile, stats=stats)


def load_prepared(model: str | os.PathLike, device: str = "auto", weights: str | None = None,
                  tta: str = "none") -> tuple[UNet, ModelSpec]:
    """A model file's (or bioimage.io package's) network, ready for inference on `device`
    (with test-time augmentation `tta`, `biounet.predict.tta`), and its spec."""
    from biounet.model.file import load_model
    from biounet.predict.device import prepare
    from biounet.runtime.devices import resolve_device

    net, spec = load_model(model, weights)
    return prepare(net, resolve_device(device), tta=tta), spec


def evaluate(labels_dir: str | os.PathLike, pred_dir: str | os.PathLike | None = None,
             model: str | os.PathLike | None = None, images_dir: str | os.PathLike | None = None, *,
             membrane: bool | None = None, ignore: int | None = None, device: str = "auto",
             channels: Sequence[int] | None = None, tile: int | None = None,
             normalize_over: str | None = None, weights: str | None = None, tta: str = "none") -> EvaluationTable:
    """Score predictions (`pred_dir`) or a model run on `images_dir` against `labels_dir`.

    membrane: add pixel and Rand error (None: when every label image is a 0/1 mask).
    normalize_over: "image" or "folder" (statistics of all images taken
    together); None: as the model was trained. `model` may be a bioimage.io package
    (`weights`: which of its weights). `tta`: test-time augmentation of the model
    (`biounet.predict.tta`).
    """
    if (pred_dir is None) == (model is None):
        raise DataError("pass either a predictions folder or a model (with an images folder)")
    if model is not None and images_dir is None:
        raise DataError("evaluating a model needs the images folder it should segment")
    labels, others = matched_files(labels_dir, pred_dir if pred_dir is not None else images_dir,
                                   "prediction" if pred_dir is not None else "image")
    truth = {name: read_labels(path) for name, path in labels.items()}
    if membrane is None:
        membrane = all(is_class_mask(lab, ignore) for lab in truth.values())

    if model is None:
        predicted = ((name, read_labels(others[name]), None) for name in truth)
    else:
        net, spec = load_prepared(model, device, weights, tta)
        outputs = model_outputs(net, spec, others, {n: lab.shape for n, lab in truth.items()}, channels=channels,
                                tile=tile, normalize_over=normalize_over)
        predicted = ((name, *prediction(output, spec)) for name, output in outputs)
    scores = [score(name, truth[name], pred, fg, membrane=membrane, ignore=ignore) for name, pred, fg in predicted]
    return EvaluationTable([s.row() for s in scores], summarize(scores), membrane, scores)
