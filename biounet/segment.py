"""`segment`: a slide in, a napari-ready OME-Zarr with its segmentation out.

The Python API behind `biounet segment`; notebook users call it the same way.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import zarr

from biounet import __version__
from biounet.model.file import ModelFileError, default_model_path, load_model
from biounet.model.geometry import Geometry
from biounet.plan.blocks import plan_blocks
from biounet.predict.device import resolve_device
from biounet.predict.engine import Job, run_local
from biounet.predict.memory import choose_batch, choose_tile
from biounet.predict.normalize import normalization_stats, sample_for_stats
from biounet.predict.tiles import block_window
from biounet.read.image import Image, ImageReadError, open_image
from biounet.write.omezarr import (
    CLASS_COLOURS,
    LabelsSpec,
    OutputLayout,
    build_pyramid,
    create_level0,
    ensure_root,
    prepare_output,
    write_image_pyramid,
    write_labels_metadata,
)

DEFAULT_BLOCK = 1024
DEFAULT_MEMORY = 2 * 1024**3


class UsageError(ValueError):
    """A user mistake in the arguments (exit code 2 in the CLI)."""


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
    if have != wanted:
        raise UsageError(
            f"the image has {have} channel(s) and the model takes {wanted}: choose with --channel"
        )
    return None


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
    progress: bool = True,
) -> SegmentResult:
    """Segment every 2D plane of `input` into the OME-Zarr `output` (see README)."""
    t_start = time.perf_counter()
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
    if workers < 1:
        raise UsageError("--workers must be at least 1")
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
    tile = tile or spec.tile or choose_tile(spec.unet, covered, memory)
    blocks = plan_blocks(label_shape[:-2], height, width, block, geometry.align)
    _, _, _, _, ys, xs = block_window(blocks[0], tile, geometry)
    batch = choose_batch(spec.unet, tile, memory, len(ys) * len(xs))

    sample = sample_for_stats(image.levels[level:], image.axes, list(channels) if channels else None)
    stats = normalization_stats(sample, spec.normalization)

    prepare_output(output, overwrite)
    ensure_root(output, ngff)
    layout = OutputLayout(label_axes, label_shape, block, _level_pixel_size(image, level), ngff)
    specs = [LabelsSpec("classes", "uint8", colours=CLASS_COLOURS[: max(2, spec.unet.out_channels)],
                        properties=[{"label-value": i, "class": c} for i, c in enumerate(spec.classes)])]
    create_level0(output, "labels/classes", layout, specs[0])
    if save_probabilities:
        create_level0(output, "probabilities", layout, LabelsSpec("probabilities", save_probabilities, channels=spec.unet.out_channels))
    params = {
        "input": str(input.resolve()), "model": str(model_path.resolve()), "level": level, "tile": tile,
        "block": block, "channels": list(channels) if channels else None, "ngff": ngff,
        "probabilities": save_probabilities, "biounet": __version__,
    }
    set_status(output, "running", params)

    job = Job(
        input=str(input), output=str(output), model=str(model_path), level=level, axes=axes,
        channels=channels, device=device, tile=tile, batch=batch,
        stats=tuple(map(tuple, stats.tolist())), probabilities=save_probabilities,
    )
    bar = _progress(len(blocks), progress)
    try:
        run_local(job, blocks, on_done=lambda b: bar.update(1), workers=workers)
    finally:
        bar.close()

    if write_image:
        write_image_pyramid(output, data, image.axes, layout.pixel_size, ngff, block, image.channel_names)
    build_pyramid(output, "labels/classes", label_axes, layout.pixel_size, ngff, labels=True)
    if save_probabilities:
        c_axes, _ = layout.with_channels(spec.unet.out_channels)
        build_pyramid(output, "probabilities", c_axes, layout.pixel_size, ngff, labels=False)
    write_labels_metadata(output, ngff, specs)
    set_status(output, "complete", params)
    return SegmentResult(output, label_shape, label_axes, len(blocks), tile, batch, time.perf_counter() - t_start)


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


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="block", desc="segment", disable=not enabled, smoothing=0.1)


__all__ = ["segment", "SegmentResult", "UsageError", "ImageReadError"]
