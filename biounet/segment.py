"""`segment`: a slide in, a napari-ready OME-Zarr with its segmentation out.

The Python API behind `biounet segment`; notebook users call it the same way.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
import os
import shutil
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import zarr

from biounet import __version__
from biounet.model.file import ModelFileError, ModelSpec, default_model_path, load_model
from biounet.model.geometry import Geometry
from biounet.plan.blocks import Block, plan_blocks
from biounet.postprocess import instance_rule
from biounet.predict import resume
from biounet.predict.device import DeviceError, resolve_device
from biounet.runtime import tune_malloc
from biounet.notices import BiounetWarning
from biounet.predict.engine import BlockError, Job, run_local
from biounet.predict.memory import choose_batch, choose_tile
from biounet.predict.normalize import count_nonfinite, normalization_stats, sample_for_stats
from biounet.predict.tiles import block_window
from biounet.read.image import Image, ImageReadError, open_image
from biounet.write.instances import InstanceRule, label_instances
from biounet.write.qc import ObjectTable, block_measures, overlay_png, summary, write_table
from biounet.write.omezarr import (
    CLASS_COLOURS,
    LabelsSpec,
    OutputError,
    OutputLayout,
    build_pyramid,
    create_level0,
    open_level0,
    ensure_root,
    prepare_output,
    write_labels_metadata,
)

DEFAULT_BLOCK = 1024
DEFAULT_MEMORY = 2 * 1024**3


class UsageError(ValueError):
    """A user mistake in the arguments (exit code 2 in the CLI)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says what was kept and how to resume."""


@dataclass
class SegmentResult:
    """What a run produced."""

    output: Path
    shape: tuple[int, ...]
    axes: str
    blocks: int
    tile: int
    batch: int
    seconds: float
    extra: dict = field(default_factory=dict)


def parse_size(text: str | int) -> int:
    """Bytes from '2GB', '512MB', '1.5GiB' or a plain number."""
    if isinstance(text, int):
        return text
    s = str(text).strip().upper().replace("IB", "B")
    units = {"KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4, "B": 1}
    for unit, factor in units.items():
        if s.endswith(unit):
            try:
                return int(float(s[: -len(unit)]) * factor)
            except ValueError:
                break
    try:
        return int(s)
    except ValueError:
        raise UsageError(f"cannot read memory size {text!r}: use e.g. 2GB or 512MB") from None


def select_channels(image: Image, channel: list[str] | tuple[str, ...] | None, wanted: int) -> tuple[int, ...] | None:
    """Channel indices to feed the model (by index or by name); None = the image's only channel(s)."""
    have = image.size("c")
    if channel:
        picks = []
        names = image.channel_names or []
        for c in channel:
            c = str(c)
            if c.lstrip("-").isdigit() and int(c) in range(have):
                picks.append(int(c))
            elif c in names:
                picks.append(names.index(c))
            else:
                choices = f"0..{have - 1}" + (f" or {', '.join(names)}" if names else "")
                raise UsageError(f"unknown --channel {c!r}: the image has {have} channel(s) ({choices})")
        if len(picks) != wanted:
            raise UsageError(f"the model takes {wanted} input channel(s) but --channel picks {len(picks)}")
        return tuple(picks) if "c" in image.axes else None
    if have < wanted:
        raise UsageError(
            f"the model takes {wanted} input channels but the image has only {have}: "
            f"use a model trained for {have} channel(s), or pick channels with --channel"
        )
    if have != wanted:
        raise UsageError(
            f"the image has {have} channel(s) and the model takes {wanted}: choose with --channel"
        )
    return None


