"""Choosing the device and preparing a network to run fast on it."""

from __future__ import annotations

import os

import torch

from biounet.model.unet import UNet
from biounet.runtime import tune_malloc


class DeviceError(ValueError):
    """A device that does not exist here."""


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` (CUDA if there is one, else CPU), `cpu`, `cuda` or `cuda:i`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} asked for, but this machine has no CUDA GPU; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"{name} does not exist: {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise DeviceError(f"unsupported device {name!r}: use auto, cpu, cuda or cuda:N")
    return device


def cpu_threads() -> int:
    """Cores this process may use (respects affinity masks set by schedulers like SLURM),
    at most OMP_NUM_THREADS if that is set (on a shared machine, torch threads that
    wait for busy cores make a run many times slower)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    try:
        limit = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        limit = 0
    return max(1, min(cores, limit)) if limit > 0 else cores


def prepare(net: UNet, device: torch.device, threads: int | None = None) -> UNet:
    """Eval mode on `device`; on the CPU channels_last memory (about 2x faster there),
    `threads` torch threads (default: every core this process may use) and glibc
    malloc tuned for large tensors (`tune_malloc`)."""
    net = net.eval().to(device)
    if device.type == "cpu":
        tune_malloc()
        # A network of a few elementwise operations (the null network) runs on one thread:
        # with more, OpenMP synchronisation costs more than the work (2.5 against 40 ms per
        # 1212 px tile here while the other core is busy).
        torch.set_num_threads(1 if getattr(net, "cheap", False) else threads or cpu_threads())
        net = net.to(memory_format=torch.channels_last)
    return net


def run(net: UNet, batch: torch.Tensor) -> torch.Tensor:
    """Inference on a batch: channels_last on the CPU, mixed precision on CUDA."""
    device = next(net.parameters()).device
    if device.type == "cpu":
        batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return net.predict(batch)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
        return net.predict(batch.to(device, non_blocking=True))
