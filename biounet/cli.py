"""The `biounet` command: a thin layer over the Python API.

User mistakes end with a one-line message and exit code 2 (usage) or 1
(runtime); `--debug` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from biounet import __version__

EXIT_USAGE = 2
EXIT_RUNTIME = 1


def _user_errors() -> dict[type, int]:
    from biounet.model.file import ModelFileError
    from biounet.model.geometry import TileSizeError
    from biounet.predict.device import DeviceError
    from biounet.read.image import ImageReadError, InputNotFoundError
    from biounet.segment import UsageError
    from biounet.write.omezarr import OutputError

    return {
        InputNotFoundError: EXIT_USAGE, UsageError: EXIT_USAGE, TileSizeError: EXIT_USAGE, DeviceError: EXIT_USAGE,
        ImageReadError: EXIT_RUNTIME, ModelFileError: EXIT_RUNTIME, OutputError: EXIT_USAGE,
    }


def _fail(message: str, code: int) -> None:
    click.echo(f"biounet: error: {message}", err=True)
    sys.exit(code)


class BiounetGroup(click.Group):
    """Turns known user errors into one-line messages."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as err:  # noqa: BLE001 - mapped to exit codes below
            if ctx.obj and ctx.obj.get("debug"):
                raise
            for kind, code in _user_errors().items():
                if isinstance(err, kind):
                    _fail(str(err), code)
            from biounet.predict.engine import BlockError

            if isinstance(err, BlockError):
                _fail(f"{err} (rerun with --debug for the traceback)", EXIT_RUNTIME)
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
@click.option("--block", type=int, default=1024, show_default=True, help="Output block (and chunk) size in pixels.")
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
def segment(input: Path, output: Path, model, tile, block, device, workers, channel, level, axes, memory_limit,
            save_probabilities, ngff, no_image, overwrite, quiet) -> None:
    """Segment INPUT (TIFF, OME-TIFF, zarr, OME-Zarr) into an OME-Zarr for napari."""
    from biounet.segment import segment as run

    result = run(
        input, output, model=model, tile=tile, block=block, device=device, workers=workers,
        channel=list(channel) or None, overwrite=overwrite, save_probabilities=save_probabilities,
        ngff=ngff, level=level, axes=axes, memory_limit=memory_limit, write_image=not no_image,
        progress=not quiet,
    )
    click.echo(
        f"wrote {result.output}: {result.blocks} blocks of {'x'.join(map(str, result.shape))} "
        f"({result.axes}), tile {result.tile}, in {result.seconds:.1f} s"
    )


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


if __name__ == "__main__":
    main()
