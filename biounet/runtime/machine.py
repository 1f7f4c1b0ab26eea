"""What biounet runs on here (`biounet system`): CPU, cores, torch, device, allocator."""

from __future__ import annotations

import platform

from biounet import __version__
from biounet.runtime.devices import cpu_threads, resolve_device
from biounet.runtime.process import allocator, cpu_model, tune_malloc


def describe() -> dict:
    """What biounet runs on here: CPU, cores usable, torch, device, allocator."""
    import torch

    device = resolve_device("auto")
    if device.type == "cpu":
        tune_malloc()  # what every CPU run does
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "biounet": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "cpu": cpu_model(), "cores": cpu_threads(), "device": str(device) + (f" ({gpu})" if gpu else ""),
        "allocator": allocator(),
    }
