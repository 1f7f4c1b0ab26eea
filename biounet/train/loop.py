"""`train(config)`: the training loop, validation, checkpoints, log and curves.

- Batches come from `PatchDataset` through a DataLoader with `workers`
  processes (reading, targets and augmentation run there, in parallel with the
  network step; with `augment_on="device"` the augmentation runs on the
  training device instead); the network trains in the main process, in
  channels_last memory, with the batches in pinned memory on CUDA. `precision`
  picks float32 or mixed precision (autocast in bfloat16, or float16 with a
  gradient scaler: `run_precision`).
- Every `val_every` iterations (and at the end) the whole validation images go
  through `predict_array` (the tiled engine of `segment`) and the model's
  post-processing, and are scored by `biounet.evaluate` (average F1 for
  instance labels; Rand and pixel error for 0/1 membrane masks). The best
  model by the chosen metric is written to `out` (without validation data:
  the latest one). Then a checkpoint goes to `<out>.ckpt`: model, optimizer,
  gradient scaler, precision, iteration, RNG states of torch/numpy/python,
  the data stream's position and the log so far. Resuming from it continues
  exactly: the same batches, the same updates, bit for bit on the CPU (the
  batch stream is a pure function of seed and iteration, see
  `biounet.train.data`).
- A CSV log (`<out stem>.log.csv`: iteration, loss, lr, seconds and the
  validation scores) and a PNG of the curves (`<out stem>.curves.png`) are
  rewritten next to the model at every validation.
- With `snapshot_every`, the network every that many iterations is also kept
  (`<out stem>.itNNNNNN.pt`): candidates for a checkpoint chosen afterwards by
  cross-fitting (`biounet tune --cross-fit --model A --model B ...`), so the
  split the run validates on need not be the split it is reported on.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from biounet import __version__
from biounet.evaluate.run import prediction, score, summarize
from biounet.model.config import UNetConfig
from biounet.model.file import build_network, load_model, save_model
from biounet.model.geometry import Geometry, TileSizeError
from biounet.model.names import file_digest
from biounet.model.spec import ModelSpec
from biounet.model.unet import UNet, center_crop
from biounet.plan.gpu import choose_precision
from biounet.plan.options import PRECISIONS
from biounet.predict.array import predict_array
from biounet.predict.normalize import folder_stats, over_folder
from biounet.read.files import DataError, is_class_mask
from biounet.runtime.devices import cpu_threads, resolve_device
from biounet.runtime.process import tune_malloc
from biounet.train.augment import AugmentParams
from biounet.train.data import (
    TARGETS,
    Example,
    PatchDataset,
    TargetSpec,
    load_examples,
    load_sources,
    make_loader,
    object_diameter,
)
from biounet.train.loss import Loss

CHECKPOINT_FORMAT = "biounet-checkpoint"
CHECKPOINT_VERSION = 1
DEFAULT_TILE = 572
METRICS = {"average_f1": "max", "pixel_iou": "max", "rand_error": "min", "pixel_error": "min"}
DEFAULT_LR = {"adam": 1e-3, "sgd": 1e-2}
TASKS = {
    "binary": (["background", "foreground"], {"name": "components", "params": {}}, "classification"),
    "3class": (["background", "interior", "boundary"], {"name": "watershed_3class", "params": {}}, "classification"),
    "distance": (["distance"], {"name": "watershed_distance", "params": {}}, "regression"),
}
# Changing these on resume would not continue the same run.
RUN_KEYS = (
    "images", "labels", "target", "labels_kind", "depth", "width", "padding", "batch_norm", "batch_size", "lr",
    "optimizer", "momentum", "weight_decay", "seed", "tile", "ignore", "w0", "sigma", "dice", "regression",
    "foreground_bias", "augment", "channels", "normalization", "init", "schedule", "encoder", "encoder_weights",
)
SCHEDULES = ("constant", "cosine")
AUGMENT_ON = ("workers", "device")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from (missing, corrupt or from another run)."""


