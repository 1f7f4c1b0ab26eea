"""The process biounet runs in: memory allocator settings and what the machine is.

On the CPU, torch allocates and frees megabytes to tens of megabytes per layer.
With glibc's default settings, freed blocks above a small threshold go back to
the kernel at once, so every layer pays for fresh page faults. `tune_malloc`
keeps blocks up to 32 MiB in the heap for reuse, stops trimming the heap top
and grows it in large steps: the U-Net's convolutions then run at 94-96% of
the CPU's matrix-multiply speed here, faster than with jemalloc preloaded
(docs/benchmarks.md). Memory kept for reuse is kept per malloc arena, and glibc
gives each thread its own (up to 8 per core): all threads share one arena
instead, so a run holds one heap's worth of freed blocks, not one per reader,
writer and labelling thread. It is applied by `prepare` (prediction) and training on
the CPU, in-process, so the Python API gets it as the command does.
BIOUNET_TUNE_MALLOC=0 turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from pathlib import Path

# mallopt parameters (glibc malloc.h) and the values biounet sets
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -2, -3, -8
MALLOC_SETTINGS = (
    # blocks up to 32 MiB are reused from the heap (every glibc accepts it; glibc >= 2.35 also takes more,
    # which measured 2% faster end to end but a 25% higher peak RSS)
    (M_MMAP_THRESHOLD, 32 * 1024**2),
    (M_TRIM_THRESHOLD, 2**31 - 1),  # freed memory at the heap top stays mapped
    (M_TOP_PAD, 256 * 1024**2),  # grow the heap in steps of 256 MiB of address space (touched pages only count)
    # one arena for all threads (threads that already have one keep it): peak RSS of the 4096^2 / 32768^2
    # memory benchmark 470 / 517 MiB against 628 / 748 with an arena per thread, and segment on 4096^2 with
    # the shipped model 29.2 s against 31.2 (medians of 3, alternated processes)
    (M_ARENA_MAX, 1),
)
_tuned = False


def tune_malloc() -> bool:
    """Set glibc malloc for torch's large, short-lived CPU tensors (see the module doc).

    Process-wide and idempotent; returns whether the settings are in force. Does
    nothing where malloc is not glibc's (another allocator preloaded, musl, macOS)
    or with BIOUNET_TUNE_MALLOC=0.
    """
    global _tuned
    if _tuned:
        return True
    if os.environ.get("BIOUNET_TUNE_MALLOC", "1") == "0" or allocator() != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _tuned = all(mallopt(param, value) == 1 for param, value in MALLOC_SETTINGS)
    return _tuned


def release_free_memory() -> None:
    """Give freed heap pages back to the kernel (glibc's malloc_trim): with trimming off for
    the network's speed, the blocks of many sizes a run allocates and frees on several
    threads leave free holes in the heap that never shrink on their own."""
    if not _tuned:
        return
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def allocator() -> str:
    """The malloc this process uses: "jemalloc", "tcmalloc" or "mimalloc" if preloaded, "glibc" on
    Linux otherwise ("glibc (tuned)" once `tune_malloc` applied), else "system"."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    for name in ("jemalloc", "tcmalloc", "mimalloc"):
        if name in maps:
            return name
    if platform.libc_ver()[0] != "glibc":
        return "system"
    return "glibc (tuned)" if _tuned else "glibc"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
