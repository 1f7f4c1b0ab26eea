"""A run, described once: every argument checked and every choice made before anything
is written. `make_run` is the only place that validates `segment`'s arguments; the
resulting `Run` is small and picklable and travels to every task, on any worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from biounet import __version__
from biounet.model.file import load_model
from biounet.model.geometry import TileSizes, geometry_of
from biounet.model.names import ModelNameError, file_digest, resolve_model, shipped
from biounet.model.spec import ModelSpec
from biounet.plan.blocks import Block, tile_window
from biounet.plan.layout import OutputLayout
from biounet.plan.memory import choose_batch, choose_tile
from biounet.plan.scale import (Scale, ScaleError, check_options, model_block, plan_scale, scale_factor,
                                scaled_block_size)

DEFAULT_BLOCK = {"0.4": 1024, "0.5": 4096}
SHARD_SIDE = 4  # chunks per shard side (NGFF 0.5)
DEFAULT_MEMORY = 2 * 1024**3
NGFF_VERSIONS = ("0.4", "0.5")
PROBABILITY_TYPES = ("float16", "uint8")


class UsageError(ValueError):
    """A user mistake in the arguments (exit code 2 in the CLI)."""


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


def parse_part(part: tuple[int, int] | None) -> tuple[int, int] | None:
    if part is not None and not (1 <= part[0] <= part[1]):
        raise UsageError(f"--part {part[0]}/{part[1]}: use I/N with 1 <= I <= N")
    return part


def select_channels(image, channel: list[str] | tuple[str, ...] | None, wanted: int) -> tuple[int, ...] | None:
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


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@dataclass(frozen=True)
class Run:
    """Everything a task needs to do its part of a run (picklable, a few kilobytes).

    The input is `input` at pyramid `level`, read in `image_axes` (canonical order)
    with `axes` as the user's override; the model is `model` with `spec`; blocks
    and arrays are those of `layout`; `stats` are the normalisation bounds, fixed
    when the output is created; `params` are what a resume must match.
    """

    input: str
    output: str
    level: int
    axes: str | None
    image_axes: str
    image_dtype: str  # the input's pixel type in native byte order (its copy in the output)
    image_channels: int  # the image's c axis length (0: no c axis)
    channels: tuple[int, ...] | None
    model: str
    spec: ModelSpec
    tile: int
    batch: int
    layout: OutputLayout
    probabilities: str | None
    write_image: bool
    device: str
    params: dict = field(compare=False)
    stats: tuple[tuple[float, float], ...] = ((0.0, 1.0),)
    threads: int | None = None  # torch threads per network thread on the CPU (None: every core it may use)
    workers: int = 1  # network threads of a local run (`cpu_workers` on the CPU; on GPUs at least 2 per GPU)
    precision: str = "fp32"  # "fp32", "bf16" or "fp16" (autocast), resolved for the device
    compile: bool = False  # torch.compile the network
    weights: str | None = None  # which weights of a bioimage.io package (None: its first runnable)
    tta: str = "none"  # test-time augmentation (biounet.predict.tta)
    scale: Scale = Scale()  # the network's pixels against the slide's (biounet.plan.scale)
    model_text: str = ""  # which model runs and why, for the summary line
    image_rgb: bool = False  # the image copy is a colour scan's red, green and blue (8 bits)
    tissue: str = "none"  # "auto", "none" or a mask file: which blocks are predicted (biounet.pipeline.tissue)

    @property
    def geometry(self) -> TileSizes:
        return geometry_of(self.spec.unet)

    @cached_property
    def blocks(self) -> list[Block]:
        """Level-0 blocks (the units of prediction and labelling)."""
        return self.layout.blocks(0)

    @property
    def table(self) -> Path:
        from biounet.plan.outputs import table_path

        return table_path(Path(self.output))

    def tiles_of(self, block: Block) -> int:
        """The network's tiles for `block` (in model space when rescaled)."""
        if self.scale.rescaled:
            block = model_block(block, self.scale.steps, self.geometry.align)
        _, _, _, _, ys, xs = tile_window(block, self.tile, self.geometry)
        return len(ys) * len(xs)

    def with_stats(self, stats) -> "Run":
        return replace(self, stats=tuple(tuple(float(v) for v in s) for s in stats))

    def __reduce__(self):  # cached properties are per process, not pickled
        values = {f: getattr(self, f) for f in self.__dataclass_fields__}
        return (_rebuild_run, (values,))


def _rebuild_run(values: dict) -> Run:
    return Run(**values)


