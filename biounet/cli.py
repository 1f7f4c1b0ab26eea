"""The `biounet` command: a thin layer over the Python API.

User mistakes end with a one-line message and exit code 2 (usage) or 1
(runtime); `--debug` shows the traceback instead.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import warnings
from pathlib import Path

import click

from biounet import __version__
from biounet.model.names import SHIPPED  # torch-free
from biounet.plan.options import PRECISIONS, TTA_MODES  # torch-free

EXIT_USAGE = 2
EXIT_RUNTIME = 1


ZOO_WEIGHTS = ("pytorch_state_dict", "torchscript")  # biounet.model.zoo_load.RUNNABLE
SELECT_BY = ("average_f1", "aji", "pq")  # biounet.evaluate.tune.SELECT_BY
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


# Known user errors and their exit codes, by class (module.name): printing one line for
# an error must not import the pipeline (torch and zarr take seconds). The most
# specific class of an error's MRO that is listed wins.
USER_ERRORS = {
    "biounet.read.image.ImageUsageError": EXIT_USAGE, "biounet.plan.run.UsageError": EXIT_USAGE,
    "biounet.model.geometry.TileSizeError": EXIT_USAGE, "biounet.runtime.devices.DeviceError": EXIT_USAGE,
    "biounet.model.spec.ModelNotFoundError": EXIT_USAGE, "biounet.model.spec.ModelUsageError": EXIT_USAGE,
    "biounet.zoo.arch.ExportError": EXIT_USAGE, "biounet.write.store.OutputError": EXIT_USAGE,
    "biounet.write.runfolder.ResumeError": EXIT_USAGE, "biounet.read.files.DataError": EXIT_USAGE,
    "biounet.train.loop.CheckpointError": EXIT_USAGE, "biounet.napari.view.ViewNotFoundError": EXIT_USAGE,
    "biounet.read.image.ImageReadError": EXIT_RUNTIME, "biounet.model.spec.ModelFileError": EXIT_RUNTIME,
    "biounet.napari.view.ViewError": EXIT_RUNTIME, "biounet.model.zoo_package.ZooNotInstalled": EXIT_RUNTIME,
    "biounet.model.names.ModelNameError": EXIT_USAGE, "biounet.model.encoders.EncoderError": EXIT_USAGE,
    "biounet.model.pretrained.EncoderWeightsError": EXIT_USAGE,
    "biounet.write.geojson.GeoJSONError": EXIT_USAGE, "biounet.write.geojson.GeoJSONDataError": EXIT_RUNTIME,
}

TTA_HELP = ("Test-time augmentation: the network's output averaged over flipped tiles (flips: 4 runs) or "
            "flipped and transposed ones (d4: 8 runs, as the U-Net paper's rotations).")
MODEL_HELP = (f"a shipped model's name ({', '.join(SHIPPED)}), a model file or a bioimage.io package (.zip, "
              "rdf.yaml or its folder); a path wins over a name")


def _exit_code(err: BaseException) -> int | None:
    for kind in type(err).__mro__:
        code = USER_ERRORS.get(f"{kind.__module__}.{kind.__qualname__}")
        if code is not None:
            return code
    return None


def _is_task_error(err: BaseException) -> bool:
    """A task (a block's prediction, labelling, ...) that failed, named in the message."""
    return any(f"{k.__module__}.{k.__qualname__}" == "biounet.pipeline.errors.TaskError" for k in type(err).__mro__)


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def _fail(message: str, code: int) -> None:
    click.echo(f"biounet: error: {_one_line(message)}", err=True)
    _settle_zarr()
    sys.exit(code)


def _settle_zarr(timeout: float = 5.0) -> None:
    """Let zarr's reads still running in its event loop finish before the process exits.

    A read that fails leaves the other chunk reads of its region pending; exiting
    at once makes asyncio print "Task was destroyed but it is pending!" (or "coroutine
    ... was never awaited") for each, after the one-line error.
    """
    if "zarr" not in sys.modules:
        return
    import asyncio

    from zarr.core.sync import sync

    async def drain() -> None:
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if others:
            await asyncio.wait(others, timeout=timeout)

    try:
        sync(drain())
    except Exception:  # noqa: BLE001 - best effort on the way out
        pass


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """biounet's own warnings as one line on stderr; others as Python shows them."""
    from biounet.runtime.notices import BiounetWarning

    if issubclass(category, BiounetWarning):
        click.echo(f"biounet: warning: {_one_line(message)}", err=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


class BiounetGroup(click.Group):
    """Turns known user errors into one-line messages."""

    def invoke(self, ctx: click.Context):
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return self._invoke(ctx)

    def _invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as err:  # a subcommand's: one line, as every other error
            where = err.ctx.command_path if err.ctx is not None else "biounet"
            _fail(f"{err.format_message()} (see '{where} --help')", EXIT_USAGE)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except KeyboardInterrupt as err:
            # segment's Interrupted says what was kept and how to resume.
            click.echo(f"biounet: {_one_line(str(err) or 'interrupted')}", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as err:  # noqa: BLE001 - mapped to exit codes below
            if ctx.obj and ctx.obj.get("debug"):
                raise
            code = _exit_code(err)
            if code is not None:
                _fail(str(err), code)
            if _is_task_error(err):
                _fail(f"{err} (--debug shows the traceback)", EXIT_RUNTIME)
            if isinstance(err, MemoryError):
                _fail("out of memory: use a smaller --block or --memory-limit", EXIT_RUNTIME)
            _fail(f"{type(err).__name__}: {err} (rerun with --debug for the traceback)", EXIT_RUNTIME)


@click.group(cls=BiounetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="biounet")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """U-Net segmentation of microscopy slides too big for memory."""
    ctx.obj = {"debug": debug}


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="INPUT...")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output OME-Zarr (one INPUT only); default: beside INPUT, slide.tif -> slide.ome.zarr.")
@click.option("--output-dir", type=click.Path(path_type=Path), help="Write each output into this folder instead.")
@click.option("--model", metavar="NAME|PATH", help="Model: " + MODEL_HELP + "; default: he-nuclei for RGB "
              "brightfield, else nuclei.")
@click.option("--weights", type=click.Choice(ZOO_WEIGHTS), help="Which weights of a bioimage.io package to run "
              "(default: pytorch_state_dict if it has them).")
@click.option("--pixel-size", type=float, metavar="UM", help="The slide's pixel size in um/px (level 0), instead of "
              "its metadata; the network runs at the model's pixel size.")
@click.option("--diameter", type=float, metavar="PX", help="The objects' typical diameter in pixels of the slide, "
              "for a slide without a pixel size: the network runs where its objects have the model's diameter.")
@click.option("--no-rescale", is_flag=True, help="Run the network at the slide's own pixel size, whatever the "
              "model's.")
@click.option("--tile", type=int, help="Input tile size (188 + 16k for depth 5); default: automatic.")
@click.option("--block", type=int, help="Block size in pixels, the unit of work and of writing: one chunk for "
              "NGFF 0.4 (default 1024), one shard of 4 x 4 chunks for NGFF 0.5 (default 4096).")
@click.option("--device", default="auto", show_default=True,
              help="auto (every GPU, else the CPU), cpu, cuda (every GPU), cuda:N or cuda:N,M.")
@click.option("--workers", type=int, help="Network threads working on blocks at once (default: 2 on the CPU, "
              "sharing its cores; at least 2 per GPU); with --cluster, the Dask workers (default 1).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="The network's arithmetic: auto = bf16 on GPUs that have it, else fp16 on GPUs, fp32 on the CPU.")
@click.option("--compile", "compile_net", is_flag=True, help="torch.compile the network (seconds of start-up).")
@click.option("--tta", type=click.Choice(TTA_MODES), default="none", show_default=True, help=TTA_HELP)
@click.option("--channel", multiple=True, help="Input channel(s) for the model, by index or name (repeatable).")
@click.option("--level", type=int, default=0, show_default=True, help="Pyramid level of the input to segment.")
@click.option("--axes", help="Axis order of an input without metadata, e.g. zyx or yxc.")
@click.option("--memory-limit", default="2GB", show_default=True, help="Budget for the network's activations.")
@click.option("--save-probabilities", type=click.Choice(["float16", "uint8"]), help="Also store class probabilities.")
@click.option("--ngff", type=click.Choice(["0.4", "0.5"]), default="0.4", show_default=True, help="OME-Zarr version (0.5 = zarr v3).")
@click.option("--no-image", is_flag=True, help="Do not copy the image into the output (labels only).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--quiet", is_flag=True, help="Print nothing on success (no progress bar, no summary).")
@click.option("--no-progress", is_flag=True, help="No progress bar; the summary lines still print (logs, scripts).")
@click.option("--part", help="Compute only share I of N of the blocks (I/N, e.g. a SLURM array task).")
@click.option("--finalize", is_flag=True, help="After all parts: labels, pyramids, table and metadata (with --part: "
              "this part's share; the last part to finish completes the output).")
@click.option("--scheduler", help="Address of a running dask.distributed scheduler.")
@click.option("--cluster", type=click.Choice(["local", "slurm", "pbs", "lsf"]), help="Start a Dask cluster with --workers workers (jobs).")
@click.option("--qc-png", type=click.Path(path_type=Path), help="Write an overlay thumbnail (image + instance outlines).")
@click.option("--geojson", is_flag=False, flag_value="", metavar="[PATH]",
              help="Also write the objects for QuPath: slide.geojson beside the output, or PATH (.geojson.gz "
              "compresses); see `biounet export-geojson`.")
@click.option("--tissue", metavar="auto|none|PATH",
              help="Predict only blocks with tissue (dilated by the network's context), the rest left empty: auto "
              "detects it (default for RGB scans), PATH is a mask image of the whole slide (any size, nonzero = "
              "tissue), none predicts every block (default otherwise).")
def segment(inputs: tuple[Path, ...], output, output_dir, model, weights, pixel_size, diameter, no_rescale, tile, block,
            device, workers, precision, compile_net, tta, channel, level, axes, memory_limit, save_probabilities, ngff,
            no_image, overwrite, quiet, no_progress, part, finalize, scheduler, cluster, qc_png, geojson, tissue) -> None:
    """Segment each INPUT (TIFF, OME-TIFF, zarr, OME-Zarr) into an OME-Zarr for napari.

    `biounet segment slide.tif` writes slide.ome.zarr (and slide.objects.csv)
    beside the slide; look at it with `biounet view slide.ome.zarr`. Rerunning
    the same command after an interrupted run resumes it.
    """
    import time

    outputs = _outputs(inputs, output, output_dir)
    if qc_png and len(inputs) > 1:
        raise click.UsageError("--qc-png names one file: use it with one INPUT")
    if geojson and len(inputs) > 1:
        raise click.UsageError("--geojson PATH names one file: with several INPUTs pass --geojson alone (each "
                               "slide.geojson beside its output)")
    if not (part or finalize):
        _check_paths(inputs, outputs, overwrite)
    if pixel_size is not None or diameter is not None:  # before the pipeline (torch) is loaded
        from biounet.plan.scale import ScaleError, check_options

        try:
            check_options(pixel_size, diameter, not no_rescale)
        except ScaleError as err:
            _fail(str(err), EXIT_USAGE)
    geojsons = [None] * len(outputs) if geojson is None else [_geojson_path(geojson, o, overwrite) for o in outputs]
    from biounet.pipeline.segment import describe_tasks
    from biounet.pipeline.segment import segment as run

    def say(message: str) -> None:
        click.echo(f"biounet: {message}", err=True)

    started, objects = time.perf_counter(), 0
    for input, out, features in zip(inputs, outputs, geojsons):
        result = run(
            input, out, model=model, tile=tile, block=block, device=device, workers=workers, precision=precision,
            compile=compile_net, weights=weights, tta=tta, channel=list(channel) or None, overwrite=overwrite, save_probabilities=save_probabilities,
            ngff=ngff, level=level, axes=axes, memory_limit=memory_limit, write_image=not no_image,
            progress=not (quiet or no_progress), part=_parse_part(part), finalize=finalize, scheduler=scheduler,
            cluster=cluster, qc_png=qc_png, geojson=features, pixel_size=pixel_size, diameter=diameter,
            rescale=not no_rescale, tissue=tissue, log=None if quiet else say,
        )
        objects += result.extra.get("objects") or 0
        if not quiet:
            click.echo(_summary_line(result, part, finalize))
            if "geojson" in result.extra:
                click.echo(_geojson_line(result.extra["geojson"]))
            if part or result.extra["kept"]:  # what a resumed run or a part kept and computed, per stage
                say(f"tasks: {describe_tasks(result.extra)}")
    if len(inputs) > 1 and not quiet and not part:
        click.echo(f"total: {len(inputs)} slides, {objects} objects, in {time.perf_counter() - started:.1f} s")


def _outputs(inputs: tuple[Path, ...], output: Path | None, output_dir: Path | None) -> list[Path]:
    """Each input's output: -o (one input), else named after the input, beside it or in --output-dir."""
    from biounet.plan.outputs import default_output

    if output is not None:
        if len(inputs) > 1:
            raise click.UsageError("-o names one output: with several inputs use --output-dir DIR "
                                   "(or neither: each output is written beside its input)")
        if output_dir is not None:
            raise click.UsageError("pass either -o or --output-dir, not both")
        return [output]
    if output_dir is not None and not output_dir.is_dir():
        raise click.UsageError(f"--output-dir {output_dir} is not a folder; create it first")
    outputs = [default_output(i, output_dir) for i in inputs]
    seen: dict[Path, Path] = {}
    for input, out in zip(inputs, outputs):
        key = out.resolve()
        if key in seen:
            raise click.UsageError(f"{seen[key]} and {input} would both be written to {out}; segment them in "
                                   "separate calls with -o")
        seen[key] = input
    return outputs


def _check_paths(inputs: tuple[Path, ...], outputs: list[Path], overwrite: bool) -> None:
    """The usage errors that need no model, before the pipeline (torch) is loaded: a missing
    input, an existing output that is complete or no biounet output (without --overwrite).
    segment checks them again; an unfinished output is resumed."""
    from biounet.plan.outputs import output_status

    for input, out in zip(inputs, outputs):
        if not input.exists():
            _fail(f"input not found: {input}; check the path", EXIT_USAGE)
        status = output_status(out)
        if overwrite or status in (None, "running"):
            continue
        done = " and is complete" if status == "complete" else ""
        _fail(f"output {out} exists{done}; pass --overwrite to replace it", EXIT_USAGE)


def _geojson_path(given: str, output: Path, overwrite: bool) -> Path:
    """--geojson's file for `output` (given, or beside it), checked before anything runs."""
    from biounet.plan.outputs import geojson_path
    from biounet.write.geojson import check_destination

    return check_destination(Path(given) if given else geojson_path(output), overwrite)


def _geojson_line(done) -> str:
    rate = done.objects / done.seconds if done.seconds > 0 else 0.0
    return (f"wrote {done.path}: {done.objects} objects, {done.bytes / 1e6:.1f} MB, in {done.seconds:.1f} s "
            f"({rate:.0f} objects/s)")


def _summary_line(result, part: str | None, finalize: bool) -> str:
    """One line per slide (the benchmarks read ", in N s" and "objects: N")."""
    done = result.extra
    if part and not done["stages"].get("metadata"):  # this part did not complete the output
        step = "finalize part" if finalize else "part"
        then = ("the output is complete" if done["complete"] else "the last part to finish completes the output"
                if finalize else "run with --finalize (or --finalize --part I/N) once every part is done")
        return f"{step} {part}: computed {done['computed']} blocks into {result.output} in {result.seconds:.1f} s; {then}"
    resumed = f", {done['skipped']} already done" if done.get("skipped") else ""
    tissue = ""
    if "tissue" in done:
        from biounet.pipeline.tissue import describe

        tissue = f"tissue: {describe(done['tissue'])}; "
    return (f"wrote {result.output}: {result.blocks} blocks of {'x'.join(map(str, result.shape))} "
            f"({result.axes}), {done['computed']} computed{resumed}, tile {result.tile}, in {result.seconds:.1f} s; "
            f"{done['model']}; {done['scale']}; {tissue}objects: {done['summary']}")


def _parse_part(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not I/N (e.g. 2/8)", param_hint="--part") from None
    return i, n


@main.command()
@click.argument("output", required=False, type=click.Path(path_type=Path))
@click.option("--contour", type=int, default=0, show_default=True,
              help="Draw instances as outlines N pixels wide (0: filled).")
@click.option("--screenshot", type=click.Path(path_type=Path),
              help="Save a screenshot of the window to this PNG and close (e.g. under xvfb-run).")
@click.option("--remember-reader", is_flag=True,
              help="Also make `napari X.ome.zarr` use biounet's reader from now on (saved in napari's settings).")
def view(output: Path | None, contour: int, screenshot: Path | None, remember_reader: bool) -> None:
    """Look at a result: open OUTPUT (e.g. slide.ome.zarr) in napari with biounet's reader.

    The image, and the classes and instances as visible labels layers; hovering
    an object shows its row of the object table.
    """
    if contour < 0:
        raise click.UsageError(f"--contour {contour}: use 0 (filled) or a width in pixels")
    if output is None and not remember_reader:
        raise click.UsageError("Missing argument 'OUTPUT'.")
    from biounet.napari.view import ViewError
    from biounet.napari.view import view as run

    if remember_reader:
        try:
            from biounet.napari import FOLDER_PATTERN
            from biounet.napari import remember_reader as remember

            remember()
        except ImportError as err:
            raise ViewError(f"biounet view needs napari ({err}): pip install 'biounet[napari]'") from None
        click.echo(f"napari now opens {FOLDER_PATTERN} folders with biounet's reader "
                   "(Preferences > Plugins lists it; remove it there)")
    if output is not None:
        run(output, contour=contour, screenshot=screenshot)


@main.command("export-geojson")
@click.argument("output", type=click.Path(path_type=Path))
@click.option("-o", "--output", "path", type=click.Path(path_type=Path),
              help="The GeoJSON file (.geojson, or .geojson.gz to compress); default: slide.geojson beside "
              "slide.ome.zarr.")
@click.option("--class-name", help="The objects' class in QuPath (default: the model's object, e.g. Nucleus for "
              "the shipped nuclei model, else its foreground class).")
@click.option("--overwrite", is_flag=True, help="Replace an existing GeoJSON file.")
@click.option("--quiet", is_flag=True, help="Print nothing on success (no progress bar, no summary).")
@click.option("--no-progress", is_flag=True, help="No progress bar; the summary line still prints.")
def export_geojson(output: Path, path: Path | None, class_name: str | None, overwrite: bool, quiet: bool,
                   no_progress: bool) -> None:
    """Write the objects of a complete OUTPUT (slide.ome.zarr) as QuPath GeoJSON detections.

    Every instance becomes a polygon in level-0 pixel coordinates of the slide, with
    its id as name and its row of the object table as measurements; QuPath imports
    the file by drag and drop or File > Import objects.
    """
    from biounet.write.geojson import export_geojson as run

    done = run(output, path, class_name=class_name, overwrite=overwrite, progress=not (quiet or no_progress))
    if not quiet:
        click.echo(_geojson_line(done))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def system(as_json: bool) -> None:
    """What biounet runs on here: CPU, cores, torch, device and memory allocator."""
    from biounet.runtime.machine import describe

    _echo_summary(describe(), as_json)


@main.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--model", metavar="NAME|PATH", help="Describe this model: " + MODEL_HELP + ".")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(path: Path | None, model: str | None, as_json: bool) -> None:
    """Describe an image (format, shape, axes, dtype, chunks, levels and their downsample
    factors, pixel size, objective power and where they were read), a model file or a
    bioimage.io package (.zip, rdf.yaml or its folder: what it is and how biounet runs it).

    A file is told by its content, whatever its name: TIFF by its header, a model
    by torch's archive layout, a package by its rdf.yaml. `--model nuclei` (or
    membranes) describes a shipped model.
    """
    if (path is None) == (model is None):
        raise click.UsageError("pass a PATH (an image or a model file) or --model NAME|PATH, not both"
                               if path is not None else "Missing argument 'PATH' (or pass --model NAME|PATH).")
    if model is None and not path.exists() and str(path) in _shipped_names():  # `biounet info nuclei`
        model = str(path)
    kind = _file_kind(Path(model)) if model is not None and Path(model).exists() else (
        "model" if model is not None else _file_kind(path))
    if kind == "package":
        from biounet.model.zoo_load import describe_package

        summary = describe_package(Path(model) if model is not None else path)
    elif kind == "model":
        from biounet.model.file import read_model_payload
        from biounet.model.names import SHIPPED, resolve_model

        resolved = resolve_model(model if model is not None else path)
        payload = read_model_payload(resolved)
        summary = {"format_version": payload["format_version"], "architecture": _architecture(payload["spec"]),
                   **payload["spec"]}
        if summary.get("training_data") and not as_json:
            summary["training_data"] = _training_data(summary["training_data"])
        if model in SHIPPED and not Path(model).is_file():  # a shipped model: its name and file
            summary = {"shipped_as": model, "file": str(resolved), **summary}
    elif kind == "other":
        _fail(f"{path} is neither an image biounet reads (TIFF, OME-TIFF, whole-slide formats, zarr, OME-Zarr) "
              "nor a biounet model file; check the path", EXIT_RUNTIME)
    else:
        from biounet.read.image import describe, open_image

        summary = describe(open_image(path, check_pixels=False))
    _echo_summary(summary, as_json)


def _shipped_names() -> tuple[str, ...]:
    from biounet.model.names import SHIPPED

    return tuple(SHIPPED)


def _training_data(stored: dict) -> dict:
    """A model's training data and terms, one line each (as stored where the file's are malformed)."""
    from biounet.model.training_data import TrainingData, describe

    try:
        return describe(TrainingData.from_dict(stored))
    except ValueError:
        return stored


def _architecture(spec: dict) -> str:
    """One line naming a model's network (from its stored config, without building it)."""
    unet = spec.get("unet", {})
    if unet.get("encoder"):
        return (f"U-Net with a {unet['encoder']} encoder (decoder width {unet.get('width')}, same padding, "
                f"tiles on multiples of {2 ** (unet.get('depth', 6) - 1)} px, context {unet.get('context')} px)")
    if unet.get("extra", {}).get("arch"):
        return f"{unet['extra']['arch']} network (benchmarks)"
    return (f"U-Net, depth {unet.get('depth')}, width {unet.get('width')}, {unet.get('padding')} padding"
            + (", batch norm" if unet.get("batch_norm") else ""))


TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders


def _file_kind(path: Path) -> str:
    """"package" (bioimage.io), "image" (a TIFF by its header, a slide OpenSlide reads, a folder,
    or a missing path: open_image says what is wrong), "model" (torch.save's zip or legacy
    pickle) or "other"."""
    import zipfile

    from biounet.model.zoo_package import is_package

    if is_package(path):
        return "package"
    if not path.is_file():
        return "image"
    with open(path, "rb") as f:
        head = f.read(4)
    if head in TIFF_MAGIC or not head:
        return "image"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            torch_layout = any(name.endswith("/data.pkl") or name == "data.pkl" for name in zf.namelist())
        return "model" if torch_layout or path.suffix in (".pt", ".pth") else "other"
    if head[:1] == b"\x80" or path.suffix in (".pt", ".pth"):  # a pickle protocol header (torch's legacy format)
        return "model"
    from biounet.read.openslide_levels import ONLY_OPENSLIDE, detect

    if path.suffix.lower() in ONLY_OPENSLIDE or detect(path) is not None:  # MRXS, ...: open_image says the rest
        return "image"
    return "other"


def _echo_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    for key, value in summary.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                click.echo(f"  {k}: {v}")
        else:
            click.echo(f"{key}: {value}")


@main.command()
@click.argument("model", metavar="MODEL")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="The package to write (.zip).")
@click.option("--test-image", type=click.Path(path_type=Path), help="A real image the model is for: its centre crop "
              "is the test input (default: a BBBC039 field of the sample data).")
@click.option("--documentation", type=click.Path(path_type=Path), help="Markdown file for the package's documentation "
              "(default: MODEL_CARD.md for the shipped model, else a summary of the model).")
@click.option("--name", help="The model's name in the package.")
@click.option("--author", "authors", multiple=True, help="An author (repeatable; default: biounet developers).")
@click.option("--license", "license_", help="The package's SPDX licence (default: the one the model's training data "
              "imposes on its weights, e.g. CC-BY-NC-4.0 for the membranes model, else BSD-3-Clause).")
@click.option("--overwrite", is_flag=True, help="Replace an existing package.")
def export(model: str, output: Path, test_image, documentation, name, authors, license_, overwrite) -> None:
    """Write MODEL (a model file, or a shipped model's name: nuclei, membranes, he-nuclei, nuclei-general) as a bioimage.io
    (BioImage Model Zoo) package: pytorch_state_dict and torchscript weights, test tensors from a
    real image, biounet's post-processing in its config."""
    from biounet.model.names import resolve_model

    model = resolve_model(model)
    if not model.exists():
        _fail(f"model not found: {model}; check the path", EXIT_USAGE)
    if output.exists() and not overwrite:
        _fail(f"{output} exists; pass --overwrite to replace it", EXIT_USAGE)
    from biounet.zoo.export import export_package

    done = export_package(model, output, test_image=test_image, documentation=documentation, license=license_,
                          name=name, authors=authors or ("biounet developers",))
    click.echo(f"wrote {done['package']}: bioimage.io model ({done['status']}), licence {done['license']}, test input "
               f"{'x'.join(map(str, done['test_input']))}, test output {'x'.join(map(str, done['test_output']))}")


# Options of `train` and the TrainConfig fields they set.
NORMALIZE_SCOPES = ("image", "folder")  # biounet.predict.normalize.NORMALIZE_OVER, without importing dask here
AUGMENT_ON = ("workers", "device")  # biounet.train.loop.AUGMENT_ON

_TRAIN_FIELDS = {
    "images": "images", "labels": "labels", "out": "out", "val_images": "val_images", "val_labels": "val_labels",
    "target": "target", "labels_kind": "labels_kind", "depth": "depth", "width": "width", "padding": "padding",
    "batch_norm": "batch_norm", "iterations": "iterations", "batch_size": "batch_size", "lr": "lr",
    "schedule": "schedule", "init": "init",
    "optimizer": "optimizer", "val_every": "val_every", "metric": "metric", "seed": "seed", "workers": "workers",
    "tile": "tile", "ignore": "ignore", "w0": "w0", "sigma": "sigma", "dice": "dice", "regression": "regression",
    "foreground_bias": "foreground_bias", "channel": "channels", "device": "device", "precision": "precision",
    "augment_on": "augment_on", "snapshot_every": "snapshot_every", "encoder": "encoder",
    "encoder_weights": "encoder_weights", "time_budget": "time_budget", "pixel_size": "pixel_size",
}
COLOR_AUGMENT = ("none", "he")  # biounet.train.augment: HE_COLOR
ENCODER_FIXED = ("depth", "padding", "batch_norm")  # set by --encoder


@main.command()
@click.option("--images", type=click.Path(path_type=Path), help="Folder of training images (or one large slide).")
@click.option("--labels", type=click.Path(path_type=Path), help="Folder of label images matched by name (or one label array).")
@click.option("--val-images", type=click.Path(path_type=Path), help="Folder of validation images (read whole).")
@click.option("--val-labels", type=click.Path(path_type=Path), help="Folder of validation labels.")
@click.option("--out", type=click.Path(path_type=Path), help="Model file to write (e.g. model.pt); also <out>.ckpt, log and curves.")
@click.option("--target", type=click.Choice(["binary", "3class", "distance"]), default="binary", show_default=True)
@click.option("--labels-kind", type=click.Choice(["auto", "instances", "classes"]), default="auto", show_default=True,
              help="Label images hold instance ids or a 0/1 class mask (auto: a mask if only 0 and 1).")
@click.option("--encoder", help="A U-Net with this encoder: resnet18, resnet34, resnet50, efficientnet_b0 .. "
              "efficientnet_b3 (same padding, batch norm, tiles on multiples of 32).")
@click.option("--encoder-weights", type=click.Path(path_type=Path),
              help="Local pretrained encoder weights (torchvision or timm state dict, .pth or .safetensors); "
              "default: random initialisation.")
@click.option("--depth", type=int, default=5, show_default=True)
@click.option("--width", type=int, help="Channels of the first level (default 64; 16 is plenty on a CPU); "
              "with --encoder the decoder's at full resolution (default 16).")
@click.option("--padding", type=click.Choice(["valid", "same"]), default="valid", show_default=True)
@click.option("--batch-norm", is_flag=True, help="Batch normalisation after each convolution.")
@click.option("--iterations", type=int, default=1000, show_default=True)
@click.option("--time-budget", type=float, help="Stop once the training steps have used this many CPU seconds "
              "(validation not counted), keeping the best model as at the last iteration.")
@click.option("--batch-size", type=int, default=1, show_default=True)
@click.option("--lr", type=float, help="Learning rate (default 1e-3 for adam, 1e-2 for sgd).")
@click.option("--schedule", type=click.Choice(["constant", "cosine"]), default="constant", show_default=True,
              help="Learning rate schedule (cosine: annealed to 0 at the last iteration).")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True,
              help="sgd uses momentum 0.99 as in the paper.")
@click.option("--val-every", type=int, default=100, show_default=True, help="Validate and checkpoint every N iterations.")
@click.option("--metric", type=click.Choice(["auto", "average_f1", "pixel_iou", "rand_error", "pixel_error"]),
              default="auto", show_default=True, help="Model selection (auto: rand_error for 0/1 masks, else average_f1).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True, help="Data loading and augmentation processes.")
@click.option("--tile", type=int, help="Input patch size (default 572, or smaller to fit the images).")
@click.option("--ignore", type=int, help="Label value of unannotated pixels.")
@click.option("--w0", type=float, default=10.0, show_default=True, help="Border weight (paper eq. 2).")
@click.option("--sigma", type=float, default=5.0, show_default=True, help="Border weight width, px.")
@click.option("--dice", type=float, default=0.0, show_default=True, help="Weight of an added soft Dice loss.")
@click.option("--regression", type=click.Choice(["mse", "mae"]), default="mse", show_default=True,
              help="Loss of the distance target.")
@click.option("--foreground-bias", type=float, default=0.0, show_default=True,
              help="Fraction of patches that must contain foreground.")
@click.option("--no-augment", is_flag=True, help="No elastic deformation, rotations, flips or grey-value changes.")
@click.option("--intensity-scale", type=(float, float), help="Range of the random grey-value factor (default 0.9 1.1); "
              "widen it (e.g. 0.3 1.2) for images whose normalisation varies, such as fields with bright debris.")
@click.option("--normalize-over", type=click.Choice(NORMALIZE_SCOPES),
              help="Normalisation statistics of each image (default), or of the whole folder taken together, "
              "as `segment` takes them from a whole slide: for fields of one acquisition.")
@click.option("--value-range", type=(float, float), help="Fixed normalisation: LOW and HIGH map to 0 and 1 for "
              "every image (e.g. 0 255 for 8-bit brightfield RGB) instead of each image's percentiles.")
@click.option("--color-augment", type=click.Choice(COLOR_AUGMENT), default="none", show_default=True,
              help="he: H&E stain (HED) jitter, hue, saturation and blur, for RGB brightfield in [0, 1] "
              "(use --value-range 0 255).")
@click.option("--zoom", type=(float, float), help="Scale augmentation: a random magnification, log-uniform "
              "between LOW and HIGH (e.g. 0.7 1.4), for objects of other sizes.")
@click.option("--targets-after-warp", is_flag=True, help="Warp the instance ids and compute the binary or 3class "
              "target from them, so that boundaries and separation lines stay 1 px at any --zoom (default: warp "
              "the target, as earlier runs did).")
@click.option("--pixel-size", type=float, help="The images' pixel size in um/px, recorded in the model so that "
              "`segment` runs it at that scale.")
@click.option("--channel", type=int, multiple=True, help="Input channel index (repeat for several).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="Mixed precision (auto: bf16 on GPUs of compute capability 8.0+, fp16 with a gradient scaler "
              "on older GPUs, fp32 on the CPU).")
@click.option("--augment-on", type=click.Choice(AUGMENT_ON), default="workers", show_default=True,
              help="Run the augmentation in the --workers processes or on the training device (try device on a "
              "GPU when the workers cannot keep up).")
@click.option("--snapshot-every", type=int, default=0, show_default=True,
              help="Also keep the model every N iterations as <out stem>.itNNNNNN.pt (candidates for "
              "`biounet tune --cross-fit --model A --model B ...`); 0: none.")
@click.option("--init", metavar="NAME|PATH", help="Start from this model's weights (fine-tuning): " + MODEL_HELP + ".")
@click.option("--resume", type=click.Path(path_type=Path), help="Continue the run of this checkpoint (<out>.ckpt).")
@click.option("--quiet", is_flag=True, help="Print nothing on success (no progress bar, no summary).")
@click.pass_context
def train(ctx: click.Context, no_augment: bool, intensity_scale, normalize_over, value_range, color_augment, zoom,
          targets_after_warp: bool, resume, quiet: bool, **options) -> None:
    """Train a U-Net on annotated images (elastic deformation, weighted border loss)."""
    from click.core import ParameterSource

    from biounet.model.file import read_model_payload
    from biounet.train.loop import TrainConfig, config_from_checkpoint
    from biounet.train.loop import train as run

    fields = {_TRAIN_FIELDS[k]: ((list(v) or None) if k == "channel" else v) for k, v in options.items()}
    if options["encoder"] is not None:
        fixed = [f"--{k.replace('_', '-')}" for k in ENCODER_FIXED
                 if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE]
        if fixed:
            raise click.UsageError(f"drop {' and '.join(fixed)}: an --encoder U-Net has depth 6 (strides up to "
                                   "32), same padding and batch norm")
    if resume is not None:  # the checkpoint's settings, unless given on the command line
        given = {_TRAIN_FIELDS[k] for k in options if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
        overrides = {k: v for k, v in fields.items() if k in given}
        if ctx.get_parameter_source("no_augment") == ParameterSource.COMMANDLINE:
            overrides["augment"] = None
        config = config_from_checkpoint(resume, progress=not quiet, **overrides)
    else:
        missing = [f"--{k.replace('_', '-')}" for k in ("images", "labels", "out") if fields[k] is None]
        if missing:
            raise click.UsageError(f"missing option(s) {', '.join(missing)} (or pass --resume CHECKPOINT)")
        config = TrainConfig(**fields, progress=not quiet, **({"augment": None} if no_augment else {}))
    from biounet.train.augment import HE_COLOR

    augment = {"scale_range": list(intensity_scale) if intensity_scale else None,
               "color": dict(HE_COLOR) if color_augment == "he" else None,
               "zoom_range": list(zoom) if zoom else None, "targets_after_warp": True if targets_after_warp else None}
    for key, flag in (("scale_range", "--intensity-scale"), ("color", "--color-augment"), ("zoom_range", "--zoom"),
                      ("targets_after_warp", "--targets-after-warp")):
        if augment[key] is None:
            continue
        if config.augment is None:  # on resume, a changed setting is refused as another run
            raise click.UsageError(f"{flag} needs augmentation: drop --no-augment")
        config = dataclasses.replace(config, augment={**config.augment, key: augment[key]})
    if value_range:
        low, high = value_range
        if not high > low:
            raise click.UsageError(f"--value-range {low:g} {high:g}: HIGH must be above LOW")
        config = dataclasses.replace(config, normalization={**config.normalization, "method": "fixed", "low": low,
                                                            "high": high})
    if normalize_over:  # likewise: another scope on resume is another run
        config = dataclasses.replace(config, normalization={**config.normalization, "over": normalize_over})
    path = run(config)
    prov = read_model_payload(path)["spec"].get("provenance", {})
    best = ""
    if prov.get("validation"):
        best = f", best {prov['metric']} {prov['validation'][prov['metric']]:.4f} at iteration {prov['best_iteration']}"
    if not quiet:
        click.echo(f"wrote {path} ({prov.get('iterations')} iterations{best})")


@main.command()
@click.option("--labels", required=True, type=click.Path(path_type=Path), help="Folder of true label images.")
@click.option("--pred", type=click.Path(path_type=Path), help="Folder of predicted instance label images (same names).")
@click.option("--model", metavar="NAME|PATH", help="Model to run on --images: " + MODEL_HELP + "; default: nuclei.")
@click.option("--weights", type=click.Choice(ZOO_WEIGHTS), help="Which weights of a bioimage.io package to run.")
@click.option("--images", type=click.Path(path_type=Path), help="Folder of images to segment and score (same names).")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Write per-image and summary rows here.")
@click.option("--membrane/--no-membrane", default=None, help="Add pixel and Rand error (default: for 0/1 mask labels).")
@click.option("--ignore", type=int, help="Label value of unannotated pixels (left out of the scores).")
@click.option("--channel", type=int, multiple=True, help="Input channel index for --model (repeat for several).")
@click.option("--tile", type=int, help="Input tile size for --model (default: automatic).")
@click.option("--normalize-over", type=click.Choice(NORMALIZE_SCOPES),
              help="Normalisation statistics for --model: of each image, or of all images taken together "
              "(default: as the model was trained).")
@click.option("--tta", type=click.Choice(TTA_MODES), default="none", show_default=True, help=TTA_HELP)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def evaluate(labels: Path, pred, model, weights, images, csv_path, membrane, ignore, channel, tile, normalize_over,
             tta, device) -> None:
    """Score segmentations (--pred) or a model run on --images (default: the shipped model) against --labels."""
    if pred is not None and (model is not None or images is not None):
        raise click.UsageError("pass either --pred DIR or --images DIR (with --model, or the shipped model)")
    if pred is None and images is None:
        raise click.UsageError("pass --pred DIR (predictions) or --images DIR (to run --model, or the shipped model)")
    if pred is not None and tta != "none":
        raise click.UsageError("--tta applies to a model run on --images, not to --pred segmentations")
    from biounet.evaluate.run import evaluate as run

    if pred is None:
        from biounet.model.names import resolve_model

        model = resolve_model(model)
    table = run(labels, pred_dir=pred, model=model, images_dir=images, membrane=membrane, ignore=ignore,
                device=device, channels=list(channel) or None, tile=tile, normalize_over=normalize_over,
                weights=weights, tta=tta)
    click.echo(table.format())
    if csv_path is not None:
        click.echo(f"wrote {table.to_csv(csv_path)}")



@main.command()
@click.option("--model", "models", required=True, multiple=True, metavar="NAME|PATH",
              help="Model to tune: " + MODEL_HELP + ". With --cross-fit, repeat it to choose among models too "
              "(e.g. a run's snapshots).")
@click.option("--images", required=True, type=click.Path(path_type=Path), help="Folder of validation images.")
@click.option("--labels", required=True, type=click.Path(path_type=Path), help="Folder of their true labels.")
@click.option("--out", type=click.Path(path_type=Path), help="Model file to write (a copy, tuned on all the images); "
              "required unless --cross-fit.")
@click.option("--cross-fit", is_flag=True, help="Report an honest figure: tune on half A of the images and score "
              "on half B, and the reverse (halves: names sorted, alternately); the mean of the held-out halves.")
@click.option("--normalize-over", type=click.Choice(NORMALIZE_SCOPES),
              help="Normalisation statistics of each image or of all together (default: as the model was trained).")
@click.option("--channel", type=int, multiple=True, help="Input channel index (repeat for several).")
@click.option("--tile", type=int, help="Input tile size (default: automatic).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--select-by", type=click.Choice(SELECT_BY), default="average_f1", show_default=True,
              help="Choose the setting (and model) with the best average F1, AJI or PQ (means over the images).")
@click.option("--tta", type=click.Choice(TTA_MODES), default="none", show_default=True, help=TTA_HELP)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--progress/--no-progress", default=None,
              help="A progress bar on stderr (settings x images scored, with the rate); default: when stderr is a "
              "terminal.")
def tune(models: tuple[str, ...], images: Path, labels: Path, out: Path | None, cross_fit: bool, normalize_over,
         channel, tile, overwrite, select_by, tta, device, progress) -> None:
    """Choose the post-processing (smallest object, seed growth, threshold) with the best average F1 (or AJI, PQ).

    --cross-fit reports the honest figure instead (tuned on one half of the images, scored on the other, and
    the reverse); with several --model it chooses the model too.
    """
    import time

    from biounet.evaluate.tune import format_cross_fit, tune_cross_fit
    from biounet.evaluate.tune import tune as run
    from biounet.model.names import resolve_model

    if out is None and not cross_fit:
        raise click.UsageError("missing option --out (the tuned copy to write), or pass --cross-fit to only report")
    if len(models) > 1 and not cross_fit:
        raise click.UsageError("several --model are candidates of a cross-fit: pass --cross-fit (or one --model)")
    paths = [resolve_model(m) for m in models]
    inputs = {p.resolve() for p in paths}
    if out is not None and out.exists() and (not overwrite or out.resolve() in inputs):
        raise click.UsageError(f"{out} exists: choose another --out" + ("" if out.resolve() in inputs
                                                                        else " or pass --overwrite"))
    started = time.perf_counter()
    options = dict(device=device, channels=list(channel) or None, tile=tile, normalize_over=normalize_over, tta=tta,
                   select_by=select_by, progress=sys.stderr.isatty() if progress is None else progress)
    metric = {"average_f1": "average F1", "aji": "AJI", "pq": "PQ"}[select_by]
    if cross_fit:
        result = tune_cross_fit(paths, images, labels, out, **options)
        click.echo(format_cross_fit(result))
        wrote = f"; wrote {out} (tuned on all)" if out is not None else ""
        click.echo(f"cross-fitted {metric} {result.held_out[select_by]:.4f} (in-sample "
                   f"{result.in_sample[select_by]:.4f}, as is {result.as_is[select_by]:.4f}) in "
                   f"{time.perf_counter() - started:.0f} s{wrote}")
        return
    best, rows = run(paths[0], images, labels, out, **options)
    keys = list(rows[0])
    click.echo("  ".join(f"{k:>11}" for k in keys))
    for row in rows:
        click.echo("  ".join(f"{row[k]:>11.4f}" if isinstance(row[k], float) else f"{row[k]:>11}" for k in keys))
    click.echo(f"chose {best} ({metric} {max(r[select_by] for r in rows):.4f}, "
               f"was {rows[0][select_by]:.4f}); wrote {out}")

if __name__ == "__main__":
    main()
