"""The stages of a run, each a function of (resources, task): what a block task does.

    predict   read the block's window, run the network, class map; write classes,
              the image copy and probabilities; keep the class map's bands (a block
              without tissue: only the image copy, its labels left empty)
    pass1     label the block's window; keep what the merge needs (`BlockLabels`)
    merge     the one global step: final ids of every block's local ids
    pass2     final ids of the block written; its rows of the object table
    pyramid   one block of pyramid level k of one array, from level k - 1
    table     the object table from every block's part, as CSV
    metadata  NGFF metadata, labels list last, then status `complete`

Every stage ends by recording what it finished in the run folder (after its
data is written), so a killed run redoes only unfinished tasks. `Resources` is
a run opened in one process (image, network, output), reused by every task of
that process; its caches spare a local run from reading back what it made.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from biounet.label.rules import InstanceRule, model_rule, scaled_rule
from biounet.label.sums import sum_dtype
from biounet.label.window import Bands, halo_window
from biounet.measure.table import ObjectTable, TablePart, csv_rows, summary, table_columns
from biounet.plan.blocks import Block
from biounet.plan.run import Run
from biounet.predict.classes import class_names, encode_probabilities, model_classes
from biounet.predict.rescale import read_scaled_block
from biounet.predict.source import BlockInput, read_block
from biounet.write import ngff
from biounet.write.pyramid import pyramid_block
from biounet.write.runfolder import RunFolder
from biounet.write.store import CLASSES, IMAGE, INSTANCES, PROBABILITIES, ArraySpec, OutputStore

if TYPE_CHECKING:
    from biounet.label.merge import Merge
    from biounet.label.pass1 import BlockLabels

# The labelling steps import their compiled loops (numba: about a second to load) when
# first used, so a run starts predicting while `segment` loads them on a side thread.

CLASS_COLOURS = [
    [0, 0, 0, 0],
    [255, 64, 64, 255],
    [64, 200, 255, 255],
    [255, 220, 0, 255],
    [120, 255, 120, 255],
    [200, 100, 255, 255],
]
STEPS = ("table", "metadata")  # the global steps with markers in the run folder's `done/steps`


def array_specs(run: Run) -> list[ArraySpec]:
    """The arrays a run writes, in the order their pyramids are indexed."""
    specs = [ArraySpec(CLASSES, "uint8"), ArraySpec(INSTANCES, "int32")]
    if run.write_image:
        specs.append(ArraySpec(IMAGE, run.image_dtype, run.image_channels, labels=False))
    if run.probabilities:
        specs.append(ArraySpec(PROBABILITIES, run.probabilities, run.spec.unet.out_channels, labels=False))
    return specs


def class_labels(run: Run) -> list[str]:
    return class_names(run.spec.classes, run.spec.unet.head)


@dataclass(frozen=True)
class PyramidTask:
    """Block `block` (an index into the level's blocks) of level `level` of array `path`."""

    index: int  # the task's number in the run folder's `done/pyramid`
    path: str
    level: int
    block: int


def pyramid_tasks(run: Run) -> list[PyramidTask]:
    """Every pyramid block task of a run, numbered in a fixed order."""
    tasks = []
    for spec in array_specs(run):
        for level in range(1, run.layout.levels):
            for b in run.layout.blocks(level):
                tasks.append(PyramidTask(len(tasks), spec.path, level, b.index))
    return tasks


class Resources:
    """A run opened in one process: the image (read lazily), the network (loaded once),
    the output store and run folder, and caches of what this process made."""

    def __init__(self, run: Run, threads: int | None = None, cache_classes: bool = False) -> None:
        self.run = run
        self.threads = threads
        self.store = OutputStore(run.output, run.layout, array_specs(run))
        self.folder = RunFolder(run.output, run.layout.zarr_format)
        self.rule: InstanceRule = scaled_rule(model_rule(run.spec.postprocess), run.scale.factor)
        self.stats = np.asarray(run.stats, dtype=np.float64)
        self.fallback: dict = {}  # smaller tile / batch after running out of memory (see predict_block)
        self.cache_classes = cache_classes
        self.classes: dict[int, np.ndarray] = {}  # class maps waiting for their own pass 1 (local runs)
        self.room = threading.Condition()  # signalled when pass 1 takes a class map out of `classes`
        self.bands: dict[int, Bands] = {}
        self.labels: dict[int, BlockLabels] = {}
        self.parts: dict[int, TablePart | None] = {}
        self._merge: Merge | None = None
        self._lock = threading.Lock()
        self._image = None
        self._nets: dict[str, object] = {}
        self._grid = {(b.plane, b.y0 // run.layout.block, b.x0 // run.layout.block): b for b in run.blocks}
        self._skipped: frozenset[int] | None = None

    @property
    def image(self):
        with self._lock:
            if self._image is None:
                from biounet.read.image import open_image

                self._image = open_image(self.run.input, self.run.axes)
            return self._image

    @property
    def devices(self) -> list:
        """The devices this process's network threads use (every GPU `--device` names)."""
        from biounet.runtime.devices import resolve_devices

        return resolve_devices(self.run.device)

    def net_on(self, device=None):
        """The network, loaded once per device and prepared for it."""
        device = self.devices[0] if device is None else device
        with self._lock:
            key = str(device)
            if key not in self._nets:
                from biounet.model.file import load_model
                from biounet.predict.device import prepare

                net, _ = load_model(self.run.model, self.run.weights)
                self._nets[key] = prepare(net, device, self.threads, self.run.precision, self.run.compile,
                                          self.run.tta)
            return self._nets[key]

    @property
    def net(self):
        return self.net_on()

    def network_on_cpu(self) -> bool:
        """Whether a (non-trivial) network runs on this process's CPU."""
        return self.devices[0].type == "cpu" and not getattr(self.net, "cheap", False)

    def skipped(self, index: int) -> bool:
        """Whether block `index` is not predicted (no tissue: `biounet.pipeline.tissue`), as the
        run record says."""
        if self._skipped is None:
            from biounet.pipeline.tissue import skipped_blocks

            self._skipped = skipped_blocks(self.folder.read_record())
        return index in self._skipped

    def neighbour(self, block: Block, dy: int, dx: int) -> Block | None:
        """The level-0 block dy rows and dx columns of blocks away (None outside the slide)."""
        b = self.run.layout.block
        return self._grid.get((block.plane, block.y0 // b + dy, block.x0 // b + dx))


def network_on_cpu(res: Resources) -> bool:
    return res.network_on_cpu()


# -- predict ------------------------------------------------------------------------------


def read_input(res: Resources, block: Block) -> BlockInput:
    """The block's input window for the network (in model space when rescaled) and its pixels."""
    run = res.run
    if run.scale.rescaled:
        return read_scaled_block(res.image, run.level, run.scale, block, run.tile, run.geometry, res.stats,
                                 run.channels, keep_pixels=run.write_image)
    return read_block(res.image, run.level, block, run.tile, run.geometry, res.stats, run.channels,
                      keep_pixels=run.write_image)


def predict_output(res: Resources, block: Block, window: np.ndarray, device=None):
    """The network's output for a block's pixels (float32 tensor on the network's device)."""
    run = res.run
    if run.scale.rescaled:
        from biounet.predict.rescale import predict_scaled

        return predict_scaled(res.net_on(device), window, block, run.scale, run.tile, run.geometry, run.batch,
                              res.fallback)
    from biounet.predict.tiles import predict_block

    return predict_block(res.net_on(device), window, block, run.tile, run.geometry, run.batch, res.fallback)


@dataclass
class Prediction:
    """What a predicted block sends to the host: its class map (uint8) and, if the
    output keeps them, its encoded probabilities."""

    classes: np.ndarray
    probabilities: np.ndarray | None = None


def predict_classes(res: Resources, block: Block, window: np.ndarray, device=None) -> Prediction:
    """A block's class map (and probabilities), made on the network's device: from a GPU
    only these come back, as uint8 (and float16/uint8 probabilities if asked for)."""
    run = res.run
    output = predict_output(res, block, window, device)
    classes = model_classes(run.spec.postprocess, output)
    probabilities = encode_probabilities(output, run.probabilities) if run.probabilities else None
    return Prediction(_to_host(classes), None if probabilities is None else _to_host(probabilities))


def _to_host(tensor) -> np.ndarray:
    """A tensor's values as numpy: copied into pinned memory without blocking, then waited
    for on this thread's stream (the GPU goes on with the other thread's block)."""
    if tensor.device.type == "cpu":
        return tensor.numpy()
    import torch

    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    torch.cuda.current_stream(tensor.device).synchronize()
    return host.numpy()


def write_prediction(res: Resources, block: Block, prediction: Prediction, pixels: np.ndarray | None) -> None:
    """Class map and what else the output keeps of a predicted block; its bands; done."""
    run, store = res.run, res.store
    classes = prediction.classes
    store.write(CLASSES, 0, block, classes)
    if pixels is not None:
        store.write(IMAGE, 0, block, pixels if run.image_channels else pixels[0])
    if run.probabilities:
        store.write(PROBABILITIES, 0, block, prediction.probabilities)
    bands = Bands.of(classes, res.rule.halo)
    res.bands[block.index] = bands
    res.folder.put("bands", block.index, _pack(bands.arrays()))  # marks the block predicted
    if res.cache_classes:
        res.classes[block.index] = classes


def predict(res: Resources, block: Block) -> None:
    """The whole predict task of one block (distributed runs; local runs pipeline its parts)."""
    if res.skipped(block.index):
        return skip_block(res, block)
    window, pixels = read_input(res, block)
    write_prediction(res, block, predict_classes(res, block, window), pixels)


def skip_block(res: Resources, block: Block) -> None:
    """A block without tissue, not predicted: the image copy is written, its classes and
    probabilities are not (missing chunks read as 0), and its empty bands mark it done."""
    run = res.run
    if run.write_image:
        res.store.write(IMAGE, 0, block, res.image.read(run.level, block.index_in(run.image_axes)))
    bands = Bands.of(np.zeros(block.shape, np.uint8), res.rule.halo)
    res.bands[block.index] = bands
    res.folder.put("bands", block.index, _pack(bands.arrays()))


# -- labels -------------------------------------------------------------------------------


def _pack(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _unpack(data: bytes) -> dict[str, np.ndarray]:
    import io

    with np.load(io.BytesIO(data)) as f:
        return {k: f[k] for k in f.files}


def bands_of(res: Resources, block: Block) -> Bands:
    bands = res.bands.get(block.index)
    if bands is None:
        bands = Bands(**_unpack(res.folder.get("bands", block.index)))
        res.bands[block.index] = bands
    return bands


def halo_classes(res: Resources, block: Block, classes: np.ndarray | None = None) -> tuple[np.ndarray, int, int]:
    """The block's class map with its neighbours' bands around it (and its origin)."""
    if classes is None:
        classes = res.store.read(CLASSES, 0, block)
    *_, height, width = res.run.layout.shape
    return halo_window(block, classes, lambda dy, dx: bands_of(res, res.neighbour(block, dy, dx)),
                       res.rule.halo, height, width)


def pass1(res: Resources, block: Block) -> None:
    from biounet.label.pass1 import first_pass

    with res.room:
        classes = res.classes.pop(block.index, None)
        res.room.notify_all()
    window, y0, x0 = halo_classes(res, block, classes)
    result = first_pass(window, (y0, x0), block, res.rule, res.run.layout.shape)
    res.folder.put("pass1", block.index, result.to_bytes())
    res.labels[block.index] = result


def labels_of(res: Resources, block: Block) -> BlockLabels:
    from biounet.label.pass1 import BlockLabels

    result = res.labels.get(block.index)
    if result is None:
        result = BlockLabels.from_bytes(res.folder.get("pass1", block.index), block)
    return result


def merge_step(res: Resources) -> None:
    from biounet.label.merge import merge

    joined = merge([labels_of(res, b) for b in res.run.blocks], res.run.layout.shape, res.rule)
    res.folder.put("merge", 0, joined.to_bytes())
    res._merge = joined
    res.labels.clear()


def merged(res: Resources) -> Merge:
    from biounet.label.merge import Merge

    with res._lock:
        if res._merge is None:
            res._merge = Merge.from_bytes(res.folder.get("merge", 0))
        return res._merge


def intensity(res: Resources, block: Block) -> np.ndarray:
    """Raw intensity of the block (first model channel), for the object table: from
    the output's copy of the image if it has one (faster to read than most inputs)."""
    run = res.run
    c = run.channels[0] if run.channels else 0
    if run.write_image:
        return res.store.read(IMAGE, 0, block, channel=c)
    return np.asarray(res.image.read(run.level, block.index_in(run.image_axes, c=c)))


def pass2(res: Resources, block: Block) -> None:
    from biounet.label.pass2 import second_pass

    window, y0, x0 = halo_classes(res, block)
    lut = merged(res).block_lut(block.index)
    final, sums = second_pass(window, (y0, x0), block, res.rule, lut, lambda: intensity(res, block))
    res.store.write(INSTANCES, 0, block, final)
    part = None if sums is None else TablePart.of(sums, _plane(res.run, block))
    res.folder.put("table", block.index, part.to_bytes() if part is not None else b"")
    res.parts[block.index] = part


def _plane(run: Run, block: Block) -> int:
    return int(np.ravel_multi_index(block.plane, run.layout.shape[:-2])) if block.plane else 0


def pyramid(res: Resources, task: PyramidTask) -> None:
    block = res.run.layout.blocks(task.level)[task.block]
    pyramid_block(res.store, task.path, task.level, block)
    res.folder.mark("pyramid", task.index)


# -- the end ------------------------------------------------------------------------------


def part_of(res: Resources, block: Block) -> TablePart | None:
    if block.index in res.parts:
        return res.parts[block.index]
    data = res.folder.get("table", block.index)
    return TablePart.from_bytes(data) if data else None


def table_step(res: Resources) -> None:
    """The object table (CSV next to the output, written atomically) and the summary."""
    run = res.run
    table = ObjectTable.empty(merged(res).count, sum_dtype(run.image_dtype))
    for b in run.blocks:
        table.add(part_of(res, b))
    header, columns = table_columns(table, run.layout.pixel_size.get("x", (None,))[0])
    path = run.table
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as f:
        import csv

        csv.writer(f).writerow(header)
        for start in range(0, len(columns[0]), 8192):
            f.write(csv_rows(columns, start, start + 8192))
    os.replace(tmp, path)
    res.folder.update_record(objects=merged(res).count, summary=summary(table))
    res.folder.mark("steps", STEPS.index("table"))


def metadata_step(res: Resources) -> None:
    """NGFF metadata of every array, the labels list last, then status `complete`."""
    run, layout = res.run, res.run.layout
    root = Path(run.output)
    factors = layout.factors()
    for spec in array_specs(run):
        axes = layout.array_shape(0, spec.channels)[0]
        name = spec.name if spec.path else root.name
        entry = ngff.multiscales(name, axes, layout.pixel_size, factors, not spec.labels, layout.ngff)
        extra = None
        if spec.path == CLASSES:
            names = class_labels(run)
            extra = ngff.image_label(CLASS_COLOURS[: max(2, len(names))],
                                     [{"label-value": i, "class": c} for i, c in enumerate(names)], layout.ngff)
        elif spec.path == INSTANCES:
            extra = ngff.image_label(None, None, layout.ngff)
        elif not spec.path and run.image_rgb:
            extra = ngff.omero_rgb(layout.ngff)
        ngff.write_multiscales(root, spec.path, entry, layout.ngff, extra)
    tissue = ["tissue"] if (res.folder.read_record() or {}).get("tissue") else []
    ngff.write_labels_list(root, ["classes", "instances", *tissue], layout.ngff)
    set_status(root, "complete", run.params)
    res.folder.update_record(status="complete")
    res.folder.mark("steps", STEPS.index("metadata"))
    res.folder.clean()  # resume state is of no use once the output is complete


def set_status(output: Path, status: str, params: dict) -> None:
    """Record the run's parameters and status in the root attributes."""
    import zarr

    root = zarr.open_group(str(output), mode="r+")
    root.attrs["biounet"] = {"status": status, "params": params}
