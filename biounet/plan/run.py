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
from biounet.model.names import file_digest, resolve_model
from biounet.model.spec import ModelSpec
from biounet.plan.blocks import Block, tile_window
from biounet.plan.layout import OutputLayout
from biounet.plan.memory import choose_batch, choose_tile

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
    threads: int | None = None  # torch threads per process (None: every core it may use)
    precision: str = "fp32"  # "fp32", "bf16" or "fp16" (autocast), resolved for the device
    compile: bool = False  # torch.compile the network
    weights: str | None = None  # which weights of a bioimage.io package (None: its first runnable)
    tta: str = "none"  # test-time augmentation (biounet.predict.tta)
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
        _, _, _, _, ys, xs = tile_window(block, self.tile, self.geometry)
        return len(ys) * len(xs)

    def with_stats(self, stats) -> "Run":
        return replace(self, stats=tuple(tuple(float(v) for v in s) for s in stats))

    def __reduce__(self):  # cached properties are per process, not pickled
        values = {f: getattr(self, f) for f in self.__dataclass_fields__}
        return (_rebuild_run, (values,))


def _rebuild_run(values: dict) -> Run:
    return Run(**values)


def make_run(
    input, output, *, model=None, tile: int | None = None, block: int | None = None, device: str = "auto",
    channel: list[str] | None = None, save_probabilities: str | None = None, ngff: str = "0.4", level: int = 0,
    axes: str | None = None, memory_limit: int | str = DEFAULT_MEMORY, write_image: bool = True,
    precision: str = "auto", compile: bool = False, workers: int = 1, weights: str | None = None,
    tta: str = "none", tissue: str | None = None,
) -> Run:
    """Check every argument and resolve tile, batch, blocks, precision and arrays;
    touches no output."""
    from biounet.plan.gpu import choose_precision
    from biounet.plan.options import PRECISIONS, check_tissue, check_tta
    from biounet.read.image import open_image
    from biounet.runtime.devices import resolve_devices

    input, output = Path(input), Path(output)
    image = open_image(input, axes)
    model_path = resolve_model(model)  # a file, a bioimage.io package, or a shipped name (None: nuclei)
    _, spec = load_model(model_path, weights)  # the whole file, so a broken one fails before any output exists
    geometry = geometry_of(spec.unet)
    if ngff not in NGFF_VERSIONS:
        raise UsageError(f"--ngff {ngff!r} is not supported: use 0.4 or 0.5")
    if save_probabilities not in (None, *PROBABILITY_TYPES):
        raise UsageError(f"--save-probabilities {save_probabilities!r}: use float16 or uint8")
    block = DEFAULT_BLOCK[ngff] if block is None else block
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
    if not 0 <= level < len(image.readers):
        raise UsageError(f"--level {level} does not exist: the image has levels 0..{len(image.readers) - 1}")
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
    chosen = tile or spec.tile or choose_tile(spec.unet, covered, memory)
    layout = OutputLayout(label_axes, label_shape, block, image.level_pixel_size(level), ngff, chunk)
    first = layout.blocks(0)[0]
    _, _, _, _, ys, xs = tile_window(first, chosen, geometry)
    if devices[0].type == "cuda":  # tiles per launch from the GPU's free memory, shared by its threads
        from biounet.plan.gpu import choose_gpu_batch, gpu_info

        given = memory_limit != DEFAULT_MEMORY
        batch = choose_gpu_batch(spec.unet, chosen, gpu_info(str(devices[0])).free, memory if given else None,
                                 len(ys) * len(xs), precision, max(2, workers))
    else:
        batch = choose_batch(spec.unet, chosen, memory, len(ys) * len(xs))
    params = {
        "input": str(input.resolve()), "input_bytes": size_of(input), "model_sha256": file_digest(model_path),
        "level": level, "axes": axes, "tile": chosen, "block": block,
        "channels": list(channels) if channels else None, "ngff": ngff,
        "probabilities": save_probabilities, "image": write_image, "biounet": __version__,
        "precision": precision, **({"weights": spec.unet.extra["weights"]} if "weights" in spec.unet.extra else {}),
        **({"tta": tta} if tta != "none" else {}),
        "tissue": tissue if tissue in ("auto", "none") else {"mask": str(Path(tissue).resolve()),
                                                             "bytes": size_of(Path(tissue))},
    }
    return Run(
        input=str(input), output=str(output), level=level, axes=axes, image_axes=image.axes,
        image_dtype=str(data.dtype.newbyteorder("=")), image_channels=image.size("c") if "c" in image.axes else 0,
        channels=channels, model=str(model_path), spec=spec, tile=chosen, batch=batch, layout=layout,
        probabilities=save_probabilities, write_image=write_image, device=device, params=params,
        precision=precision, compile=compile, weights=weights, tta=tta, tissue=tissue,
    )

