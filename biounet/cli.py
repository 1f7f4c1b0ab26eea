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

from biounet.version import __version__

EXIT_USAGE = 2
EXIT_RUNTIME = 1


EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


def _user_errors() -> dict[type, int]:
    """Known user errors and their exit codes; subclasses before their bases
    (the first match wins)."""
    from biounet.model.file import ModelFileError, ModelNotFoundError
    from biounet.model.geometry import TileSizeError
    from biounet.predict.device import DeviceError
    from biounet.write.runfolder import ResumeError
    from biounet.read.image import ImageReadError, ImageUsageError
    from biounet.plan.run import UsageError
    from biounet.read.files import DataError
    from biounet.train.loop import CheckpointError
    from biounet.write.store import OutputError

    return {
        ImageUsageError: EXIT_USAGE, UsageError: EXIT_USAGE, TileSizeError: EXIT_USAGE, DeviceError: EXIT_USAGE,
        ModelNotFoundError: EXIT_USAGE, OutputError: EXIT_USAGE, ResumeError: EXIT_USAGE,
        ImageReadError: EXIT_RUNTIME, ModelFileError: EXIT_RUNTIME,
        DataError: EXIT_USAGE, CheckpointError: EXIT_USAGE,
    }


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def _fail(message: str, code: int) -> None:
    click.echo(f"biounet: error: {_one_line(message)}", err=True)
    sys.exit(code)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """biounet's own warnings as one line on stderr; others as Python shows them."""
    from biounet.notices import BiounetWarning

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
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except KeyboardInterrupt as err:
            # segment's Interrupted says what was kept and how to resume.
            click.echo(f"biounet: {_one_line(str(err) or 'interrupted')}", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as err:  # noqa: BLE001 - mapped to exit codes below
            if ctx.obj and ctx.obj.get("debug"):
                raise
            for kind, code in _user_errors().items():
                if isinstance(err, kind):
                    _fail(str(err), code)
            from biounet.pipeline.local import TaskError

            if isinstance(err, TaskError):
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
@click.argument("input", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Output OME-Zarr (e.g. slide.ome.zarr).")
@click.option("--model", type=click.Path(path_type=Path), help="Model file (default: the shipped nuclei model).")
@click.option("--tile", type=int, help="Input tile size (188 + 16k for depth 5); default: automatic.")
@click.option("--block", type=int, help="Block size in pixels, the unit of work and of writing: one chunk for "
              "NGFF 0.4 (default 1024), one shard of 4 x 4 chunks for NGFF 0.5 (default 4096).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--workers", type=int, default=1, show_default=True, help="Network threads working on blocks at once.")
@click.option("--channel", multiple=True, help="Input channel(s) for the model, by index or name (repeatable).")
@click.option("--level", type=int, default=0, show_default=True, help="Pyramid level of the input to segment.")
@click.option("--axes", help="Axis order of an input without metadata, e.g. zyx or yxc.")
@click.option("--memory-limit", default="2GB", show_default=True, help="Budget for the network's activations.")
@click.option("--save-probabilities", type=click.Choice(["float16", "uint8"]), help="Also store class probabilities.")
@click.option("--ngff", type=click.Choice(["0.4", "0.5"]), default="0.4", show_default=True, help="OME-Zarr version (0.5 = zarr v3).")
@click.option("--no-image", is_flag=True, help="Do not copy the image into the output (labels only).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--part", help="Compute only share I of N of the blocks (I/N, e.g. a SLURM array task).")
@click.option("--finalize", is_flag=True, help="After all parts: labels, pyramids, table and metadata (with --part: "
              "this part's share; the last part to finish completes the output).")
@click.option("--scheduler", help="Address of a running dask.distributed scheduler.")
@click.option("--cluster", type=click.Choice(["local", "slurm", "pbs", "lsf"]), help="Start a Dask cluster with --workers workers (jobs).")
@click.option("--qc-png", type=click.Path(path_type=Path), help="Write an overlay thumbnail (image + instance outlines).")
def segment(input: Path, output: Path, model, tile, block, device, workers, channel, level, axes, memory_limit,
            save_probabilities, ngff, no_image, overwrite, quiet, part, finalize, scheduler, cluster, qc_png) -> None:
    """Segment INPUT (TIFF, OME-TIFF, zarr, OME-Zarr) into an OME-Zarr for napari.

    Rerunning the same command after an interrupted run resumes it.
    """
    from biounet.segment import describe_tasks, segment as run

    result = run(
        input, output, model=model, tile=tile, block=block, device=device, workers=workers,
        channel=list(channel) or None, overwrite=overwrite, save_probabilities=save_probabilities,
        ngff=ngff, level=level, axes=axes, memory_limit=memory_limit, write_image=not no_image,
        progress=not quiet, part=_parse_part(part), finalize=finalize, scheduler=scheduler, cluster=cluster,
        qc_png=qc_png, log=None if quiet else lambda message: click.echo(f"biounet: {message}", err=True),
    )
    done = result.extra
    if part and not done["complete"]:
        step = "finalize part" if finalize else "part"
        then = ("the last part to finish completes the output" if finalize
                else "run with --finalize (or --finalize --part I/N) once every part is done")
        click.echo(f"{step} {part}: computed {done['computed']} blocks into {result.output} in {result.seconds:.1f} s; "
                   f"{then}")
        if not quiet:
            click.echo(f"tasks: {describe_tasks(done)}")
        return
    resumed = f", {done['skipped']} already done" if done.get("skipped") else ""
    click.echo(
        f"wrote {result.output}: {result.blocks} blocks of {'x'.join(map(str, result.shape))} "
        f"({result.axes}), {done['computed']} computed{resumed}, tile {result.tile}, in {result.seconds:.1f} s"
    )
    click.echo(f"objects: {done['summary']}")
    if not quiet:
        click.echo(f"tasks: {describe_tasks(done)}")


def _parse_part(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not I/N (e.g. 2/8)", param_hint="--part") from None
    return i, n


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def system(as_json: bool) -> None:
    """What biounet runs on here: CPU, cores, torch, device and memory allocator."""
    from biounet.system import describe

    _echo_summary(describe(), as_json)


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(path: Path, as_json: bool) -> None:
    """Describe an image (shape, axes, dtype, chunks, levels, pixel size) or a model file."""
    from biounet.model.file import read_model_payload
    from biounet.read.image import describe, open_image

    if path.is_file() and path.suffix in (".pt", ".pth"):
        payload = read_model_payload(path)
        summary = {"format_version": payload["format_version"], **payload["spec"]}
    else:
        summary = describe(open_image(path))
    _echo_summary(summary, as_json)


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


# Options of `train` and the TrainConfig fields they set.
NORMALIZE_SCOPES = ("image", "folder")  # biounet.predict.normalize.NORMALIZE_OVER, without importing dask here

_TRAIN_FIELDS = {
    "images": "images", "labels": "labels", "out": "out", "val_images": "val_images", "val_labels": "val_labels",
    "target": "target", "labels_kind": "labels_kind", "depth": "depth", "width": "width", "padding": "padding",
    "batch_norm": "batch_norm", "iterations": "iterations", "batch_size": "batch_size", "lr": "lr",
    "schedule": "schedule", "init": "init",
    "optimizer": "optimizer", "val_every": "val_every", "metric": "metric", "seed": "seed", "workers": "workers",
    "tile": "tile", "ignore": "ignore", "w0": "w0", "sigma": "sigma", "dice": "dice", "regression": "regression",
    "foreground_bias": "foreground_bias", "channel": "channels", "device": "device",
}


@main.command()
@click.option("--images", type=click.Path(path_type=Path), help="Folder of training images (or one large slide).")
@click.option("--labels", type=click.Path(path_type=Path), help="Folder of label images matched by name (or one label array).")
@click.option("--val-images", type=click.Path(path_type=Path), help="Folder of validation images (read whole).")
@click.option("--val-labels", type=click.Path(path_type=Path), help="Folder of validation labels.")
@click.option("--out", type=click.Path(path_type=Path), help="Model file to write (e.g. model.pt); also <out>.ckpt, log and curves.")
@click.option("--target", type=click.Choice(["binary", "3class", "distance"]), default="binary", show_default=True)
@click.option("--labels-kind", type=click.Choice(["auto", "instances", "classes"]), default="auto", show_default=True,
              help="Label images hold instance ids or a 0/1 class mask (auto: a mask if only 0 and 1).")
@click.option("--depth", type=int, default=5, show_default=True)
@click.option("--width", type=int, default=64, show_default=True, help="Channels of the first level (16 is plenty on a CPU).")
@click.option("--padding", type=click.Choice(["valid", "same"]), default="valid", show_default=True)
@click.option("--batch-norm", is_flag=True, help="Batch normalisation after each convolution.")
@click.option("--iterations", type=int, default=1000, show_default=True)
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
@click.option("--channel", type=int, multiple=True, help="Input channel index (repeat for several).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--init", type=click.Path(path_type=Path), help="Start from this model's weights (fine-tuning).")
@click.option("--resume", type=click.Path(path_type=Path), help="Continue the run of this checkpoint (<out>.ckpt).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def train(ctx: click.Context, no_augment: bool, intensity_scale, normalize_over, resume, quiet: bool,
          **options) -> None:
    """Train a U-Net on annotated images (elastic deformation, weighted border loss)."""
    from click.core import ParameterSource

    from biounet.model.file import read_model_payload
    from biounet.train.loop import TrainConfig, config_from_checkpoint, train as run

    fields = {_TRAIN_FIELDS[k]: ((list(v) or None) if k == "channel" else v) for k, v in options.items()}
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
    if intensity_scale:  # on resume, a changed range is refused as another run
        if config.augment is None:
            raise click.UsageError("--intensity-scale needs augmentation: drop --no-augment")
        config = dataclasses.replace(config, augment={**config.augment, "scale_range": list(intensity_scale)})
    if normalize_over:  # likewise: another scope on resume is another run
        config = dataclasses.replace(config, normalization={**config.normalization, "over": normalize_over})
    path = run(config)
    prov = read_model_payload(path)["spec"].get("provenance", {})
    best = ""
    if prov.get("validation"):
        best = f", best {prov['metric']} {prov['validation'][prov['metric']]:.4f} at iteration {prov['best_iteration']}"
    click.echo(f"wrote {path} ({prov.get('iterations')} iterations{best})")


@main.command()
@click.option("--labels", required=True, type=click.Path(path_type=Path), help="Folder of true label images.")
@click.option("--pred", type=click.Path(path_type=Path), help="Folder of predicted instance label images (same names).")
@click.option("--model", type=click.Path(path_type=Path), help="Model file to run on --images instead.")
@click.option("--images", type=click.Path(path_type=Path), help="Folder of images for --model (same names).")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Write per-image and summary rows here.")
@click.option("--membrane/--no-membrane", default=None, help="Add pixel and Rand error (default: for 0/1 mask labels).")
@click.option("--ignore", type=int, help="Label value of unannotated pixels (left out of the scores).")
@click.option("--channel", type=int, multiple=True, help="Input channel index for --model (repeat for several).")
@click.option("--tile", type=int, help="Input tile size for --model (default: automatic).")
@click.option("--normalize-over", type=click.Choice(NORMALIZE_SCOPES),
              help="Normalisation statistics for --model: of each image, or of all images taken together "
              "(default: as the model was trained).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def evaluate(labels: Path, pred, model, images, csv_path, membrane, ignore, channel, tile, normalize_over,
             device) -> None:
    """Score segmentations (--pred) or a model (--model --images) against --labels."""
    from biounet.evaluate.run import evaluate as run

    if (pred is None) == (model is None):
        raise click.UsageError("pass either --pred DIR or --model MODEL --images DIR")
    if model is not None and images is None:
        raise click.UsageError("--model needs --images DIR")
    table = run(labels, pred_dir=pred, model=model, images_dir=images, membrane=membrane, ignore=ignore,
                device=device, channels=list(channel) or None, tile=tile, normalize_over=normalize_over)
    click.echo(table.format())
    if csv_path is not None:
        click.echo(f"wrote {table.to_csv(csv_path)}")



@main.command()
@click.option("--model", required=True, type=click.Path(path_type=Path), help="Model file to tune.")
@click.option("--images", required=True, type=click.Path(path_type=Path), help="Folder of validation images.")
@click.option("--labels", required=True, type=click.Path(path_type=Path), help="Folder of their true labels.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Model file to write (a copy).")
@click.option("--normalize-over", type=click.Choice(NORMALIZE_SCOPES),
              help="Normalisation statistics of each image or of all together (default: as the model was trained).")
@click.option("--channel", type=int, multiple=True, help="Input channel index (repeat for several).")
@click.option("--tile", type=int, help="Input tile size (default: automatic).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def tune(model: Path, images: Path, labels: Path, out: Path, normalize_over, channel, tile, overwrite, device) -> None:
    """Choose the post-processing (smallest object, seed growth, threshold) with the best average F1."""
    from biounet.evaluate.tune import tune as run

    if out.exists() and (not overwrite or out.resolve() == model.resolve()):
        raise click.UsageError(f"{out} exists: choose another --out" + ("" if out.resolve() == model.resolve()
                                                                        else " or pass --overwrite"))
    best, rows = run(model, images, labels, out, device=device, channels=list(channel) or None, tile=tile,
                     normalize_over=normalize_over)
    keys = list(rows[0])
    click.echo("  ".join(f"{k:>11}" for k in keys))
    for row in rows:
        click.echo("  ".join(f"{row[k]:>11.4f}" if isinstance(row[k], float) else f"{row[k]:>11}" for k in keys))
    click.echo(f"chose {best} (average F1 {max(r['average_f1'] for r in rows):.4f}, "
               f"was {rows[0]['average_f1']:.4f}); wrote {out}")

if __name__ == "__main__":
    main()
