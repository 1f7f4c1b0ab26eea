"""8. The GPU worker, in one command a lent GPU machine runs in minutes.

    python -m benchmarks --only gpu              # on a GPU machine (CUDA), writes docs/benchmarks.md
    python -m benchmarks --only gpu --smoke      # tiny sizes: checks the script (also on the CPU)

On the best device here (a CUDA GPU, else the CPU), for the shipped width-16
U-Net and a random-weight width-64 original U-Net:

1. bare network MP/s (output pixels) at the tile and batch `segment` chooses,
   in fp32 and in mixed precision (bf16 where the GPU has it, else fp16);
2. `segment` end to end on a slide (16384^2), and with the null network (the
   CPU side's ceiling on this machine's cores);
3. the GPU's busy fraction during `segment` (nvidia-smi's utilisation, sampled);
4. tiling invariance (fp32 class maps for several tile sizes against one tile
   size) and precision agreement (mixed precision against fp32: the share of
   equal class-map pixels, and average F1 on BBBC039 val images);
5. training iterations/s at tile 572 (width 16 and 64), fp32 and mixed.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import MP, ROOT, Context, Section, Stats, Target
from benchmarks.null_model import null_model

VAL = ROOT.parent / "shared" / "data" / "bbbc039" / "val"


def device_here() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def random_unet(path: Path, width: int) -> Path:
    """A random-weight original U-Net (depth 5, valid) of `width`, saved as a model file."""
    from biounet.model.file import save_model
    from biounet.model.spec import ModelSpec
    from biounet.model.unet import UNet

    torch.manual_seed(0)
    net = UNet(width=width)
    save_model(path, net, ModelSpec(unet=net.config))
    return path


def bare_rate(model: Path, device: str, precision: str, tile: int, batch: int, calls: int) -> float:
    """Output MP/s of the network alone on random tiles (after one untimed call)."""
    from biounet.model.file import load_model
    from biounet.predict.device import prepare, run

    net, spec = load_model(model)
    net = prepare(net, torch.device(device), precision=precision)
    x = torch.randn(batch, spec.unet.in_channels, tile, tile, device=device)
    seconds = repeated(lambda: run(net, x), calls, device)
    out = spec.unet.geometry().output_size(tile)
    return calls * batch * out * out / MP / seconds


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def repeated(fn, calls: int, device: str) -> float:
    """Seconds for `calls` calls of `fn` after one untimed call, the device's queue drained."""
    fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return time.perf_counter() - start


class GpuSampler:
    """nvidia-smi's GPU utilisation sampled every 0.1 s while running (None without nvidia-smi)."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.tool = shutil.which("nvidia-smi")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            out = subprocess.run([self.tool, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True)
            try:
                self.values.append(float(out.stdout.split()[0]))
            except (IndexError, ValueError):
                pass

    def __enter__(self) -> "GpuSampler":
        if self.tool:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.tool:
            self._thread.join()

    @property
    def busy(self) -> float | None:
        return float(np.mean(self.values)) / 100 if self.values else None


def run_segment(slide: Path, out: Path, model: Path, device: str, precision: str = "auto") -> tuple[float, float | None]:
    """Seconds `segment` reports, and the GPU's mean busy fraction meanwhile."""
    from biounet.pipeline.segment import segment

    shutil.rmtree(out, ignore_errors=True)
    with GpuSampler() as sampler:
        result = segment(slide, out, model=model, device=device, precision=precision, progress=False)
    return result.seconds, sampler.busy


def class_map(model: Path, image: np.ndarray, device: str, precision: str, tile: int | None) -> np.ndarray:
    """The class map `segment`'s engine gives for a whole in-memory image."""
    from biounet.model.file import load_model
    from biounet.predict.array import predict_array
    from biounet.predict.classes import model_classes
    from biounet.predict.device import prepare

    net, spec = load_model(model)
    net = prepare(net, torch.device(device), precision=precision)
    return model_classes(spec.postprocess, predict_array(net, spec, image.astype(np.float32), tile=tile))


