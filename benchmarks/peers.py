"""3. Against MONAI: `sliding_window_inference` vs `biounet segment` on the same slide.

MONAI gets the best CPU set-up biounet has too (channels_last, tuned glibc malloc,
same threads) and a same-padded U-Net of the same width and depth, the slide held
in memory as one tensor (roi 512, overlap 0.25, Gaussian blending, the usual
settings). biounet runs `segment` with its defaults from the TIFF file to the
OME-Zarr, everything included. Alternated in every repeat.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tifffile
import torch

from benchmarks.common import MP, Context, Section, Stats, Target, ratio_stats, timed
from biounet.model.file import default_model_path, load_model
from biounet.model.unet import UNet
from biounet.pipeline.segment import segment
from biounet.predict.device import prepare
from biounet.runtime.devices import resolve_device

ROI, OVERLAP, SW_BATCH = 512, 0.25, 4


def monai_run(net: UNet, image: torch.Tensor, roi: int) -> torch.Tensor:
    from monai.inferers import sliding_window_inference

    def predictor(x: torch.Tensor) -> torch.Tensor:
        return net.predict(x.contiguous(memory_format=torch.channels_last))

    with torch.inference_mode():
        return sliding_window_inference(image, (roi, roi), SW_BATCH, predictor, overlap=OVERLAP, mode="gaussian")


def measure(ctx: Context) -> Section:
    import monai

    size = ctx.sizes["pipeline"]
    slide = ctx.slide(size)
    roi = min(ROI, size // 2)
    _, spec = load_model(ctx.model or default_model_path())
    same = dataclasses.replace(spec.unet, padding="same")
    net = prepare(UNet(same), resolve_device("cpu"))
    raw = tifffile.imread(slide).astype(np.float32)
    lo, hi = np.percentile(raw, (1.0, 99.8))
    image = torch.from_numpy(((raw - lo) / (hi - lo)).astype(np.float32))[None, None]
    monai_run(net, image[..., : 2 * roi, : 2 * roi], roi)  # warm-up
    ctx.warm_up()
    ours, theirs = [], []
    for r in range(ctx.repeats):
        out = ctx.output(f"peers-{r}.ome.zarr")
        ours.append(timed(lambda: segment(slide, out, model=ctx.model, progress=False)))
        theirs.append(timed(lambda: monai_run(net, image, roi)))
    speedup = ratio_stats(theirs, ours)
    mp = size * size / MP
    section = Section("Against MONAI sliding-window inference", "python -m benchmarks --only peers")
    section.lines.append(f"{size} x {size} slide; MONAI {monai.__version__}, roi {roi}, overlap {OVERLAP}, "
                         f"Gaussian blending, sw_batch_size {SW_BATCH}, same-padded width-{same.width} U-Net, "
                         "channels_last + tuned malloc, input already in memory and normalised. "
                         "biounet: `segment` defaults, TIFF in, OME-Zarr (classes, instances, pyramids, table) out.")
    section.lines.append("")
    section.table(["", "seconds", "MP/s"], [
        ["biounet segment", Stats(ours).show(), Stats([mp / s for s in ours]).show()],
        ["MONAI sliding_window_inference", Stats(theirs).show(), Stats([mp / s for s in theirs]).show()],
        ["speed-up biounet / MONAI", speedup.show("{:.2f}"), ""],
    ])
    section.targets.append(Target("biounet vs MONAI, MP/s ratio", speedup.show("{:.2f}"), ">= 1.5",
                                  speedup.median >= 1.5))
    return section