def cpu_workers(workers: int | None, cores: int) -> tuple[int, int]:
    """(network threads, torch threads each) for a run on `cores` CPU cores.

    By default two network threads share the cores (each with half of them): while one waits
    for the CPU-side work that its neighbour's block set off (reading, labelling, writing,
    pyramids), the other keeps computing, where one network on every core would stall all
    its OpenMP threads at each barrier whenever that work takes one core from it."""
    workers = workers if workers is not None else (2 if cores >= 2 else 1)
    return workers, max(1, cores // workers)


def make_run(
    input, output, *, model=None, tile: int | None = None, block: int | None = None, device: str = "auto",
    channel: list[str] | None = None, save_probabilities: str | None = None, ngff: str = "0.4", level: int = 0,
    axes: str | None = None, memory_limit: int | str = DEFAULT_MEMORY, write_image: bool = True,
    precision: str = "auto", compile: bool = False, workers: int | None = None, weights: str | None = None,
    tta: str = "none", pixel_size: float | None = None, diameter: float | None = None, rescale: bool = True,
    tissue: str | None = None,
) -> Run:
    """Check every argument and resolve model, scale, tile, batch, blocks, precision and
    arrays; touches no output. `workers`: network threads (None: `cpu_workers` on the CPU, 2 per GPU).

    `pixel_size` (um/px of the slide's level 0) overrides the slide's metadata;
    `diameter` (the objects' diameter in pixels of the level segmented) sets the scale
    where the slide has no pixel size; `rescale=False` runs at the slide's own scale
    (`biounet.plan.scale`). With no `model`, the shipped model for the kind of image
    (`biounet.model.choice`)."""
    from biounet.plan.gpu import choose_precision
    from biounet.plan.options import PRECISIONS, check_tissue, check_tta
    from biounet.read.image import open_image
    from biounet.runtime.devices import cpu_threads, resolve_devices

    input, output = Path(input), Path(output)
    image = open_image(input, axes)
    if not 0 <= level < len(image.readers):
        raise UsageError(f"--level {level} does not exist: the image has levels 0..{len(image.readers) - 1}")
    try:
        check_options(pixel_size, diameter, rescale)
    except ScaleError as err:
        raise UsageError(str(err)) from None
    if model is None or str(model) == "":
        model, why = _default_model(image, level, channel)
        model_text = f"model {model} ({why})"
    else:
        model_text = f"model {Path(str(model)).name}"
    model_path = resolve_model(model)  # a file, a bioimage.io package, or a shipped name
    _, spec = load_model(model_path, weights)  # the whole file, so a broken one fails before any output exists
    geometry = geometry_of(spec.unet)
    scale = _scale(image, level, spec, pixel_size, diameter, rescale)
    if ngff not in NGFF_VERSIONS:
        raise UsageError(f"--ngff {ngff!r} is not supported: use 0.4 or 0.5")
    if save_probabilities not in (None, *PROBABILITY_TYPES):
        raise UsageError(f"--save-probabilities {save_probabilities!r}: use float16 or uint8")
    if block is None:  # a large scale factor takes smaller blocks, so the model-space window stays as large
        block = scaled_block_size(DEFAULT_BLOCK[ngff], scale.factor, geometry.align)
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
    devices = resolve_devices(device)
    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1")
    threads = None
    if devices[0].type == "cpu":
        workers, threads = cpu_workers(workers, cpu_threads())
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}: use {', '.join(PRECISIONS)}")
    capability = None
    if devices[0].type == "cuda":
        import torch

        capability = torch.cuda.get_device_capability(devices[0])
    precision = choose_precision(precision, devices[0].type, capability)
    try:
        check_tta(tta)
        tissue = check_tissue(tissue, image.rgb)
    except ValueError as err:
        raise UsageError(str(err)) from None
    memory = parse_size(memory_limit)
    if output.resolve() == input.resolve() or input.resolve() in output.resolve().parents:
        raise UsageError("the output must not be the input or lie inside it")
    channels = select_channels(image, channel, spec.unet.in_channels)
    data = image.readers[level]
    label_axes = image.axes.replace("c", "")
    label_shape = tuple(n for a, n in zip(image.axes, data.shape) if a != "c")
    height, width = label_shape[-2:]
    # NGFF 0.5: a block is a shard of 4 x 4 chunks (fewer files for HPC file systems), and the
    # tile is the one a 0.4 run of the default block size takes: the same tiles either way.
    chunk = max(block // SHARD_SIDE, geometry.align) if ngff == "0.5" else block
    covered = min(block if ngff == "0.4" else min(block, DEFAULT_BLOCK["0.4"]),
                  -(-max(height, width) // geometry.align) * geometry.align)
    if scale.rescaled:  # the tiles cover a block's model-space range
        inner = model_block(Block(0, (), 0, covered, 0, covered), scale.steps, geometry.align)
        covered = -(-max(inner.shape) // geometry.align) * geometry.align
    # On the CPU each network thread holds its own tiles' activations: the budget is shared.
    per_worker = memory // workers if devices[0].type == "cpu" else memory
    chosen = tile or spec.tile or choose_tile(spec.unet, covered, per_worker)
    layout = OutputLayout(label_axes, label_shape, block, _level_pixel_size(image, level, pixel_size), ngff, chunk)
    first = layout.blocks(0)[0]
    if scale.rescaled:
        first = model_block(first, scale.steps, geometry.align)
    _, _, _, _, ys, xs = tile_window(first, chosen, geometry)
    if devices[0].type == "cuda":  # tiles per launch from the GPU's free memory, shared by its threads
        from biounet.plan.gpu import choose_gpu_batch, gpu_info

        given = memory_limit != DEFAULT_MEMORY
        batch = choose_gpu_batch(spec.unet, chosen, gpu_info(str(devices[0])).free, memory if given else None,
                                 len(ys) * len(xs), precision, max(2, workers or 2))
    else:
        batch = choose_batch(spec.unet, chosen, per_worker, len(ys) * len(xs))
    params = {
        "input": str(input.resolve()), "input_bytes": size_of(input), "model_sha256": file_digest(model_path),
        "level": level, "axes": axes, "tile": chosen, "block": block,
        "channels": list(channels) if channels else None, "ngff": ngff,
        "probabilities": save_probabilities, "image": write_image, "biounet": __version__,
        "precision": precision, **({"weights": spec.unet.extra["weights"]} if "weights" in spec.unet.extra else {}),
        **({"tta": tta} if tta != "none" else {}), "scale": scale.record(),
        "tissue": tissue if tissue in ("auto", "none") else {"mask": str(Path(tissue).resolve()),
                                                             "bytes": size_of(Path(tissue))},
    }
    return Run(
        input=str(input), output=str(output), level=level, axes=axes, image_axes=image.axes,
        image_dtype=str(data.dtype.newbyteorder("=")), image_channels=image.size("c") if "c" in image.axes else 0,
        channels=channels, model=str(model_path), spec=spec, tile=chosen, batch=batch, layout=layout,
        probabilities=save_probabilities, write_image=write_image, device=device, params=params,
        precision=precision, compile=compile, weights=weights, tta=tta, threads=threads, tissue=tissue,
        image_rgb=bool(image.rgb) and image.size("c") == 3 and str(data.dtype) == "uint8",
        workers=workers if devices[0].type == "cpu" else (workers or 2), scale=scale, model_text=model_text,
    )


def _default_model(image, level: int, channel: list[str] | None) -> tuple[str, str]:
    """The shipped model for this image when none is named, and why; a one-line error when
    that model is not in this build."""
    from biounet.model.choice import default_model, looks_rgb, modality
    from biounet.read.sample import brightness

    channels = len(channel) if channel else image.size("c")
    kind = modality(image.format)
    light = brightness(image, level) if looks_rgb(channels, image.dtype) and kind is None else None
    name, why = default_model(channels, str(image.dtype), kind, light, picked=bool(channel))
    if name not in shipped():
        raise ModelNameError(f"the slide looks like RGB brightfield, whose default model {name} is not in this "
                             "build yet: pass --model with a model for it, or --channel C to segment one channel with "
                             "the fluorescence model nuclei")
    return name, why


def _scale(image, level: int, spec: ModelSpec, pixel_size: float | None, diameter: float | None,
           rescale: bool) -> Scale:
    """The run's `Scale`: the slide's pixel size (from `pixel_size`, level 0's, or the
    file) against the model's, or `diameter` against the model's objects."""
    fy, fx = image.downsamples[level]
    if pixel_size is not None:
        slide_um, source = pixel_size * (fy + fx) / 2, "--pixel-size"
    else:
        slide_um, source = image.microns_per_pixel(level), "the file"
    numbers = {"slide_um": slide_um, "slide_from": source if slide_um is not None else None,
               "model_um": spec.pixel_size, "diameter": diameter, "model_diameter": spec.diameter}
    try:
        factor, why = scale_factor(slide_um, spec.pixel_size, slide_from=source, model_diameter=spec.diameter,
                                   diameter=diameter, rescale=rescale)
    except ScaleError as err:
        raise UsageError(str(err)) from None
    return plan_scale(factor, why, level, image.downsamples, **numbers)


def _level_pixel_size(image, level: int, pixel_size: float | None) -> dict[str, tuple[float, str]]:
    """The pixel size of the level segmented, for the output's metadata and the object table:
    the file's, or `pixel_size` (um/px of level 0) times the level's downsample."""
    sizes = image.level_pixel_size(level)
    if pixel_size is not None:
        fy, fx = image.downsamples[level]
        sizes.update(y=(pixel_size * fy, "micrometer"), x=(pixel_size * fx, "micrometer"))
    return sizes