def invariance(model: Path, device: str, mixed: str, tiles: list[int], images: list[np.ndarray]) -> dict:
    """fp32 class maps identical across tile sizes; mixed precision's share of equal pixels."""
    same, agree, total = True, 0, 0
    for image in images:
        reference = class_map(model, image, device, "fp32", tiles[0])
        for tile in tiles[1:]:
            same &= bool(np.array_equal(class_map(model, image, device, "fp32", tile), reference))
        for tile in tiles:
            low = class_map(model, image, device, mixed, tile)
            agree += int((low == reference).sum())
            total += reference.size
    return {"fp32 identical": same, "agreement": agree / max(total, 1)}


def f1_delta(model: Path, device: str, mixed: str, count: int, crop: int | None = None) -> tuple[float, float]:
    """Average F1 of the model on `count` BBBC039 val images (or their top-left `crop`
    pixels) in fp32 and in mixed precision."""
    import tifffile

    from biounet.evaluate.metrics import instance_scores
    from biounet.label.instances import instances_from_classes
    from biounet.label.rules import model_rule
    from biounet.model.file import load_spec

    rule = model_rule(load_spec(model).postprocess)
    names = sorted((VAL / "images").glob("*.tif"))[:count]
    scores = {"fp32": [], mixed: []}
    for path in names:
        image = tifffile.imread(path).astype(np.float32)[:crop, :crop]
        truth = tifffile.imread(VAL / "labels" / path.name)[:crop, :crop]
        for precision in scores:
            labels = instances_from_classes(class_map(model, image, device, precision, None), rule)
            scores[precision].append(instance_scores(truth, labels).average_f1)
    return float(np.mean(scores["fp32"])), float(np.mean(scores[mixed]))


def train_rate(width: int, device: str, precision: str, tile: int, batch: int, steps: int) -> float:
    """Training iterations/s of a width-`width` U-Net on random tiles (the paper's loss:
    weighted cross-entropy), with autocast and a gradient scaler as training uses them."""
    from biounet.model.geometry import Geometry
    from biounet.model.unet import UNet

    torch.manual_seed(0)
    net = UNet(width=width).to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    out = Geometry().output_size(tile)
    x = torch.randn(batch, 1, tile, tile, device=device).contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, 2, (batch, out, out), device=device)
    weight = torch.rand(batch, out, out, device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device.split(":")[0], enabled=precision == "fp16")

    def step() -> None:
        with torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype is not None):
            logits = net(x)
        loss = (torch.nn.functional.cross_entropy(logits.float(), target, reduction="none") * weight).mean()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return steps / repeated(step, steps, device)