@dataclass
class TrainConfig:
    """Everything a training run depends on (stored in checkpoints).

    images/labels: folders of pairs matched by name (or one large slide and its
    label array); val_images/val_labels likewise, read whole.
    target: binary | 3class | distance. labels_kind: auto | instances | classes.
    tile: input patch size (default: 572, or the largest valid size whose
    output fits the smallest training image). lr: None = 1e-3 for adam, 1e-2
    for sgd (momentum 0.99 as in the paper). metric: auto = rand_error for 0/1
    membrane masks, else average_f1. augment: AugmentParams as a dict, None = off.
    precision: auto | fp32 | bf16 | fp16 (`choose_precision`: auto = bf16 on CUDA
    GPUs of compute capability 8.0 and newer, fp16 on older ones, fp32 on the CPU).
    augment_on: workers (in the DataLoader processes) | device (on the training device).
    encoder: an encoder U-Net (`biounet.model.encoders.ENCODERS`: depth 6, same padding, batch
    norm; width is the decoder's at full resolution, default 16), trained on whole patches;
    encoder_weights: a local torchvision/timm checkpoint for it (default: random initialisation).
    width: None = 64 for the U-Net, 16 for an encoder U-Net.
    time_budget: stop once the training steps have used this many CPU seconds (of the training
    process, all its threads; validation, checkpoints and the data workers are not counted), then
    validate and keep the best model as at the last iteration.
    pixel_size: the training images' pixel size, um/px, recorded in the model (with the labels'
    median object diameter) so that `segment` can run it at that scale.
    """

    images: str
    labels: str
    out: str
    val_images: str | None = None
    val_labels: str | None = None
    target: str = "binary"
    labels_kind: str = "auto"
    depth: int = 5
    width: int | None = None
    padding: str = "valid"
    batch_norm: bool = False
    iterations: int = 1000
    batch_size: int = 1
    lr: float | None = None
    schedule: str = "constant"
    optimizer: str = "adam"
    momentum: float = 0.99
    weight_decay: float = 0.0
    val_every: int = 100
    metric: str = "auto"
    seed: int = 0
    resume: str | None = None
    init: str | None = None
    workers: int = 2
    tile: int | None = None
    ignore: int | None = None
    w0: float = 10.0
    sigma: float = 5.0
    dice: float = 0.0
    regression: str = "mse"
    foreground_bias: float = 0.0
    augment: dict | None = field(default_factory=lambda: asdict(AugmentParams()))
    channels: list[int] | None = None
    normalization: dict = field(default_factory=lambda: {"method": "percentile", "low": 1.0, "high": 99.8})
    device: str = "auto"
    precision: str = "auto"
    augment_on: str = "workers"
    snapshot_every: int = 0
    encoder: str | None = None
    encoder_weights: str | None = None
    time_budget: float | None = None
    pixel_size: float | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for key in ("images", "labels", "out", "val_images", "val_labels", "resume", "init", "encoder_weights"):
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, str(value))
        if self.target not in TARGETS:
            raise DataError(f"unknown target {self.target!r}; choose from {', '.join(TARGETS)}")
        if self.optimizer not in DEFAULT_LR:
            raise DataError(f"unknown optimizer {self.optimizer!r}; use adam or sgd")
        if self.schedule not in SCHEDULES:
            raise DataError(f"unknown schedule {self.schedule!r}; use {' or '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise DataError(f"unknown precision {self.precision!r}; use {', '.join(PRECISIONS)}")
        if self.augment_on not in AUGMENT_ON:
            raise DataError(f"unknown augment_on {self.augment_on!r}; use {' or '.join(AUGMENT_ON)}")
        if self.metric != "auto" and self.metric not in METRICS:
            raise DataError(f"unknown metric {self.metric!r}; choose from auto, {', '.join(METRICS)}")
        if (self.val_images is None) != (self.val_labels is None):
            raise DataError("pass both --val-images and --val-labels, or neither")
        if self.iterations < 0 or self.batch_size < 1 or self.val_every < 1 or self.workers < 0:
            raise DataError("iterations, batch size, val-every and workers must be positive")
        if self.snapshot_every < 0:
            raise DataError(f"--snapshot-every {self.snapshot_every}: use 0 (none) or a number of iterations")
        if self.channels is not None:
            self.channels = [int(c) for c in self.channels]
        if self.encoder is not None:
            from biounet.model.config import DEPTH
            from biounet.model.encoders import EncoderError, check_encoder

            try:
                check_encoder(self.encoder)
            except EncoderError as err:
                raise DataError(f"{err} (--encoder)") from None
            self.depth, self.padding, self.batch_norm = DEPTH, "same", True
        elif self.encoder_weights is not None:
            raise DataError("--encoder-weights needs --encoder NAME (the encoder they belong to)")
        if self.width is None:
            self.width = 16 if self.encoder else 64
        if self.pixel_size is not None and not self.pixel_size > 0:
            raise DataError(f"--pixel-size {self.pixel_size}: give the images' pixel size in um/px, e.g. 0.25")
        if self.time_budget is not None and self.time_budget <= 0:
            raise DataError(f"--time-budget {self.time_budget}: give a positive number of CPU seconds")
        try:
            over_folder(self.normalization)
        except ValueError as err:
            raise DataError(str(err)) from None
        low, high = (self.augment or {}).get("scale_range", (1.0, 1.0))
        if not 0 < low <= high:
            raise DataError(f"grey-value scale range ({low}, {high}): use 0 < LOW <= HIGH (--intensity-scale)")

    @property
    def learning_rate(self) -> float:
        return DEFAULT_LR[self.optimizer] if self.lr is None else self.lr

    def augment_params(self) -> AugmentParams | None:
        if self.augment is None:
            return None
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in self.augment.items()}
        return AugmentParams(**data)

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- pieces