@dataclass
class Plan:
    """A run, resolved and validated before anything is written."""

    input: Path
    output: Path
    image: Image
    level: int
    model: Path
    spec: ModelSpec
    geometry: Geometry
    channels: tuple[int, ...] | None
    layout: OutputLayout
    blocks: list[Block]
    tile: int
    batch: int
    ngff: str
    probabilities: str | None
    write_image: bool
    device: str
    params: dict  # what determines the result: a resume must match it

    @property
    def labels(self) -> list[LabelsSpec]:
        classes = self.spec.classes
        if self.spec.unet.head == "regression":
            classes = ["background", "foreground", "core"]
        return [
            LabelsSpec("classes", "uint8", colours=CLASS_COLOURS[: max(2, len(classes))],
                       properties=[{"label-value": i, "class": c} for i, c in enumerate(classes)]),
            LabelsSpec("instances", "int32"),
        ]

    @property
    def rule(self) -> InstanceRule:
        post = self.spec.postprocess or {"name": "components", "params": {}}
        return instance_rule(post["name"], **post.get("params", {}))

    @property
    def table_path(self) -> Path:
        """The per-object CSV next to the output: slide.ome.zarr -> slide.objects.csv."""
        from biounet.outputs import table_path

        return table_path(self.output)

    @property
    def image_spec(self) -> LabelsSpec:
        """The output's copy of the image: the input level's dtype and channels."""
        channels = self.image.size("c") if "c" in self.image.axes else 0
        return LabelsSpec("image", str(self.image.levels[self.level].dtype), channels=channels)

    def intensity(self, block: Block) -> np.ndarray:
        """Raw intensity of the block (first model channel), for the object table: from
        the output's copy of the image if it has one (faster to read than most inputs)."""
        index = block.index_in(self.image.axes, c=self.channels[0] if self.channels else 0)
        if self.write_image:
            return np.asarray(self.image_copy[index])
        return np.asarray(self.image.read(self.level, index))

    @cached_property
    def image_copy(self) -> zarr.Array:
        """Level 0 of the output's copy of the image (opened once for all blocks)."""
        return open_level0(self.output, "")

    def job(self, stats, batch: int | None = None, threads: int | None = None) -> Job:
        return Job(
            input=str(self.input), output=str(self.output), model=str(self.model), level=self.level,
            axes=self.params["axes"], channels=self.channels, device=self.device, tile=self.tile,
            batch=batch or self.batch, stats=tuple(map(tuple, stats)), probabilities=self.probabilities,
            threads=threads, image=self.write_image,
        )


