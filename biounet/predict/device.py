"""Choosing the device and preparing a network to run fast on it."""

from __future__ import annotations

import torch

from biounet.model.unet import UNet
from biounet.plan.options import check_tta
from biounet.predict.tta import averaged
from biounet.runtime.devices import cpu_threads
from biounet.runtime.process import tune_malloc


def prepare(net: UNet, device: torch.device, threads: int | None = None, precision: str = "fp32",
            compile: bool = False, tta: str = "none") -> UNet:
    """Eval mode on `device` in channels_last memory (about 2x faster on the CPU, the
    layout tensor cores want on a GPU), run in `precision` ("fp32", "bf16" or "fp16":
    autocast, see `run`); on the CPU `threads` torch threads (default: every core this
    process may use) and glibc malloc tuned for large tensors (`tune_malloc`); on a GPU
    cuDNN picks its fastest convolutions for the tile size. `compile`: torch.compile
    (seconds of start-up, so not by default). `tta`: test-time augmentation, see
    `biounet.predict.tta` (`run` averages over it)."""
    net = net.eval().to(device)
    net.biounet_precision = precision
    net.biounet_tta = check_tta(tta)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        net = net.to(memory_format=torch.channels_last)
    if device.type == "cpu":
        tune_malloc()
        # A network of a few elementwise operations (the null network) runs on one thread:
        # with more, OpenMP synchronisation costs more than the work (2.5 against 40 ms per
        # 1212 px tile here while the other core is busy).
        torch.set_num_threads(1 if getattr(net, "cheap", False) else threads or cpu_threads())
        net = net.to(memory_format=torch.channels_last)
    if compile:  # the forward pass compiled; `predict` (softmax and all) calls it
        net.forward = torch.compile(net.forward)
    return net


AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def run(net: UNet, batch: torch.Tensor) -> torch.Tensor:
    """Inference on a batch (on any device): channels_last, autocast in the precision
    `prepare` set (none for fp32), averaged over its test-time augmentation;
    float32 probabilities (or regression output) out."""
    device = next(net.parameters()).device
    batch = batch.to(device, non_blocking=True)
    dtype = AUTOCAST.get(getattr(net, "biounet_precision", "fp32"))
    tta = getattr(net, "biounet_tta", "none")

    def predict(x: torch.Tensor) -> torch.Tensor:
        return net.predict(x.contiguous(memory_format=torch.channels_last))

    with torch.inference_mode():
        if dtype is None:
            return averaged(predict, batch, tta)
        with torch.autocast(device.type, dtype=dtype):
            return averaged(predict, batch, tta)
