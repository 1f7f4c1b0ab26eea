"""`segment`: a slide in, a napari-ready OME-Zarr with its segmentation out.

The Python API behind `biounet segment`; notebook users call it the same way.
It plans the run (`biounet.plan.run`), sets up or reopens the output
(`biounet.write`), picks the tasks this call does (`biounet.pipeline.parts`) and
hands them to a runner: this process (`pipeline.local`) or Dask workers
(`pipeline.dask`).
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from biounet.pipeline.errors import Interrupted
from biounet.plan.run import DEFAULT_MEMORY, Run, UsageError, make_run, parse_part
from biounet.read.image import ImageReadError
from biounet.runtime.notices import BiounetWarning

__all__ = ["segment", "SegmentResult", "UsageError", "ImageReadError", "Interrupted"]


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


def segment(
    input: str | os.PathLike,
    output: str | os.PathLike,
    *,
    model: str | os.PathLike | None = None,
    tile: int | None = None,
    block: int | None = None,
    device: str = "auto",
    workers: int | None = None,
    channel: list[str] | None = None,
    overwrite: bool = False,
    save_probabilities: str | None = None,
    ngff: str = "0.4",
    level: int = 0,
    axes: str | None = None,
    memory_limit: int | str = DEFAULT_MEMORY,
    write_image: bool = True,
    precision: str = "auto",
    compile: bool = False,
    weights: str | None = None,
    tta: str = "none",
    progress: bool | Callable[[int, int], None] = True,
    part: tuple[int, int] | None = None,
    finalize: bool = False,
    scheduler: str | None = None,
    cluster: str | None = None,
    qc_png: str | os.PathLike | None = None,
    geojson: bool | str | os.PathLike | None = None,
    pixel_size: float | None = None,
    diameter: float | None = None,
    rescale: bool = True,
    tissue: str | os.PathLike | None = None,
    cancel: threading.Event | None = None,
    log: Callable[[str], None] | None = None,
) -> SegmentResult:
    """Segment every 2D plane of `input` into the OME-Zarr `output` (see README).

    Rerunning the same call after a killed run resumes it: finished tasks are
    kept, only missing ones are computed. `part=(i, n)` computes only the i-th
    of n shares of the blocks (SLURM job arrays); `finalize=True` then does the
    rest (with `part`, its share of it: the last part to finish completes the
    output). `scheduler` (an address) or `cluster` ("local", "slurm", "pbs",
    "lsf") run the tasks on Dask workers.

    `model` is a model file or a shipped model's name ("nuclei", "membranes", "he-nuclei"; see
    `biounet.model.names`); None: the shipped model for the kind of image (`biounet.model.choice`:
    he-nuclei for RGB brightfield, else nuclei). Where the slide's pixel size differs from the
    model's, the network runs at the model's scale and everything is written at the slide's
    (`biounet.plan.scale`); `pixel_size` (um/px of level 0) overrides the slide's metadata,
    `diameter` (the objects' diameter in slide pixels) sets the scale instead, and
    `rescale=False` runs at the slide's own scale. `tta` ("none", "flips", "d4") averages the network over flipped and
    transposed tiles (`biounet.predict.tta`: 4 or 8 times the network's work). `input` may also be an in-memory numpy or dask array (`axes` names its axes).
    `progress` is a bar (True), nothing (False) or a callable, called as
    progress(done, total) in blocks (each block's share of all the run's tasks).
    Setting the event `cancel` stops the run after the tasks under way with
    `Interrupted`, leaving a resumable output (as Ctrl-C does). `geojson` (True: slide.geojson
    beside the output, or a path) also writes the objects for QuPath once the output is
    complete (`biounet.write.geojson`). `tissue` ("auto", "none" or a mask image; None: auto for an
    RGB scan, none otherwise) predicts only the blocks with tissue (`biounet.pipeline.tissue`).
    """
    if not isinstance(input, (str, os.PathLike)):  # an in-memory array (the napari widget)
        options = {k: v for k, v in locals().items() if k not in ("input", "output")}
        from biounet.pipeline.staging import segment_array

        return segment_array(segment, input, output, **options)
    from biounet.pipeline import parts as select
    from biounet.pipeline.graph import Graph
    from biounet.pipeline.stages import Resources
    from biounet.runtime.devices import DeviceError, resolve_device
    from biounet.runtime.process import tune_malloc

    t_start = time.perf_counter()
    try:
        if resolve_device(device).type == "cpu":
            tune_malloc()  # before any thread of the run allocates, e.g. zarr's I/O loop (biounet.runtime.process)
    except DeviceError:
        pass  # make_run reports it
    if geojson:
        from biounet.plan.outputs import geojson_path
        from biounet.write.geojson import check_destination

        geojson = check_destination(geojson_path(output) if geojson is True else geojson, overwrite)
    part = parse_part(part)
    run = make_run(
        input, output, model=model, tile=tile, block=block, device=device, channel=channel,
        save_probabilities=save_probabilities, ngff=ngff, level=level, axes=axes,
        memory_limit=memory_limit, write_image=write_image, precision=precision, compile=compile, workers=workers,
        weights=weights, tta=tta, pixel_size=pixel_size, diameter=diameter, rescale=rescale, tissue=tissue,
    )
    folder_run, record = _existing(run) if finalize else _open_output(run, overwrite, shared=part is not None)
    run = folder_run
    distributed = bool(scheduler or cluster)
    res = Resources(run, threads=run.threads, cache_classes=not distributed)
    lease = None
    if part is None:
        lease = res.folder.acquire(" ".join(sys.argv) if sys.argv and sys.argv[0] else "segment()")
    else:
        holder = res.folder.locked_by_other()
        if holder is not None:
            raise select.busy(run, holder)
    stats: dict[str, int] = {}
    kept: dict[str, int] = {}
    timing: dict[str, float] = {}
    try:
        if record.get("status") != "complete":  # a part or --finalize of a finished output: nothing left
            graph = Graph(run)
            plan = select.Selection(graph, res.folder, part, finalize)
            kept = plan.kept_counts()
            if any(kept.values()) and log is not None:
                log("resuming: " + select.describe_counts(kept, graph) + " already done")
            t_tasks = time.perf_counter()
            try:
                bar = _Bar(progress, len(run.blocks), len(graph.deps), sum(kept.values()))
                stats, took = _run_tasks(res, graph, plan, run, workers, scheduler, cluster, bar, cancel)
            finally:
                plan.close()
            timing = {"setup": t_tasks - t_start, "tasks": time.perf_counter() - t_tasks, **took}
    finally:
        if lease is not None:
            lease.release()
    record = res.folder.read_record() or {}
    complete = record.get("status") == "complete"
    extra = {"computed": stats.get("predict", 0), "skipped": kept.get("predict", 0), "stages": stats,
             "kept": kept, "complete": complete, "seconds": timing, "model": run.model_text, "scale": run.scale.text}
    if record.get("tissue"):  # the blocks with tissue (`biounet.pipeline.tissue.record_entry`)
        extra["tissue"] = record["tissue"]
    if complete:
        extra.update(objects=record.get("objects", 0), summary=record.get("summary", ""))
        if qc_png:
            write_qc_png(res, Path(qc_png))
        if geojson:
            from biounet.write.geojson import export_geojson

            extra["geojson"] = export_geojson(run.output, geojson, overwrite=True, progress=progress is True)
    return SegmentResult(Path(run.output), run.layout.shape, run.layout.axes, len(run.blocks), run.tile, run.batch,
                         time.perf_counter() - t_start, extra)


def describe_tasks(extra: dict) -> str:
    """'predict 18 (12 kept), pass1 30, ...': tasks computed per stage by this call, and
    those found done (kept from an earlier, interrupted run)."""
    from biounet.pipeline.graph import STAGES

    parts = []
    for stage in STAGES:
        computed, kept = extra["stages"].get(stage, 0), extra["kept"].get(stage, 0)
        if computed or kept:
            parts.append(f"{stage} {computed}" + (f" ({kept} kept)" if kept else ""))
    return ", ".join(parts) or "none (the output was already complete)"


def _run_tasks(res, graph, plan, run: Run, workers: int | None, scheduler, cluster, bar: "_Bar",
               cancel) -> tuple[dict[str, int], dict[str, float]]:
    """Run the selected tasks (and, for parts, whatever became possible meanwhile); the
    number of tasks computed per stage, and their seconds (summed over threads)."""
    from biounet.pipeline.errors import TaskError
    from biounet.pipeline.local import LocalRunner
    from biounet.runtime.devices import cpu_threads, torch_threads_kept

    computed: dict[str, int] = {}
    seconds: dict[str, float] = {}
    lock = threading.Lock()

    def on_done(task, took: float | None) -> None:
        with lock:
            computed[task.stage] = computed.get(task.stage, 0) + 1
            seconds[task.stage] = seconds.get(task.stage, 0.0) + (took or 0.0)
            bar.done(sum(computed.values()))

    try:
        while True:
            todo = plan.next_tasks()
            if not todo:
                break
            bar.grow(len(todo))
            if scheduler or cluster:
                from biounet.pipeline.dask import run_dask

                run_dask(run, graph, todo, scheduler, cluster, workers or 1, on_done=on_done, cancel=cancel)
            else:
                runner = LocalRunner(res, graph, todo, cpu_threads(), run.workers, on_done=on_done, cancel=cancel)
                try:
                    with torch_threads_kept():
                        runner.run()
                finally:
                    for step, cpu in runner.clock.seconds.items():
                        seconds[f"cpu {step}"] = seconds.get(f"cpu {step}", 0.0) + cpu
            if cancel is not None and cancel.is_set():
                raise KeyboardInterrupt
    except TaskError as err:
        raise TaskError(f"{err}; {_kept(res, graph)}: fix the cause and rerun the same command to resume",
                        err.task, err.block) from err.__cause__
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {_kept(res, graph)}: the output is resumable, rerun the same command "
                          "to continue") from None
    finally:
        bar.close()
    return computed, seconds


def _kept(res, graph) -> str:
    done = len(res.folder.done("predict"))
    return f"{done} of {graph.count('predict')} blocks are done and kept in {res.run.output}"


def _open_output(run: Run, overwrite: bool, shared: bool = False) -> tuple[Run, dict]:
    """Create the output (arrays, run record) or reopen one to resume: the run with its
    normalisation statistics, and its record.

    `shared`: several processes (job-array parts) may open it at once; exactly one
    creates it, the others wait for its record. A finished output, or one made with
    other parameters, is refused unless `overwrite`.
    """
    from biounet.write.runfolder import RunFolder, zarr_format_of
    from biounet.write.store import OutputError, prepare_output

    output = Path(run.output)
    try:
        if overwrite and output.exists() and not shared:
            prepare_output(output, overwrite=True)
        prepare_output(output, overwrite=False, exist_ok=True)
        created = _claim(output)
    except OSError as err:
        raise OutputError(
            f"cannot create output {output} ({err.strerror or err}): {output.resolve().parent} is not writable "
            "here; choose another -o"
        ) from None
    if created:
        try:
            return _create(run)
        except BaseException:
            # Nothing was computed yet: leave no half-made output behind (not even a folder
            # that a rerun would refuse without --overwrite).
            shutil.rmtree(output, ignore_errors=True)
            raise
    fmt = zarr_format_of(output) or run.layout.zarr_format
    folder = RunFolder(output, fmt)
    record = folder.read_record()
    if record is None:
        if not shared:
            raise OutputError(f"output {output} exists; pass --overwrite to replace it")
        record = _wait_for_record(folder)
    if record.get("status") == "complete" and not shared:
        raise OutputError(f"output {output} exists and is complete; pass --overwrite to replace it")
    differ = _compare(record, run.params)
    if differ:
        raise OutputError(
            f"output {output} was started with other parameters ({', '.join(differ)}); "
            "rerun with the same ones to resume, or pass --overwrite"
        )
    return _with_record(run, record), record


def _claim(output: Path) -> bool:
    """True if this process created the output folder (and so must set it up): os.mkdir
    is atomic, also on network file systems, so of several job-array parts starting
    at once exactly one sets the output up."""
    try:
        os.mkdir(output)
        return True
    except FileExistsError:
        return False


def _wait_for_record(folder, timeout: float = 600.0, poll: float = 0.5) -> dict:
    """The run record of an output another process is setting up."""
    from biounet.write.runfolder import ResumeError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = folder.read_record()
        if record is not None:
            return record
        if not folder.output.exists():
            raise ResumeError(
                f"{folder.output} was removed while another process was setting it up (it failed: see its "
                "error); fix the cause and start again"
            )
        time.sleep(poll)
    raise ResumeError(
        f"{folder.output} exists but holds no biounet run record after {timeout:.0f} s: another process "
        "may have died while setting it up; pass --overwrite to start again"
    )


def _compare(record: dict, wanted: dict) -> list[str]:
    """Names of the result-determining parameters that differ (also those set on one side
    only, such as `tta`, recorded only when used)."""
    recorded = record.get("params", {})
    return sorted(k for k in set(wanted) | set(recorded) if recorded.get(k) != wanted.get(k))


def _with_record(run: Run, record: dict) -> Run:
    from dataclasses import replace

    return replace(run.with_stats(record["stats"]), batch=record["batch"])


def _create(run: Run) -> tuple[Run, dict]:
    """Set up a new output: statistics (the first read of the slide, so an unreadable
    one fails before anything is written), every array, the run folder, then the run
    record last."""
    from biounet.pipeline import tissue
    from biounet.pipeline.graph import STAGES, Graph
    from biounet.pipeline.stages import STEPS, array_specs, set_status
    from biounet.predict.normalize import count_nonfinite, normalization_stats
    from biounet.read.image import open_image
    from biounet.read.sample import sample_for_stats
    from biounet.write.runfolder import RunFolder
    from biounet.write.store import OutputStore
    from biounet.write.tissue import write_tissue

    image = open_image(run.input, run.axes)
    sample = sample_for_stats(image, list(run.channels) if run.channels else None, run.level)
    stats = normalization_stats(sample, run.spec.normalization).tolist()
    nonfinite = count_nonfinite(sample)
    if nonfinite:
        warnings.warn(
            f"{nonfinite} of {sample.size} sampled pixel values of {run.input} are NaN or infinite: they are "
            "treated as background (0 after normalisation) and left out of the normalisation statistics",
            BiounetWarning, stacklevel=3,
        )
    mask = tissue.detect(run, image)
    output = Path(run.output)
    OutputStore(output, run.layout, array_specs(run)).create()
    if mask is not None:
        write_tissue(output, mask.layer, mask.factor, run.layout.pixel_size, run.layout.ngff)
    folder = RunFolder(output, run.layout.zarr_format)
    graph = Graph(run)
    folder.create_markers("pyramid", graph.count("pyramid"))
    folder.create_markers("steps", len(STEPS))
    for kind, count in (("bands", len(run.blocks)), ("pass1", len(run.blocks)), ("table", len(run.blocks)),
                        ("merge", 1)):
        folder.create_records(kind, count)
    set_status(output, "running", run.params)
    record = {"params": run.params, "stats": stats, "batch": run.batch, "blocks": len(run.blocks),
              "status": "running", "stages": list(STAGES)}
    if mask is not None:
        record["tissue"] = tissue.record_entry(run, mask)
    folder.write_record(record)
    return _with_record(run, record), record


def _existing(run: Run) -> tuple[Run, dict]:
    from biounet.write.runfolder import RunFolder, zarr_format_of
    from biounet.write.store import OutputError

    output = Path(run.output)
    fmt = zarr_format_of(output)
    record = RunFolder(output, fmt).read_record() if fmt else None
    if record is None:
        raise OutputError(f"{output} holds no biounet run to finalize; run the parts first")
    differ = _compare(record, run.params)
    if differ:
        raise OutputError(f"{output} was started with other parameters ({', '.join(differ)})")
    return _with_record(run, record), record


def write_qc_png(res, path: Path, max_size: int = 2048) -> None:
    """Overlay thumbnail of the first plane at the finest pyramid level within `max_size`."""
    import numpy as np
    import zarr

    from biounet.write.qc import overlay_png

    run = res.run
    level = 0
    while level + 1 < run.layout.levels and max(run.layout.level_shapes[level][-2:]) > max_size:
        level += 1
    labels = zarr.open_array(str(run.output), path=f"labels/instances/{level}", mode="r")
    lead = (0,) * (labels.ndim - 2)
    lab = np.asarray(labels[lead])
    factor = 2**level
    image = res.image
    index = tuple(0 if a in "tz" else (run.channels[0] if run.channels else 0) if a == "c"
                  else slice(None, None, factor) for a in image.axes)
    data = image.read(run.level, index)
    overlay_png(data[: lab.shape[0], : lab.shape[1]], lab, path)


class _Bar:
    """Progress: a tqdm bar over tasks (growing as job-array rounds add tasks), a callable
    given (done, total) in blocks, or nothing."""

    def __init__(self, progress, blocks: int, tasks: int, kept: int) -> None:
        self.total, self.blocks, self.tasks, self.kept = 0, blocks, max(tasks, 1), kept
        self.callback = progress if callable(progress) else None
        self.tqdm = None
        self.reported = -1
        if progress is True:
            from tqdm.auto import tqdm

            self.tqdm = tqdm(total=0, unit="task", desc="segment", smoothing=0.1)
        self._tell(0)

    def _tell(self, count: int) -> None:
        if self.callback is None:
            return
        done = min(self.blocks, (self.kept + count) * self.blocks // self.tasks)
        if done != self.reported:
            self.reported = done
            self.callback(done, self.blocks)

    def grow(self, n: int) -> None:
        self.total += n
        if self.tqdm is not None:
            self.tqdm.total = self.total
            self.tqdm.refresh()

    def done(self, count: int) -> None:
        if self.tqdm is not None:
            self.tqdm.update(count - self.tqdm.n)
        self._tell(count)

    def close(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()