def default_tile(geometry: Geometry, shapes: Sequence[tuple[int, int]], preferred: int = DEFAULT_TILE,
                 whole: bool = False) -> int:
    """`preferred` (572) if valid and its output fits the smallest image, else the largest valid size that does
    (`whole`: the tile itself must fit, for networks trained on the whole patch)."""
    side = min(min(s) for s in shapes)
    tile = geometry.nearest_valid(preferred, "down") if not geometry.is_valid(preferred) else preferred
    while tile > geometry.min_input and (tile if whole else geometry.output_size(tile)) > side:
        tile -= geometry.align
    return max(tile, geometry.min_input)


def choose_metric(metric: str, examples: Sequence[Example], ignore: int | None) -> tuple[str, bool]:
    """(metric, membrane): membrane scores when every validation label is a 0/1 mask."""
    membrane = bool(examples) and all(is_class_mask(e.labels, ignore) for e in examples)
    if metric == "auto":
        metric = "rand_error" if membrane else "average_f1"
    if metric in ("rand_error", "pixel_error") and not membrane:
        membrane = True
    return metric, membrane


def learning_rate_at(base: float, schedule: str, iteration: int, iterations: int) -> float:
    """Learning rate of step `iteration` (0-based): constant, or cosine-annealed to 0 over the run.

    A function of the iteration only, so a resumed run follows the same schedule.
    """
    if schedule == "cosine" and iterations > 0:
        return base * 0.5 * (1.0 + math.cos(math.pi * min(iteration, iterations) / iterations))
    return base


def better(value: float, best: float | None, metric: str) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value > best if METRICS[metric] == "max" else value < best


def validate(net: UNet, spec: ModelSpec, examples: Sequence[Example], membrane: bool,
             ignore: int | None = None, stats: np.ndarray | None = None) -> dict:
    """Data-set scores of whole images through the tiled prediction engine (see `biounet.evaluate.run`).

    stats: normalisation bounds shared by every image (None: each image's own).
    """
    was_training = net.training
    net.eval()
    try:
        scores = []
        for ex in examples:
            instances, foreground = prediction(predict_array(net, spec, ex.image, stats=stats), spec)
            scores.append(score(ex.name, ex.labels, instances, foreground, membrane=membrane, ignore=ignore))
    finally:
        net.train(was_training)
    summary = summarize(scores)
    return {k: v for k, v in summary.items() if k != "image"}


def weights_provenance(path: str | None) -> dict | None:
    """Where pretrained encoder weights came from: the file and its SHA-256."""
    if path is None:
        return None
    return {"path": str(Path(path).resolve()), "sha256": file_digest(Path(path))}


def start_from(net: UNet, spec: ModelSpec, path: str) -> None:
    """Load the weights of model file `path` into `net` (fine-tuning); the network and target must match."""
    other, other_spec = load_model(path)
    if other_spec.unet != spec.unet or other_spec.target != spec.target:
        raise DataError(f"--init {path} is a {other_spec.target} model of another shape ({other_spec.unet}); "
                        f"train with the same --target, --width, --depth and --padding")
    net.load_state_dict(other.state_dict())


def make_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.learning_rate, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.learning_rate, weight_decay=config.weight_decay)


def run_precision(requested: str, device: torch.device) -> str:
    """The precision a run takes on `device` (`choose_precision` with the GPU's capability)."""
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    return choose_precision(requested, device.type, capability)


