"""Training data: image/label pairs, their targets and weight maps, random patches.

Sources of pairs
- Two folders (`images/`, `labels/`) whose files are matched by name stem
  (`a.tif`, `a.ome.tif`, `a.png`, `a.zarr` all have stem `a`).
- One large slide and its label array (TIFF or zarr, or such files in the
  folders): anything above `LAZY_PIXELS` becomes a `LazySource` that opens
  the files with `biounet.read.image.open_image` and reads only the sampled windows.
  Smaller images are read whole into an `ArraySource`, with their targets and
  weight map computed once.

Labels are instance ids (0 = background) or class masks (only 0 and 1, e.g.
ISBI 2012: 1 = cell interior, 0 = membrane). A class mask becomes instances
by its 8-connected components, which never touch, so the binary target of a
mask is the mask itself. Pixels equal to `ignore` are unannotated: they carry
the ignore class (255), weight 0 and mask False.

Inputs are normalised exactly as prediction does it (`normalization_stats` of
the whole image, or of a sample of a large slide as `segment` takes it).

Patches: `PatchDataset` yields whole batches, (image, target, weight, mask) =
((B,C,T,T) float32, (B,O,O) int64 class or float32 distance, (B,O,O) float32,
(B,O,O) bool), T the network's input tile and O its output size. Each sample is
a random window whose output part lies inside the image where the image is
large enough, mirrored at the edges. Augmentation runs batched in torch inside
the DataLoader workers, in parallel with the network step (or, with
`raw_batches`, on the training device: `PatchDataset.finish`): one sampling grid
per sample (`biounet.train.augment`) warps the whole input tile, and its
centre O x O part warps the targets (labels nearest, weights bilinear), so the
targets are exactly what the network's output pixels see.

Reproducibility: batch i is a pure function of (seed, i): its window positions
come from `numpy.random.default_rng([seed, i])` and its augmentation from a
torch generator seeded from that. Worker w of n makes batches w, w + n, ...;
the DataLoader hands them out in order, so the stream is the same with any
number of workers, and resuming at iteration k just starts at batch k.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import dask.array as da
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from biounet.plan.mirror import mirror_window
from biounet.predict.normalize import folder_stats, normalization_stats, normalize
from biounet.read.files import (
    INTERNAL_IGNORE,
    DataError,
    find_pairs,
    image_sample,
    open_cyx,
    read_image,
    read_labels,
    to_instances,
)
from biounet.runtime.devices import cpu_threads
from biounet.train.augment import AugmentParams, apply_warp, augment_images, random_warp_grid
from biounet.train.targets import (
    IGNORE_INDEX,
    binary_target,
    distance_target,
    separate_touching,
    three_class_target,
)
from biounet.train.warped_targets import class_target_from_instances, class_weight_map
from biounet.train.weights import border_cutoff, border_term, cached_weight_map, class_weights, weight_map

LAZY_PIXELS = 2**26
"""Images with more pixels per plane than this are read lazily, window by window."""
TARGETS = ("binary", "3class", "distance")
MAX_TRIES = 20
"""Windows drawn per sample before accepting one without annotation / foreground."""
CLASS_WINDOW = 512
CLASS_SAMPLE_SIDE = 4
"""A large slide's class weights come from up to 4 x 4 windows of 512 px."""


@dataclass
class Example:
    """A whole image (C, H, W), raw values, and its labels (H, W): for validation and evaluation."""

    name: str
    image: np.ndarray
    labels: np.ndarray


def load_examples(images: str | os.PathLike, labels: str | os.PathLike, channels: Sequence[int] | None = None) -> list[Example]:
    """Every matched pair, read whole."""
    out = []
    for name, image_path, label_path in find_pairs(images, labels):
        image, lab = read_image(image_path, channels), read_labels(label_path)
        _check_shapes(name, image.shape[-2:], lab.shape)
        out.append(Example(name, image, lab))
    return out


def _check_shapes(name: str, image: tuple, labels: tuple) -> None:
    if tuple(image) != tuple(labels):
        raise DataError(f"{name}: image is {tuple(image)} pixels but its labels are {tuple(labels)}")


