"""Which devices and cores a run may use: `--device` names resolved against what torch sees,
and the cores this process is allowed (affinity, OMP_NUM_THREADS)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class DeviceListError(ValueError):
    """A --device list that names GPUs this machine does not have."""


def parse_devices(name: str, cuda_count: int) -> list[str]:
    """The devices a run uses: "auto" (every visible GPU, else the CPU), "cpu", "cuda"
    (every visible GPU), "cuda:i" (one) or "cuda:i,j,..." (some)."""
    name = name.strip()
    if name == "auto":
        return [f"cuda:{i}" for i in range(cuda_count)] or ["cpu"]
    if name == "cpu":
        return ["cpu"]
    if name == "cuda":
        if not cuda_count:
            raise DeviceListError("device 'cuda' asked for, but this machine has no CUDA GPU; use --device cpu")
        return [f"cuda:{i}" for i in range(cuda_count)]
    if name.startswith("cuda:"):
        picks = []
        for part in name[5:].split(","):
            if not part.strip().isdigit():
                raise DeviceListError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or cuda:N,M")
            i = int(part)
            if i >= cuda_count:
                raise DeviceListError(f"cuda:{i} does not exist: {cuda_count} CUDA device(s) here")
            if f"cuda:{i}" not in picks:
                picks.append(f"cuda:{i}")
        return picks
    raise DeviceListError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or cuda:N,M")


class DeviceError(ValueError):
    """A device that does not exist here."""


def resolve_devices(name: str = "auto") -> list[torch.device]:
    """Every device a run uses: `auto` (all visible CUDA GPUs, else the CPU), `cpu`,
    `cuda` (all visible GPUs), `cuda:i` or `cuda:i,j,...`."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    try:
        return [torch.device(d) for d in parse_devices(name, count)]
    except DeviceListError as err:
        raise DeviceError(str(err)) from None


def resolve_device(name: str = "auto") -> torch.device:
    """The (first) device of `--device`: see `resolve_devices`."""
    return resolve_devices(name)[0]


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


@contextmanager
def torch_threads_kept() -> Iterator[None]:
    """torch's CPU thread count as it was, after the block: its network threads set their own
    (`biounet.predict.device.prepare`), which is process-wide, and a caller's later torch work
    (a notebook, napari, a benchmark beside it) must not be left on one thread."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