def autocast(device_type: str, precision: str):
    """The forward pass's mixed-precision context (none for fp32)."""
    return nullcontext() if precision == "fp32" else torch.autocast(device_type, dtype=AMP_DTYPES[precision])


def make_scaler(device_type: str, precision: str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for fp16 only (bf16 has float32's range; disabled it passes
    the loss and the optimizer step through unchanged)."""
    return torch.amp.GradScaler(device_type, enabled=precision == "fp16")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """RNG states of python, numpy and torch in a form `torch.load(weights_only=True)` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(out: str | os.PathLike) -> Path:
    """`<out>.ckpt` next to the model."""
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


def snapshot_path(out: str | os.PathLike, iteration: int) -> Path:
    """`<out stem>.it<iteration>.pt` next to the model: the network at that iteration (`snapshot_every`)."""
    out = Path(out)
    base = out.with_suffix("") if out.suffix in (".pt", ".pth") else out
    return base.with_name(f"{base.name}.it{iteration:06d}.pt")


def log_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """(CSV log, PNG curves) next to the model."""
    out = Path(out)
    base = out.with_suffix("") if out.suffix in (".pt", ".pth") else out
    return base.with_name(base.name + ".log.csv"), base.with_name(base.name + ".curves.png")


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint's contents (tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - corrupt files raise many types
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a biounet training checkpoint")
    if data.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} comes from a newer biounet; upgrade to resume it")
    return data


def config_from_checkpoint(path: str | os.PathLike, **overrides) -> TrainConfig:
    """The run's config from a checkpoint, with `overrides` (e.g. iterations, workers) applied."""
    data = dict(read_checkpoint(path)["config"])
    data.update(overrides)
    data["resume"] = str(path)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in data.items() if k in known})


def _check_resume(config: TrainConfig, saved: dict) -> None:
    ours = config.to_dict()
    differ = [k for k in RUN_KEYS if _normal(ours.get(k)) != _normal(saved.get(k))]
    if differ:
        shown = ", ".join(f"{k} ({saved.get(k)!r} in the checkpoint, {ours.get(k)!r} now)" for k in differ)
        raise CheckpointError(f"the checkpoint belongs to another run: {shown}")


def _normal(value):
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return value