# ---------------------------------------------------------------- targets


@dataclass(frozen=True)
class TargetSpec:
    """How label images become training targets.

    target: "binary" (the paper: background / cell, touching cells separated by
    a background line), "3class" (background / interior / boundary) or
    "distance" (regression: normalised distance to the cell border).
    labels: "instances", "classes" (a 0/1 mask) or "auto" (a mask when the
    annotated values are only 0 and 1).
    """

    target: str = "binary"
    ignore: int | None = None
    labels: str = "auto"
    w0: float = 10.0
    sigma: float = 5.0
    instances: bool = False
    """Also keep the instance ids, border term and class weights (`Targets`), so that a class
    target can be computed again after warping (`AugmentParams.targets_after_warp`)."""

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise DataError(f"unknown target {self.target!r}; choose from {', '.join(TARGETS)}")
        if self.instances and self.target == "distance":
            raise DataError("targets after the warp are for the binary and 3class targets, not distance")
        if self.labels not in ("auto", "instances", "classes"):
            raise DataError(f"labels must be auto, instances or classes, got {self.labels!r}")


@dataclass
class Targets:
    """Per-pixel training data of one label image (all (H, W))."""

    target: np.ndarray  # uint8 classes (255 = ignore) or float32 distance
    weight: np.ndarray  # float32 loss weight, 0 where ignored
    mask: np.ndarray  # bool: annotated
    foreground: np.ndarray  # bool: annotated foreground (for foreground-biased sampling)
    instances: np.ndarray | None = None  # int32 ids, INTERNAL_IGNORE where unannotated (TargetSpec.instances)
    border: np.ndarray | None = None  # float32 border term of eq. 2 at every pixel (likewise)
    per_class: np.ndarray | None = None  # float32 class weights w_c (likewise)

    def crop(self, cut) -> Targets:
        """These targets with `cut` applied to every per-pixel array."""
        arrays = {k: None if v is None else cut(v) for k, v in vars(self).items() if k != "per_class"}
        return Targets(**arrays, per_class=self.per_class)


def make_targets(labels: np.ndarray, spec: TargetSpec, cache: bool = False,
                 weights: Sequence[float] | None = None) -> Targets:
    """Target, weight map (paper eq. 2), mask and foreground of a label image; with
    `spec.instances` also the ids, border term and class weights they came from.

    weights: fixed class weights w_c (default: balanced on this label image).
    """
    inst = to_instances(labels, spec.ignore, spec.labels)
    ign = INTERNAL_IGNORE
    border = None
    if spec.target == "binary":
        target, classes = binary_target(inst, ignore=ign), 2
        make = cached_weight_map if cache else weight_map
        weight = np.array(make(inst, ignore=ign, w0=spec.w0, sigma=spec.sigma, class_weights=weights),
                          dtype=np.float32)
        mask = target != IGNORE_INDEX
        foreground = target == 1
    elif spec.target == "3class":
        target, classes = three_class_target(inst, ignore=ign), 3
        mask = target != IGNORE_INDEX
        weight = _class_weights_of(target, classes, weights)[np.minimum(target, 2)].astype(np.float32)
        background = target == 0
        if spec.w0 > 0:
            border = border_term(separate_touching(inst, ignore=ign), w0=spec.w0, sigma=spec.sigma)
            weight[background] += border[background]
        weight[~mask] = 0.0
        foreground = mask & ~background
    else:
        target = distance_target(inst, ignore=ign)
        mask = inst != ign
        weight = mask.astype(np.float32)
        foreground = target > 0
    if not spec.instances:
        return Targets(target, weight, mask, foreground)
    if border is None:
        border = (border_term(separate_touching(inst, ignore=ign), w0=spec.w0, sigma=spec.sigma) if spec.w0 > 0
                  else np.zeros(inst.shape, np.float32))
    return Targets(target, weight, mask, foreground, inst.astype(np.int32), border.astype(np.float32),
                   _class_weights_of(target, classes, weights).astype(np.float32))