def measure(ctx: Context) -> Section:
    from biounet.model.file import default_model_path
    from biounet.plan.gpu import choose_precision
    from biounet.plan.run import make_run

    device = device_here()
    capability = torch.cuda.get_device_capability(0) if device == "cuda" else None
    mixed = choose_precision("auto", "cuda", capability) if device == "cuda" else "bf16"
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU (no CUDA GPU here)"
    size = ctx.sizes["gpu_slide"]
    slide = ctx.slide(size)
    models = {"shipped width 16": Path(ctx.model) if ctx.model else default_model_path(),
              "random width 64": random_unet(ctx.workdir / "unet64.pt", 64)}
    calls = 2 if ctx.smoke else 10
    section = Section(f"GPU worker ({name})", "python -m benchmarks --only gpu")
    section.lines.append(f"Device: {name}; mixed precision here: {mixed}. Slide {size} x {size} uint16, "
                         f"`segment` defaults. MP/s are output pixels per second; medians of {ctx.repeats} runs.")
    section.lines.append("")
    rows = []
    for label, model in models.items():
        plan = make_run(slide, ctx.workdir / "gpu-plan.ome.zarr", model=model, device=device)
        tile = ctx.sizes["gpu_tile"] or plan.tile
        speeds = {p: Stats([bare_rate(model, device, p, tile, plan.batch, calls) for _ in range(ctx.repeats)])
                  for p in ("fp32", mixed)}
        seg = [run_segment(slide, ctx.output("gpu.ome.zarr"), model, device) for _ in range(ctx.repeats)]
        seg_rate = Stats([size * size / MP / s for s, _ in seg])
        busy = [b for _, b in seg if b is not None]
        ratio = seg_rate.median / speeds[plan.precision if plan.precision in speeds else mixed].median
        rows.append([label, f"{tile} / {plan.batch}", speeds["fp32"].show("{:.3g}"), speeds[mixed].show("{:.3g}"),
                     seg_rate.show("{:.3g}"), f"{ratio:.2f}", Stats(busy).show("{:.0%}", 1) if busy else "n/a"])
        if "64" in label:
            section.targets.append(Target(f"segment vs bare network, width 64 ({name})", f"{ratio:.2f}x", ">= 0.8x",
                                          ratio >= 0.8 if device == "cuda" else None))
    null = null_model(ctx.workdir / "null.pt")
    null_runs = [run_segment(slide, ctx.output("gpu.ome.zarr"), null, device) for _ in range(ctx.repeats)]
    rows.append(["null network (the CPU side's ceiling)", "-", "-", "-",
                 Stats([size * size / MP / s for s, _ in null_runs]).show("{:.1f}"), "-", "-"])
    section.table(["network", "tile / batch", "bare MP/s fp32", f"bare MP/s {mixed}", "segment MP/s",
                   "segment / bare", "GPU busy"], rows)

    images = [np.asarray(__import__("tifffile").imread(p), np.float32)
              for p in sorted((VAL / "images").glob("*.tif"))[: 1 if ctx.smoke else 4]]
    if ctx.smoke:
        images = [im[:256, :256] for im in images]
    tiles = ctx.sizes["gpu_invariance_tiles"]
    inv = invariance(models["shipped width 16"], device, mixed, tiles, images)
    count = 1 if ctx.smoke else 50
    fp32, low = f1_delta(models["shipped width 16"], device, mixed, count, 256 if ctx.smoke else None)
    section.lines.append(f"Tiling invariance (shipped model, tiles {', '.join(map(str, tiles))}, {len(images)} "
                         f"BBBC039 val images): fp32 class maps identical across tiles: "
                         f"**{'yes' if inv['fp32 identical'] else 'no'}**; {mixed} against fp32: "
                         f"{inv['agreement']:.4%} of pixels agree. Average F1 on "
                         f"{count} val images: fp32 {fp32:.4f}, {mixed} {low:.4f} "
                         f"(difference {low - fp32:+.4f}).")
    section.lines.append("")
    section.targets.append(Target(f"{mixed} vs fp32 class-map agreement", f"{inv['agreement']:.4%}", ">= 99.99%",
                                  inv["agreement"] >= 0.9999))
    section.targets.append(Target(f"{mixed} vs fp32 average F1, BBBC039 val", f"{low - fp32:+.4f}", "|delta| <= 0.002",
                                  abs(low - fp32) <= 0.002))
    # Smoke runs (on the CPU, where bf16 is very slow) train narrow networks on the smallest tile.
    train_tile, batch, steps, widths = (188, 1, 1, (4, 8)) if ctx.smoke else (ctx.sizes["train_tile"], 4, 10, (16, 64))
    section.table([f"training (tile {train_tile}, batch {batch})", "fp32 it/s", f"{mixed} it/s"], [
        [f"width {w}", Stats([train_rate(w, device, "fp32", train_tile, batch, steps)]).show(),
         Stats([train_rate(w, device, mixed, train_tile, batch, steps)]).show()] for w in widths
    ])
    return section