class TrainLog:
    """Per-iteration rows (iteration, loss, lr, seconds, val_*), written as CSV and plotted as PNG."""

    def __init__(self, out: str | os.PathLike, metric: str, rows: list[dict] | None = None) -> None:
        self.csv, self.png = log_paths(out)
        self.metric = metric
        self.rows: list[dict] = list(rows or [])

    def add(self, row: dict) -> None:
        self.rows.append(row)

    def write(self) -> None:
        columns = ["iteration", "loss", "lr", "seconds"]
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        tmp = self.csv.with_name(self.csv.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(self.rows)
        tmp.replace(self.csv)
        self.plot()

    def plot(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        it = np.array([r["iteration"] for r in self.rows])
        loss = np.array([r["loss"] for r in self.rows], dtype=float)
        fig = Figure(figsize=(9, 3.6), dpi=100)
        FigureCanvasAgg(fig)
        ax1, ax2 = fig.subplots(1, 2)
        ax1.plot(it, loss, color="0.75", lw=0.6, label="loss")
        if len(loss) >= 5:
            k = max(1, min(50, len(loss) // 10))
            smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
            ax1.plot(it[k - 1 :], smooth, color="C0", lw=1.5, label=f"mean of {k}")
        ax1.set_xlabel("iteration")
        ax1.set_ylabel("training loss")
        ax1.legend(loc="upper right", fontsize=8)
        keys = [f"val_{self.metric}"] + [k for k in ("val_pixel_error", "val_average_f1") if k != f"val_{self.metric}"]
        plotted = False
        for i, key in enumerate(keys):
            pts = [(r["iteration"], r[key]) for r in self.rows if r.get(key) not in (None, "")]
            if pts:
                x, y = zip(*pts)
                ax2.plot(x, y, "o-", ms=3, color=f"C{i + 1}", label=key[4:])
                plotted = True
        ax2.set_xlabel("iteration")
        ax2.set_ylabel("validation")
        if plotted:
            ax2.legend(fontsize=8)
        else:
            ax2.text(0.5, 0.5, "no validation data", ha="center", va="center", transform=ax2.transAxes)
        fig.tight_layout()
        fig.savefig(self.png)


# ---------------------------------------------------------------- the loop


def train(config: TrainConfig) -> Path:
    """Train a U-Net as `config` says; returns the model file (the best by validation)."""
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    saved = read_checkpoint(config.resume) if config.resume else None
    if saved is not None:
        _check_resume(config, saved["config"])

    seed_everything(config.seed)
    device = resolve_device(config.device)
    if device.type == "cpu":
        tune_malloc()
        torch.set_num_threads(cpu_threads())
    precision = run_precision(config.precision, device)
    params = config.augment_params()
    spec_t = TargetSpec(config.target, config.ignore, config.labels_kind, config.w0, config.sigma,
                        instances=params is not None and params.targets_after_warp)
    sources = load_sources(config.images, config.labels, spec_t, config.normalization, config.channels)
    examples = load_examples(config.val_images, config.val_labels, config.channels) if config.val_images else []
    val_stats = folder_stats((ex.image.reshape(ex.image.shape[0], -1) for ex in examples), config.normalization) \
        if examples else None
    in_channels = sources[0].channels
    for ex in examples:
        if ex.image.shape[0] != in_channels:
            raise DataError(f"validation image {ex.name} has {ex.image.shape[0]} channel(s), training images {in_channels}")
    metric, membrane = choose_metric(config.metric, examples, config.ignore)

    classes, post, head = TASKS[config.target]
    unet = UNetConfig(in_channels=in_channels, out_channels=len(classes), depth=config.depth, width=config.width,
                      padding=config.padding, batch_norm=config.batch_norm, head=head, encoder=config.encoder)
    geometry = unet.geometry()
    tile = config.tile or default_tile(geometry, [s.shape for s in sources], whole=config.encoder is not None)
    if config.encoder is None:
        geometry.check(tile)
    elif tile < geometry.align or tile % geometry.align:  # trained on whole patches: no context needed
        raise TileSizeError(f"--tile {tile}: an encoder U-Net trains on multiples of {geometry.align} px, "
                            f"e.g. {max(geometry.align, tile // geometry.align * geometry.align)}")
    # An encoder U-Net learns from the whole patch (its loss on every pixel); the U-Net from what it keeps.
    out_size = tile if config.encoder else geometry.output_size(tile)
    spec = ModelSpec(unet=unet, target=config.target, classes=list(classes), postprocess=dict(post),
                     normalization=dict(config.normalization), pixel_size=config.pixel_size,
                     diameter=object_diameter(sources))

    net = build_network(unet)
    if config.init and saved is None:
        start_from(net, spec, config.init)
    elif config.encoder_weights and saved is None:
        from biounet.model.pretrained import load_encoder_weights

        load_encoder_weights(net.encoder, config.encoder, config.encoder_weights)
    net = net.to(device).to(memory_format=torch.channels_last)
    net.train()
    optimizer = make_optimizer(config, net.parameters())
    scaler = make_scaler(device.type, precision)
    loss_fn = Loss(config.target, config.dice, config.regression)

    iteration, seconds, cpu, best = 0, 0.0, 0.0, {"value": None, "iteration": None, "scores": None}
    wrote = False
    log = TrainLog(out, metric)
    if saved is not None:
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if saved.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(saved["scaler"])
        iteration, seconds = int(saved["iteration"]), float(saved["seconds"])
        cpu = float(saved.get("cpu_seconds", 0.0))
        best = dict(saved["best"])
        log.rows = [dict(r) for r in saved["history"]]
        if saved["sampler"]["seed"] != config.seed or saved["sampler"]["next_batch"] != iteration:
            raise CheckpointError(f"{config.resume}: data stream position does not match the iteration")

    dataset = PatchDataset(sources, tile, out_size, config.batch_size, seed=config.seed, start=iteration,
                           target=config.target, augment=params,
                           foreground_bias=config.foreground_bias, sparse=config.ignore is not None,
                           raw_batches=config.augment_on == "device")

    def provenance() -> dict:
        return {
            "biounet_version": __version__,
            "images": str(Path(config.images).resolve()), "labels": str(Path(config.labels).resolve()),
            "val_images": str(Path(config.val_images).resolve()) if config.val_images else None,
            "val_labels": str(Path(config.val_labels).resolve()) if config.val_labels else None,
            "images_count": len(sources), "iterations": iteration, "best_iteration": best["iteration"],
            "metric": metric, "validation": best["scores"], "train_tile": tile, "batch_size": config.batch_size,
            "optimizer": config.optimizer, "lr": config.learning_rate, "schedule": config.schedule,
            "init": config.init, "seed": config.seed, "w0": config.w0, "precision": precision,
            "encoder": config.encoder, "encoder_weights": weights_provenance(config.encoder_weights),
            "time_budget": config.time_budget, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
            "sigma": config.sigma, "ignore": config.ignore, "dice": config.dice, "augment": config.augment is not None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    checkpointed = iteration if saved is not None else None

    def save_checkpoint() -> None:
        nonlocal checkpointed
        checkpointed = iteration
        _atomic_save({
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": config.to_dict(),
            "iteration": iteration, "seconds": seconds, "cpu_seconds": cpu, "model": net.state_dict(),
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "precision": precision,
            "rng": rng_state(),
            "sampler": {"seed": config.seed, "next_batch": iteration}, "best": best, "history": log.rows,
            "spec": spec.to_dict(),
        }, checkpoint_path(out))

    loader = make_loader(dataset, config.workers, device.type)
    batches = iter(loader)  # draws a base seed from torch's RNG: restore the checkpoint's state after it
    if saved is not None:
        set_rng_state(saved["rng"])
    start = time.perf_counter() - seconds
    cpu_start = time.process_time() - cpu
    last_val = ""
    bar = tqdm(total=config.iterations, initial=iteration, disable=not config.progress, unit="it",
               dynamic_ncols=True, desc="train")
    try:
        while iteration < config.iterations and not (config.time_budget is not None and cpu >= config.time_budget):
            batch = next(batches)
            if dataset.raw_batches:  # augmentation on the training device
                batch = dataset.finish(*(t.to(device, non_blocking=True) if torch.is_tensor(t) else t for t in batch))
            x, target, weight, mask = (t.to(device, non_blocking=True) for t in batch)
            x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device.type, precision):
                output = net(x)
            output = output.float()
            if output.shape[-1] != out_size:  # same padding: train on the kept centre
                output = center_crop(output, out_size, out_size)
            loss = loss_fn(output, target, weight, mask)
            loss_value = float(loss.item())  # read once: each read waits for the device
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss became {loss_value} at iteration {iteration + 1}; lower --lr")
            optimizer.zero_grad(set_to_none=True)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(config.learning_rate, config.schedule, iteration, config.iterations)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            iteration += 1
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            spent = config.time_budget is not None and cpu >= config.time_budget
            log.add({"iteration": iteration, "loss": loss_value, "lr": optimizer.param_groups[0]["lr"],
                     "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3)})
            bar.set_postfix_str(f"loss {loss_value:.4f}{last_val}", refresh=False)  # shown with the rate (it/s)
            bar.update(1)
            if config.snapshot_every and iteration % config.snapshot_every == 0:  # a candidate for selection
                spec.provenance = provenance()
                save_model(snapshot_path(out, iteration), net, spec)
            if iteration % config.val_every == 0 or iteration == config.iterations or spent:
                validation_cpu = time.process_time()
                if examples:
                    scores = validate(net, spec, examples, membrane, config.ignore, val_stats)
                    value = scores[metric]
                    log.rows[-1].update({f"val_{k}": v for k, v in scores.items()})
                    last_val = f", val {metric} {value:.4f}"
                    bar.set_postfix_str(f"loss {loss_value:.4f}{last_val}")
                    if better(value, best["value"], metric):
                        best = {"value": float(value), "iteration": iteration, "scores": scores}
                        spec.provenance = provenance()
                        save_model(out, net, spec)
                        wrote = True
                else:
                    best = {"value": None, "iteration": iteration, "scores": None}
                    spec.provenance = provenance()
                    save_model(out, net, spec)
                    wrote = True
                seconds = time.perf_counter() - start
                log.rows[-1]["seconds"] = round(seconds, 3)
                cpu_start += time.process_time() - validation_cpu  # the budget counts training steps only
                save_checkpoint()
                log.write()
            if spent:
                tqdm.write(f"time budget of {config.time_budget:g} CPU s spent at iteration {iteration}")
                break
    except KeyboardInterrupt:
        bar.close()
        if checkpointed is not None:
            tqdm.write(f"stopped at iteration {iteration}; continue from iteration {checkpointed} with "
                       f"'biounet train --resume {checkpoint_path(out)}'")
        raise
    finally:
        bar.close()
        del batches, loader
    if not wrote and (saved is None or not out.exists()):  # no iteration ran
        spec.provenance = provenance()
        save_model(out, net, spec)
    return out
