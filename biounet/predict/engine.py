"""Running blocks: read (mirror-padded window), predict (tiles), write (zarr).

A `Job` is a small picklable description of the whole run; every process turns
it into a `Context` once (image opened, model loaded, network prepared) and
reuses it for all its blocks. The local runner overlaps reading the next
blocks and writing finished ones with the network's work on the current one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np
import torch
import zarr

from biounet.model.file import ModelSpec, load_model
from biounet.model.geometry import Geometry
from biounet.model.unet import UNet
from biounet.plan.blocks import Block
from biounet.plan.mirror import mirror_window
from biounet.postprocess import output_classes
from biounet.predict.device import prepare, resolve_device
from biounet.predict.normalize import normalize
from biounet.predict.resume import mark_done
from biounet.predict.tiles import DeviceMemoryError, block_window, predict_block
from biounet.read.image import ImageReadError, open_image
from biounet.write.omezarr import open_level0


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to process blocks of one run (picklable)."""

    input: str
    output: str
    model: str
    level: int = 0
    axes: str | None = None
    channels: tuple[int, ...] | None = None
    device: str = "auto"
    tile: int = 572
    batch: int = 1
    stats: tuple[tuple[float, float], ...] = ((0.0, 1.0),)
    probabilities: str | None = None  # None, "float16" or "uint8"
    threads: int | None = None  # torch threads per process (None: all cores it may use)
    image: bool = False  # also copy the block's pixels (all channels) into the output image


class BlockInput(NamedTuple):
    """What is read for one block: the network's normalised window (C, h, w) and, if
    the output keeps the image, the block's own raw pixels (all channels)."""

    window: np.ndarray
    pixels: np.ndarray | None


class BlockError(RuntimeError):
    """A block that failed, with the block named."""


def block_failure(block: Block, err: BaseException) -> BlockError:
    """A BlockError naming `block` and the cause (the message of our own errors,
    type and message of others)."""
    cause = str(err) if isinstance(err, (ImageReadError, DeviceMemoryError)) else f"{type(err).__name__}: {err}"
    cause = cause.strip().splitlines()[0] if cause.strip() else type(err).__name__
    failure = BlockError(f"block {block.index} ({block.describe()}) failed: {cause}")
    failure.block = block
    failure.__cause__ = err
    return failure


class Context:
    """A job opened in one process: image, network, output arrays."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.image = image = open_image(job.input, job.axes)
        self.data = image.levels[job.level]
        self.axes = image.axes
        self.net, self.spec = load_model(job.model)
        self.device = resolve_device(job.device)
        self.net = prepare(self.net, self.device, job.threads)
        self.geometry = Geometry(self.spec.unet.depth, self.spec.unet.padding)
        self.stats = np.asarray(job.stats, dtype=np.float64)
        self._lock = threading.Lock()
        self.fallback: dict = {}  # smaller tile / batch after running out of memory (see predict_block)

    @cached_property
    def classes(self) -> zarr.Array:
        return open_level0(self.job.output, "labels/classes")

    @cached_property
    def probabilities(self) -> zarr.Array:
        return open_level0(self.job.output, "probabilities")

    def region(self, block: Block, ys: slice, xs: slice) -> np.ndarray:
        """(C, Y, X) pixels of the block's plane, every channel, read now."""
        arr = self.image.read(self.job.level, block.index_in(self.axes, ys, xs))
        return arr if "c" in self.axes else arr[None]

    def read(self, block: Block) -> BlockInput:
        """The block's normalised input window, mirrored beyond the slide's edges (and
        its own pixels, to be copied into the output image)."""
        y0, y1, x0, x1, _, _ = block_window(block, self.job.tile, self.geometry)
        raw = mirror_window(lambda ys, xs: self.region(block, ys, xs), self.data.shape[-2:], y0, y1, x0, x1)
        pixels = None
        if self.job.image:
            pixels = raw[:, block.y0 - y0 : block.y1 - y0, block.x0 - x0 : block.x1 - x0].copy()
        if self.job.channels is not None:
            raw = raw[list(self.job.channels)]
        return BlockInput(normalize(raw, self.stats), pixels)

    def predict(self, block: Block, window: np.ndarray) -> np.ndarray:
        return predict_block(self.net, window, block, self.job.tile, self.geometry, self.job.batch, self.fallback)

    @cached_property
    def image_level0(self) -> zarr.Array:
        return open_level0(self.job.output, "")

    def write(self, block: Block, output: np.ndarray, pixels: np.ndarray | None = None) -> None:
        ys, xs = slice(block.y0, block.y1), slice(block.x0, block.x1)
        self.classes[block.plane + (ys, xs)] = class_map(output, self.spec)
        if pixels is not None:
            self.image_level0[block.index_in(self.axes)] = pixels if "c" in self.axes else pixels[0]
        if self.job.probabilities:
            probs = encode_probabilities(output, self.job.probabilities)
            c_at = 1 if len(block.plane) and "t" in self.axes else 0
            index = block.plane[:c_at] + (slice(None),) + block.plane[c_at:] + (ys, xs)
            self.probabilities[index] = probs
        mark_done(self.job.output, block.index)