def make_plan(
    input: str | os.PathLike, output: str | os.PathLike, *, model=None, tile: int | None = None,
    block: int = DEFAULT_BLOCK, device: str = "auto", channel: list[str] | None = None,
    save_probabilities: str | None = None, ngff: str = "0.4", level: int = 0, axes: str | None = None,
    memory_limit: int | str = DEFAULT_MEMORY, write_image: bool = True,
) -> Plan:
    """Check every argument and resolve tile, batch and blocks; touches no output."""
    input, output = Path(input), Path(output)
    image = open_image(input, axes)
    model_path = Path(model) if model else default_model_path()
    if not model and not model_path.exists():
        raise ModelFileError("no --model given and no pretrained model is shipped in this install; pass --model")
    _, spec = load_model(model_path)
    geometry = Geometry(spec.unet.depth, spec.unet.padding)
    if ngff not in ("0.4", "0.5"):
        raise UsageError(f"--ngff {ngff!r} is not supported: use 0.4 or 0.5")
    if save_probabilities not in (None, "float16", "uint8"):
        raise UsageError(f"--save-probabilities {save_probabilities!r}: use float16 or uint8")
    if block <= 0 or block % geometry.align:
        raise UsageError(f"--block {block} must be a positive multiple of {geometry.align} (e.g. 1024)")
    if tile is not None:
        try:
            geometry.check(tile)
        except ValueError as err:
            raise UsageError(str(err)) from None
        if geometry.output_size(tile) < geometry.align:
            smallest = geometry.input_size(geometry.align)
            raise UsageError(f"--tile {tile} is too small to tile a slide: use at least {smallest}")
    resolve_device(device)
    memory = parse_size(memory_limit)
    if output.resolve() == input.resolve() or input.resolve() in output.resolve().parents:
        raise UsageError("the output must not be the input or lie inside it")
    if not 0 <= level < len(image.levels):
        raise UsageError(f"--level {level} does not exist: the image has levels 0..{len(image.levels) - 1}")
    channels = select_channels(image, channel, spec.unet.in_channels)
    data = image.levels[level]
    label_axes = image.axes.replace("c", "")
    label_shape = tuple(n for a, n in zip(image.axes, data.shape) if a != "c")
    height, width = label_shape[-2:]
    covered = min(block, -(-max(height, width) // geometry.align) * geometry.align)
    chosen = tile or spec.tile or choose_tile(spec.unet, covered, memory)
    blocks = plan_blocks(label_shape[:-2], height, width, block, geometry.align)
    _, _, _, _, ys, xs = block_window(blocks[0], chosen, geometry)
    batch = choose_batch(spec.unet, chosen, memory, len(ys) * len(xs))
    layout = OutputLayout(label_axes, label_shape, block, _level_pixel_size(image, level), ngff)
    params = {
        "input": str(input.resolve()), "input_bytes": _size_of(input), "model_sha256": file_digest(model_path),
        "level": level, "axes": axes, "tile": chosen, "block": block,
        "channels": list(channels) if channels else None, "ngff": ngff,
        "probabilities": save_probabilities, "image": write_image, "biounet": __version__,
    }
    return Plan(input, output, image, level, model_path, spec, geometry, channels, layout, blocks,
                chosen, batch, ngff, save_probabilities, write_image, device, params)


def segment(
    input: str | os.PathLike,
    output: str | os.PathLike,
    *,
    model: str | os.PathLike | None = None,
    tile: int | None = None,
    block: int = DEFAULT_BLOCK,
    device: str = "auto",
    workers: int = 1,
    channel: list[str] | None = None,
    overwrite: bool = False,
    save_probabilities: str | None = None,
    ngff: str = "0.4",
    level: int = 0,
    axes: str | None = None,
    memory_limit: int | str = DEFAULT_MEMORY,
    write_image: bool = True,
    progress: bool | Callable[[int, int], None] = True,
    cancel: threading.Event | None = None,
    part: tuple[int, int] | None = None,
    finalize: bool = False,
    scheduler: str | None = None,
    cluster: str | None = None,
    qc_png: str | os.PathLike | None = None,
) -> SegmentResult:
    """Segment every 2D plane of `input` into the OME-Zarr `output` (see README).

    Rerunning the same call after a killed run resumes it: finished blocks are
    kept, only missing ones are computed. `part=(i, n)` computes only the i-th
    of n shares of the blocks (SLURM job arrays); `finalize=True` then builds
    pyramids and metadata once every part is done. `scheduler` (an address) or
    `cluster` ("local", "slurm", "pbs", "lsf") run the blocks on Dask workers.

    `input` may also be an in-memory numpy or dask array (`axes` names its axes).
    `progress` may be a callable, called as progress(done_blocks, total_blocks).
    Setting the event `cancel` stops the run after the current blocks with
    `Interrupted`, leaving a resumable output (as Ctrl-C does).
    """
    if not isinstance(input, (str, os.PathLike)):  # an in-memory array (the napari widget)
        options = {k: v for k, v in locals().items() if k not in ("input", "output")}
        from biounet.staging import segment_array

        return segment_array(segment, input, output, **options)
    t_start = time.perf_counter()
    try:
        if resolve_device(device).type == "cpu":
            tune_malloc()  # before any thread of the run allocates, e.g. zarr's I/O loop (biounet.runtime)
    except DeviceError:
        pass  # make_plan reports it
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    if part is not None and not (1 <= part[0] <= part[1]):
        raise UsageError(f"--part {part[0]}/{part[1]}: use I/N with 1 <= I <= N")
    plan = make_plan(
        input, output, model=model, tile=tile, block=block, device=device, channel=channel,
        save_probabilities=save_probabilities, ngff=ngff, level=level, axes=axes,
        memory_limit=memory_limit, write_image=write_image,
    )
    if finalize:
        record = _existing_record(plan)
        objects, line = finish(plan, record, Path(qc_png) if qc_png else None)
        return _result(plan, t_start, computed=0, objects=objects, summary=line)
    try:
        record = open_output(plan, overwrite, shared=part is not None)
    except KeyboardInterrupt:
        raise Interrupted("interrupted before any block was computed; nothing was kept") from None
    done = resume.done_blocks(plan.output)
    todo = [b for b in plan.blocks if b.index not in done]
    if part is not None:
        todo = [b for b in todo if b.index % part[1] == part[0] - 1]
    stats = record["stats"]
    bar = _progress(len(todo), progress, len(done), len(plan.blocks))
    try:
        try:
            if cancel is not None and not (scheduler or cluster):
                _run_cancellable(plan.job(stats, record["batch"]), todo, bar, workers, cancel)
            elif scheduler or cluster:
                from biounet.predict.distributed import run_distributed

                run_distributed(plan.job(stats, record["batch"]), todo, scheduler, cluster, workers,
                                on_done=lambda b: bar.update(1))
            else:
                run_local(plan.job(stats, record["batch"]), todo, on_done=lambda b: bar.update(1), workers=workers)
        finally:
            bar.close()
        if cancel is not None and cancel.is_set():
            raise KeyboardInterrupt
        t_blocks = time.perf_counter()
        objects, line = (0, "") if part is not None else finish(plan, record, Path(qc_png) if qc_png else None)
        t_finish = time.perf_counter() - t_blocks
    except BlockError as err:
        raise BlockError(f"{err}; {_kept(plan)}: fix the cause and rerun the same command to resume") from err.__cause__
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {_kept(plan)}: the output is resumable, rerun the same command "
                          "to continue") from None
    if part is not None:
        return _result(plan, t_start, computed=len(todo), skipped=len(done))
    return _result(plan, t_start, computed=len(todo), skipped=len(done), objects=objects, summary=line,
                   finish_seconds=t_finish)


def _kept(plan: Plan) -> str:
    done = len(resume.done_blocks(plan.output))
    return f"{done} of {len(plan.blocks)} blocks are done and kept in {plan.output}"


def open_output(plan: Plan, overwrite: bool, shared: bool = False) -> dict:
    """Create the output (arrays, run record) or reopen one to resume; its run record.

    `shared`: several processes (job-array parts) may open it at once; exactly
    one creates it, the others wait for its record. A finished output, or one
    made with other parameters, is refused unless `overwrite`.
    """
    output = plan.output
    try:
        if overwrite and output.exists() and not shared:
            prepare_output(output, overwrite=True)
        prepare_output(output, overwrite=False, exist_ok=True)
        created = resume.claim_creation(output)
    except OSError as err:
        raise OutputError(
            f"cannot create output {output} ({err.strerror or err}): {output.resolve().parent} is not writable "
            "here; choose another -o"
        ) from None
    if created:
        try:
            return _create(plan)
        except BaseException:
            # Nothing was computed yet: leave no half-made output behind (not even a folder
            # that a rerun would refuse without --overwrite).
            shutil.rmtree(output, ignore_errors=True)
            raise
    record = resume.read_record(output)
    if record is None:
        if not shared:
            raise OutputError(f"output {output} exists; pass --overwrite to replace it")
        record = resume.wait_for_record(output)
    if record.get("status") == "complete" and not shared:
        raise OutputError(f"output {output} exists and is complete; pass --overwrite to replace it")
    differ = resume.compare(record, plan.params)
    if differ:
        raise OutputError(
            f"output {output} was started with other parameters ({', '.join(differ)}); "
            "rerun with the same ones to resume, or pass --overwrite"
        )
    return record


def _create(plan: Plan) -> dict:
    """Set up a new output: statistics (the first read of the slide, so an unreadable
    one fails before anything is written), root group, level-0 arrays, then the run
    record last."""
    output = plan.output
    sample = sample_for_stats(plan.image, list(plan.channels) if plan.channels else None, plan.level)
    stats = normalization_stats(sample, plan.spec.normalization).tolist()
    nonfinite = count_nonfinite(sample)
    if nonfinite:
        warnings.warn(
            f"{nonfinite} of {sample.size} sampled pixel values of {plan.input} are NaN or infinite: they are "
            "treated as background (0 after normalisation) and left out of the normalisation statistics",
            BiounetWarning, stacklevel=2,
        )
    ensure_root(output, plan.ngff)
    create_level0(output, "labels/classes", plan.layout, plan.labels[0])
    if plan.write_image:
        create_level0(output, "", plan.layout, plan.image_spec)
    if plan.probabilities:
        create_level0(output, "probabilities", plan.layout,
                      LabelsSpec("probabilities", plan.probabilities, channels=plan.spec.unet.out_channels))
    set_status(output, "running", plan.params)
    record = {"params": plan.params, "stats": stats, "batch": plan.batch, "blocks": len(plan.blocks),
              "status": "running"}
    resume.write_record(output, record)
    return record


def _existing_record(plan: Plan) -> dict:
    record = resume.read_record(plan.output)
    if record is None:
        raise OutputError(f"{plan.output} holds no biounet run to finalize; run the parts first")
    differ = resume.compare(record, plan.params)
    if differ:
        raise OutputError(f"{plan.output} was started with other parameters ({', '.join(differ)})")
    return record


def finish(plan: Plan, record: dict, qc_png: Path | None = None) -> tuple[int, str]:
    """Pyramids and NGFF metadata once every block is done; labels metadata last."""
    missing = len(plan.blocks) - len(resume.done_blocks(plan.output))
    if missing:
        raise OutputError(
            f"{missing} of {len(plan.blocks)} blocks of {plan.output} are not done yet: "
            "run (or rerun) the missing parts first"
        )
    output, layout = plan.output, plan.layout
    create_level0(output, "labels/instances", layout, plan.labels[1])
    classes = zarr.open_array(str(output), path="labels/classes/0", mode="r")
    instances = open_level0(output, "labels/instances")
    # The instance passes are mostly scipy.ndimage, which holds the GIL: the image and
    # class pyramids (codecs, which release it) are written meanwhile on the other core.
    with ThreadPoolExecutor(1, thread_name_prefix="biounet-pyramid") as side:
        pyramids = [side.submit(build_pyramid, output, "labels/classes", layout.axes, layout.pixel_size, plan.ngff,
                                labels=True)]
        if plan.write_image:
            image_axes = layout.with_channels(1)[0] if plan.image_spec.channels else layout.axes
            pyramids.append(side.submit(build_pyramid, output, "", image_axes, layout.pixel_size, plan.ngff,
                                        labels=False))
        table, adding = ObjectTable.empty(0), threading.Lock()

        def each(b: Block, lab: np.ndarray, labelled: np.ndarray) -> None:
            """Add the block's object sums as its final labels are written."""
            part = block_measures(lab, lambda: plan.intensity(b), b.y0, b.x0, labelled)
            with adding:
                table.add(b, part, layout.shape[:-2])

        count = label_instances(classes, instances, layout.block, plan.rule, each=each)
        write_table(table, plan.table_path, layout.pixel_size.get("x", (None,))[0])
        build_pyramid(output, "labels/instances", layout.axes, layout.pixel_size, plan.ngff, labels=True)
        for job in pyramids:
            job.result()
    if qc_png:
        write_qc_png(plan, qc_png)
    if plan.probabilities:
        c_axes, _ = layout.with_channels(plan.spec.unet.out_channels)
        build_pyramid(output, "probabilities", c_axes, layout.pixel_size, plan.ngff, labels=False)
    write_labels_metadata(output, plan.ngff, plan.labels)
    set_status(output, "complete", plan.params)
    resume.update_record(output, status="complete", objects=count, summary=summary(table))
    return count, summary(table)


def write_qc_png(plan: Plan, path: Path, max_size: int = 2048) -> None:
    """Overlay thumbnail of the first plane at the finest pyramid level within `max_size`."""
    level = 0
    while max(-(-n // 2**level) for n in plan.layout.shape[-2:]) > max_size:
        level += 1
    labels = zarr.open_array(str(plan.output), path=f"labels/instances/{level}", mode="r")
    lead = (0,) * (labels.ndim - 2)
    lab = np.asarray(labels[lead])
    data, axes = plan.image.levels[plan.level], plan.image.axes
    index = tuple(0 if a in "tz" else (plan.channels[0] if plan.channels else 0) if a == "c" else slice(None, None, 2**level) for a in axes)
    image = np.asarray(data[index].compute())
    overlay_png(image[: lab.shape[0], : lab.shape[1]], lab, path)


def _result(plan: Plan, t_start: float, computed: int, skipped: int = 0, **extra) -> SegmentResult:
    return SegmentResult(
        plan.output, plan.layout.shape, plan.layout.axes, len(plan.blocks), plan.tile, plan.batch,
        time.perf_counter() - t_start, {"computed": computed, "skipped": skipped, **extra},
    )


def file_digest(path: Path) -> str:
    """sha256 of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            h.update(piece)
    return h.hexdigest()


def _size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def set_status(output: Path, status: str, params: dict) -> None:
    """Record the run's parameters and status in the root attributes (re-read first:
    zarr rewrites all attributes of a group object, so a stale one would drop others)."""
    root = zarr.open_group(str(output), mode="r+")
    root.attrs["biounet"] = {"status": status, "params": params}


def _level_pixel_size(image: Image, level: int) -> dict:
    if level == 0:
        return dict(image.pixel_size)
    fy = image.levels[0].shape[-2] / image.levels[level].shape[-2]
    fx = image.levels[0].shape[-1] / image.levels[level].shape[-1]
    out = dict(image.pixel_size)
    for a, f in (("y", fy), ("x", fx)):
        if a in out:
            out[a] = (out[a][0] * f, out[a][1])
    return out


def _progress(total: int, enabled: bool | Callable[[int, int], None], done: int = 0, blocks: int = 0):
    if callable(enabled):
        return _Callback(enabled, done, blocks)
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="block", desc="segment", disable=not enabled, smoothing=0.1)


class _Callback:
    """A progress callback behind tqdm's update/close: called as (done, total) over all blocks."""

    def __init__(self, report: Callable[[int, int], None], done: int, total: int) -> None:
        self.report, self.done, self.total = report, done, total
        report(done, total)

    def update(self, n: int) -> None:
        self.done += n
        self.report(self.done, self.total)

    def close(self) -> None:
        pass


def _run_cancellable(job: Job, todo: list[Block], bar, workers: int, cancel: threading.Event) -> None:
    """run_local a few blocks at a time, stopping (KeyboardInterrupt) once `cancel` is set."""
    step = 2 * workers
    for i in range(0, len(todo), step):
        if cancel.is_set():
            raise KeyboardInterrupt
        run_local(job, todo[i : i + step], on_done=lambda b: bar.update(1), workers=workers)


__all__ = ["segment", "SegmentResult", "UsageError", "ImageReadError", "Interrupted"]