def _class_weights_of(target: np.ndarray, classes: int, weights: Sequence[float] | None) -> np.ndarray:
    """The given class weights w_c, or those balanced on this target."""
    return class_weights(target, classes) if weights is None else np.asarray(weights, np.float64)


# ---------------------------------------------------------------- sources


class Source(Protocol):
    """A training image with labels that patches are cut from."""

    name: str
    shape: tuple[int, int]
    channels: int

    def window(self, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, Targets]:
        """Normalised image (C, h, w) and targets of a window, mirrored beyond the edges."""

    def check(self, y0: int, y1: int, x0: int, x1: int) -> tuple[bool, bool]:
        """(any annotated pixel, any foreground pixel) in a window."""


def _mirror(arr: np.ndarray, shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    return mirror_window(lambda ys, xs: arr[..., ys, xs], shape, y0, y1, x0, x1)


@dataclass
class ArraySource:
    """An image held in memory, normalised, with its targets computed once."""

    name: str
    image: np.ndarray  # (C, H, W) float32, normalised
    targets: Targets
    areas: np.ndarray | None = None  # the objects' areas in px

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.image.shape[-2:])

    @property
    def channels(self) -> int:
        return self.image.shape[0]

    def window(self, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, Targets]:
        crop = lambda a: _mirror(a, self.shape, y0, y1, x0, x1)  # noqa: E731
        return crop(self.image), self.targets.crop(crop)

    def check(self, y0: int, y1: int, x0: int, x1: int) -> tuple[bool, bool]:
        return (bool(_mirror(self.targets.mask, self.shape, y0, y1, x0, x1).any()),
                bool(_mirror(self.targets.foreground, self.shape, y0, y1, x0, x1).any()))


def array_source(name: str, image: np.ndarray, labels: np.ndarray, spec: TargetSpec, normalization: dict,
                 stats: np.ndarray | None = None) -> ArraySource:
    """Normalise a whole (C, H, W) image as prediction does (or with given `stats`) and compute its targets."""
    _check_shapes(name, image.shape[-2:], labels.shape)
    if stats is None:
        stats = normalization_stats(image.reshape(image.shape[0], -1).astype(np.float64), normalization)
    return ArraySource(name, normalize(image, stats), make_targets(labels, spec, cache=True),
                       object_areas(labels, spec.ignore, spec.labels))


def object_areas(labels: np.ndarray, ignore: int | None = None, kind: str = "auto") -> np.ndarray:
    """The areas (px) of a label image's objects as training sees them: instance ids, or a 0/1 class
    mask's 8-connected components (`to_instances`)."""
    inst = to_instances(labels, ignore, kind)
    areas = np.bincount(inst[inst > 0].ravel())[1:]
    return areas[areas > 0]


def median_diameter(areas: Sequence[np.ndarray]) -> float | None:
    """Median equivalent diameter (px, 2 sqrt(area / pi), rounded to 0.01) of the objects of all the
    area arrays together (None if there are none): the `diameter` a model file records."""
    areas = [a for a in areas if a is not None and len(a)]
    if not areas:
        return None
    return round(float(np.median(2 * np.sqrt(np.concatenate(areas) / np.pi))), 2)


def object_diameter(sources: Sequence[Source]) -> float | None:
    """Median equivalent diameter (px) of the labelled objects of the in-memory sources (None if none)."""
    return median_diameter([getattr(s, "areas", None) for s in sources])