def class_map(output: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """uint8 class per pixel, as the model's post-processing defines it."""
    post = spec.postprocess or {"name": "components", "params": {}}
    return output_classes(post["name"], output, **post.get("params", {}))


def encode_probabilities(output: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "uint8":
        return np.clip(np.rint(output * 255.0), 0, 255).astype(np.uint8)
    return output.astype(np.float16)


_CONTEXTS: dict[Job, Context] = {}
_CONTEXTS_LOCK = threading.Lock()


def context(job: Job) -> Context:
    """The process's Context for `job`: opened once, reused for every block."""
    with _CONTEXTS_LOCK:
        if job not in _CONTEXTS:
            _CONTEXTS.clear()
            _CONTEXTS[job] = Context(job)
        return _CONTEXTS[job]


def process_block(job: Job, block: Block) -> str:
    """Read, predict and write one block (the unit of work of distributed runs)."""
    ctx = context(job)
    window, pixels = ctx.read(block)
    ctx.write(block, ctx.predict(block, window), pixels)
    return block.key()


def run_local(job: Job, blocks: Iterable[Block], on_done: Callable[[Block], None] | None = None, prefetch: int = 2, workers: int = 1) -> None:
    """Process `blocks` in this process: reads and writes in thread pools, the network
    on `workers` threads; at most `prefetch` blocks read ahead per network thread."""
    ctx = context(job)
    blocks = list(blocks)
    lock = threading.Lock()
    failure: list[BaseException] = []

    def fail(block: Block, err: BaseException) -> None:
        if not failure:
            failure.append(err if isinstance(err, KeyboardInterrupt) else block_failure(block, err))

    with ThreadPoolExecutor(max(2, workers), thread_name_prefix="biounet-read") as readers, \
            ThreadPoolExecutor(2, thread_name_prefix="biounet-write") as writers:
        pending: list[Future] = []
        reads: dict[int, Future] = {}
        nxt = iter(range(len(blocks)))
        queue_lock = threading.Lock()

        def schedule_reads(count: int) -> None:
            with queue_lock:
                for _ in range(count):
                    i = next(nxt, None)
                    if i is None:
                        return
                    reads[i] = readers.submit(ctx.read, blocks[i])

        def network_loop(start: int, step: int) -> None:
            for i in range(start, len(blocks), step):
                if failure:
                    return
                block = blocks[i]
                try:
                    while i not in reads:
                        schedule_reads(1)
                    window, pixels = reads.pop(i).result()
                    schedule_reads(1)
                    output = ctx.predict(block, window)
                except BaseException as err:  # noqa: BLE001 - reported with the block named (Ctrl-C as such)
                    fail(block, err)
                    return
                if failure:  # interrupted meanwhile: the block stays undone (resumable)
                    return
                try:
                    fut = writers.submit(ctx.write, block, output, pixels)
                except RuntimeError:  # the writers already shut down after a failure
                    return

                def done(f: Future, block: Block = block) -> None:
                    if f.exception() is not None:
                        fail(block, f.exception())
                    elif on_done is not None:
                        with lock:
                            on_done(block)

                fut.add_done_callback(done)
                pending.append(fut)

        threads: list[threading.Thread] = []
        try:
            schedule_reads(prefetch * max(1, workers))
            if workers <= 1:
                network_loop(0, 1)
            else:
                threads = [threading.Thread(target=network_loop, args=(w, workers), daemon=True) for w in range(workers)]
                for t in threads:
                    t.start()
                for t in threads:
                    while t.is_alive():  # join with a timeout so Ctrl-C reaches this thread
                        t.join(0.1)
        except KeyboardInterrupt as err:
            fail(blocks[0], err)  # the network threads stop after their current block
            for t in threads:
                t.join()
        finally:
            for fut in reads.values():
                fut.cancel()
            for fut in pending:  # blocks already predicted are written and recorded
                fut.exception()
    if failure:
        raise failure[0]


def forward_whole(net: UNet, image: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Reference: one pass of the network over the whole mirror-padded image (C, H, W).

    Used by tests to check that tiled prediction equals an untiled one.
    """
    h, w = image.shape[-2:]
    m = geometry.margin
    in_h = geometry.input_size(h)
    in_w = geometry.input_size(w)
    window = mirror_window(lambda ys, xs: image[:, ys, xs], (h, w), -m, in_h - m, -m, in_w - m)
    with torch.inference_mode():
        y = net.predict(torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32))[None])[0].numpy()
    if y.shape[-1] == in_w:
        y = y[:, m:, m:]
    return y[:, :h, :w]
