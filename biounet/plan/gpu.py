"""Choices for running on CUDA GPUs, as pure functions of what the devices report.

Every decision the GPU worker makes (which devices, which precision, how many
tiles per batch) is a function of numbers torch reports (device count,
compute capability, free memory), so it is tested on machines without a GPU
by passing those numbers in.
"""

from __future__ import annotations

from dataclasses import dataclass

from biounet.model.config import UNetConfig
from biounet.plan.memory import tile_bytes
from biounet.plan.options import PRECISIONS

GPU_RESERVE = 512 * 1024**2  # left free on a GPU for cuDNN workspaces and the CUDA context's growth
# Activations of a tile in mixed precision take about half of float32's (the estimate
# of `tile_bytes` is for float32).
HALF_FACTOR = 0.55


def assign_devices(devices: list[str], workers_per_device: int = 2) -> list[str]:
    """The device of each network thread: `workers_per_device` per GPU (so one block is
    prepared and copied while another runs), one for the CPU (torch uses every core)."""
    if devices == ["cpu"]:
        return ["cpu"]
    return [d for d in devices for _ in range(max(1, workers_per_device))]


def choose_precision(requested: str, device_type: str, capability: tuple[int, int] | None = None) -> str:
    """fp32, bf16 or fp16: "auto" takes bfloat16 on GPUs that compute it natively (compute
    capability 8.0 and newer: A100, H100, RTX 30xx on), float16 on older GPUs and float32
    on the CPU (where bfloat16 is many times slower here)."""
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}: use {', '.join(PRECISIONS)}")
    if device_type != "cuda":
        return "fp32" if requested == "auto" else requested
    if requested != "auto":
        return requested
    return "bf16" if capability is not None and capability >= (8, 0) else "fp16"


def choose_gpu_batch(config: UNetConfig, tile: int, free_bytes: int, memory_limit: int | None, tiles_per_block: int,
                     precision: str = "fp32", workers: int = 1) -> int:
    """Tiles per launch on a GPU with `free_bytes` free, shared by `workers` network threads,
    within `memory_limit` (if given): at least 1, at most a block's tiles."""
    per_tile = tile_bytes(config, tile) * (HALF_FACTOR if precision in ("bf16", "fp16") else 1.0)
    budget = max(0, free_bytes - GPU_RESERVE) // max(1, workers)
    if memory_limit:
        budget = min(budget, memory_limit)
    return int(max(1, min(tiles_per_block, budget // max(per_tile, 1))))


@dataclass(frozen=True)
class GpuInfo:
    """What torch says about one GPU."""

    name: str
    capability: tuple[int, int]
    free: int
    total: int


def gpu_info(device: str) -> GpuInfo:
    """The GPU's name, compute capability and free/total memory (needs CUDA)."""
    import torch

    index = torch.device(device).index or 0
    free, total = torch.cuda.mem_get_info(index)
    return GpuInfo(torch.cuda.get_device_name(index), torch.cuda.get_device_capability(index), free, total)