class LazySource:
    """A large image and label array read window by window (never whole).

    Normalisation statistics come from a low-resolution level or a sample of
    chunks, as `segment` takes them. Targets are computed on the window grown
    by the weight map's reach (`border_cutoff`), so the border term is the
    whole image's up to its eps; the class weights w_c are fixed from the
    class frequencies of up to 4 x 4 evenly spread windows (not per
    window); the distance target's per-cell scaling sees only the part of a
    cell inside the grown window. Files are reopened in each process
    (tifffile's zarr stores must not be shared across a fork).
    """

    def __init__(self, name: str, image: Path, labels: Path, spec: TargetSpec, normalization: dict,
                 channels: Sequence[int] | None = None, stats: np.ndarray | None = None) -> None:
        self.name, self.image_path, self.labels_path = name, Path(image), Path(labels)
        self.spec, self.channel_list = spec, None if channels is None else list(channels)
        arr, _ = open_cyx(self.image_path, channels)
        lab, _ = open_cyx(self.labels_path)
        if lab.shape[0] != 1:
            raise DataError(f"label image {labels} has {lab.shape[0]} channels; expected one")
        _check_shapes(name, arr.shape[-2:], lab.shape[-2:])
        self.shape = tuple(arr.shape[-2:])
        self.channels = arr.shape[0]
        if stats is None:
            stats = normalization_stats(image_sample(self.image_path, channels), normalization)
        self.stats = stats
        self.reach = math.ceil(border_cutoff(spec.sigma)) + 2
        self._pid: int | None = None
        self._arrays: tuple | None = None
        self.class_weights = self._class_weights() if spec.target != "distance" else None

    def _class_weights(self) -> list[float]:
        """Balanced w_c from the class counts of evenly spread windows."""
        n = 3 if self.spec.target == "3class" else 2
        size = CLASS_WINDOW
        h, w = self.shape
        ny = min(CLASS_SAMPLE_SIDE, max(1, h // size))
        nx = min(CLASS_SAMPLE_SIDE, max(1, w // size))
        counts = np.zeros(n)
        _, labels = self.arrays()
        for y in np.linspace(0, max(h - size, 0), ny).astype(int):
            for x in np.linspace(0, max(w - size, 0), nx).astype(int):
                t = make_targets(self._read(labels, y, min(y + size, h), x, min(x + size, w)), self.spec).target
                counts += np.bincount(t[t != IGNORE_INDEX].ravel(), minlength=n)[:n]
        weights = np.ones(n)
        present = counts > 0
        weights[present] = counts.max() / counts[present]
        return weights.tolist()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_pid"], state["_arrays"] = None, None
        return state

    def arrays(self) -> tuple:
        """(image (C,H,W), labels (H,W)) lazy arrays opened in this process."""
        if self._pid != os.getpid():
            image, _ = open_cyx(self.image_path, self.channel_list)
            labels, _ = open_cyx(self.labels_path)
            self._arrays, self._pid = (image, labels[0]), os.getpid()
        return self._arrays

    def _read(self, arr, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        def read(ys, xs):
            part = arr[..., ys, xs]
            return part.compute(scheduler="synchronous") if isinstance(part, da.Array) else part

        return mirror_window(read, self.shape, y0, y1, x0, x1)

    def window(self, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, Targets]:
        image, labels = self.arrays()
        raw = self._read(image, y0, y1, x0, x1)
        r = self.reach
        grown = make_targets(self._read(labels, y0 - r, y1 + r, x0 - r, x1 + r), self.spec,
                             weights=self.class_weights)
        return normalize(raw, self.stats), grown.crop(lambda a: a[r : r + y1 - y0, r : r + x1 - x0])

    def check(self, y0: int, y1: int, x0: int, x1: int) -> tuple[bool, bool]:
        _, labels = self.arrays()
        lab = self._read(labels, y0, y1, x0, x1)
        ignore = self.spec.ignore
        annotated = lab != ignore if ignore is not None else np.ones(lab.shape, bool)
        return bool(annotated.any()), bool((annotated & (lab != 0)).any())


def load_sources(images: str | os.PathLike, labels: str | os.PathLike, spec: TargetSpec, normalization: dict,
                 channels: Sequence[int] | None = None, lazy_pixels: int = LAZY_PIXELS) -> list[Source]:
    """Training sources for every pair; small images in memory, large ones lazy.

    In-memory targets are computed on a few threads (the weight maps dominate).
    """
    pairs = find_pairs(images, labels)
    stats = folder_stats((image_sample(path, channels) for _, path, _ in pairs), normalization)
    small, sources = [], {}
    for name, image_path, label_path in pairs:
        arr, _ = open_cyx(image_path, channels)
        if arr.shape[-1] * arr.shape[-2] > lazy_pixels:
            sources[name] = LazySource(name, image_path, label_path, spec, normalization, channels, stats)
        else:
            small.append((name, image_path, label_path))

    def load(pair):
        name, image_path, label_path = pair
        return name, array_source(name, read_image(image_path, channels), read_labels(label_path), spec,
                                  normalization, stats)

    with ThreadPoolExecutor(max(1, min(cpu_threads(), len(small)))) as pool:
        sources.update(dict(pool.map(load, small)))
    out = [sources[name] for name, _, _ in pairs]
    counts = {s.channels for s in out}
    if len(counts) > 1:
        raise DataError(f"training images have different numbers of channels: {sorted(counts)}")
    return out


# ---------------------------------------------------------------- patches


def _origin(rng: np.random.Generator, size: int, out: int) -> int:
    """Start of an output window: inside the image when it fits, else covering it."""
    return int(rng.integers(0, size - out + 1)) if size >= out else int(rng.integers(size - out, 1))


def batch_seed(seed: int, index: int) -> np.random.Generator:
    """The numpy generator of batch `index` (a pure function of seed and index)."""
    return np.random.default_rng([seed, index])


@dataclass
class PatchDataset(IterableDataset):
    """Endless stream of augmented training batches (see module doc).

    tile: network input size T; out: output size O (T - 2 margin);
    start: index of the first batch (the iteration to resume at);
    foreground_bias: fraction of samples whose output window must contain
    foreground (drawn up to MAX_TRIES times); windows without any annotated
    pixel are redrawn likewise when labels have an ignore value.
    """

    sources: list
    tile: int
    out: int
    batch_size: int
    seed: int = 0
    start: int = 0
    target: str = "binary"
    augment: AugmentParams | None = field(default_factory=AugmentParams)
    foreground_bias: float = 0.0
    sparse: bool = False
    stop: int | None = None
    raw_batches: bool = False
    """Yield `raw` batches (the consumer calls `finish`, e.g. on a GPU) instead of finished ones."""

    def __post_init__(self) -> None:
        super().__init__()
        if not self.sources:
            raise DataError("no training images")
        if (self.tile - self.out) % 2 or self.out < 1:
            raise ValueError(f"output size {self.out} does not fit centred in tile {self.tile}")
        area = np.array([s.shape[0] * s.shape[1] for s in self.sources], dtype=np.float64)
        self.probs = area / area.sum()

    @property
    def margin(self) -> int:
        return (self.tile - self.out) // 2

    def sample(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """(source index, y0, x0) of one input window."""
        k = int(rng.choice(len(self.sources), p=self.probs))
        src = self.sources[k]
        want_fg = self.foreground_bias > 0 and rng.random() < self.foreground_bias
        o = self.out
        for _ in range(MAX_TRIES):
            oy, ox = _origin(rng, src.shape[0], o), _origin(rng, src.shape[1], o)
            if not (want_fg or self.sparse):
                break
            annotated, foreground = src.check(oy, oy + o, ox, ox + o)
            if annotated and (foreground or not want_fg):
                break
        return k, oy - self.margin, ox - self.margin

    @property
    def after_warp(self) -> bool:
        """Whether class targets are computed from the warped instance ids."""
        return self.augment is not None and self.augment.targets_after_warp

    def raw(self, index: int) -> tuple:
        """Batch number `index` before augmentation: (image, target, weight, mask) of whole
        input tiles (target uint8 classes or float32 distance) and its augmentation seed.
        With `after_warp`: (image, instance ids, border term, mask, seed, class weights (B, classes))."""
        rng = batch_seed(self.seed, index)
        places = [self.sample(rng) for _ in range(self.batch_size)]
        seed = int(rng.integers(2**63 - 1))
        t = self.tile
        parts = [self.sources[k].window(y0, y0 + t, x0, x0 + t) for k, y0, x0 in places]
        image = torch.from_numpy(np.stack([p[0] for p in parts]).astype(np.float32, copy=False))
        if self.after_warp:
            stack = lambda name: torch.from_numpy(np.stack([getattr(p[1], name) for p in parts]))  # noqa: E731
            return (image, stack("instances").long(), stack("border"), stack("mask"), seed, stack("per_class"))
        target = torch.from_numpy(np.stack([p[1].target for p in parts]))
        weight = torch.from_numpy(np.stack([p[1].weight for p in parts]).astype(np.float32, copy=False))
        mask = torch.from_numpy(np.stack([p[1].mask for p in parts]))
        return image, target, weight, mask, seed

    def finish(self, image: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
               seed: int, per_class: torch.Tensor | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A raw batch augmented (on the tensors' device) and its targets cut to the output:
        (image, target, weight, mask). Random numbers come from a CPU generator seeded with
        `seed`, so the batch does not depend on where this runs."""
        generator = torch.Generator().manual_seed(seed)
        m, o = self.margin, self.out
        if per_class is not None:
            return self._finish_after_warp(image, target, weight, generator, per_class)
        if self.augment is None:
            centre = lambda x: x[:, m : m + o, m : m + o].contiguous()  # noqa: E731
            target, weight, mask = centre(target), centre(weight), centre(mask)
        else:
            a = self.augment
            grid = self._warp_grid(len(image), generator, image.device)
            image, _, _ = apply_warp(image, None, None, grid, image_mode=a.image_mode)
            inner = grid[:, m : m + o, m : m + o].contiguous()
            if self.target == "distance":
                _, mask, target = apply_warp(None, mask.to(torch.uint8), target, inner)
                mask = mask.bool()
                weight = mask.float()
            else:
                _, target, weight = apply_warp(None, target, weight, inner)
                mask = target != IGNORE_INDEX
            image = augment_images(image, generator, a)
        weight = weight * mask
        if self.target != "distance":
            target = target.long()
        return image.contiguous(), target, weight, mask

    def _warp_grid(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        a, t = self.augment, self.tile
        return random_warp_grid(
            n, t, t, generator, sigma=a.sigma, points=a.points, max_rotation_deg=a.max_rotation_deg,
            flips=a.flips, rot90=a.rot90, zoom_range=a.zoom_range, device=device,
        )

    def _finish_after_warp(self, image: torch.Tensor, ids: torch.Tensor, border: torch.Tensor,
                           generator: torch.Generator, per_class: torch.Tensor) -> tuple:
        """`finish` with the class target computed from the warped ids. The ids are warped one
        pixel beyond the output on each side (where the tile has it), so that the boundaries at
        the output's edge see their outer neighbours."""
        m, o = self.margin, self.out
        ring = min(1, m)
        grid = self._warp_grid(len(image), generator, image.device)
        image, _, _ = apply_warp(image, None, None, grid, image_mode=self.augment.image_mode)
        around = grid[:, m - ring : m + o + ring, m - ring : m + o + ring].contiguous()
        _, ids, border = apply_warp(None, ids, border, around)
        image = augment_images(image, generator, self.augment)
        target = class_target_from_instances(ids, self.target, INTERNAL_IGNORE)
        keep = lambda x: x[:, ring : ring + o, ring : ring + o].contiguous()  # noqa: E731
        target, border = keep(target), keep(border)
        weight = class_weight_map(target, per_class, border)
        return image.contiguous(), target.long(), weight, target != IGNORE_INDEX

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch number `index`: (image, target, weight, mask)."""
        return self.finish(*self.raw(index))

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        index = self.start + worker
        while self.stop is None or index < self.stop:
            yield self.raw(index) if self.raw_batches else self.batch(index)
            index += workers


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def loader_options(workers: int = 0, device_type: str = "cpu") -> dict:
    """DataLoader settings: `workers` persistent processes of one thread each; batches in
    pinned memory when they go to a CUDA device (so their copies can be non-blocking)."""
    return {
        "batch_size": None, "num_workers": workers, "persistent_workers": workers > 0,
        "prefetch_factor": 2 if workers > 0 else None, "worker_init_fn": _worker_init if workers > 0 else None,
        "pin_memory": device_type == "cuda",
    }


def make_loader(dataset: PatchDataset, workers: int = 0, device_type: str = "cpu") -> DataLoader:
    """A DataLoader over the batch stream (see `loader_options`)."""
    return DataLoader(dataset, **loader_options(workers, device_type))
