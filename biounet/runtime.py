"""The process biounet runs in: memory allocator and a description of the machine.

On the CPU, torch allocates and frees tens of megabytes per layer. glibc's
malloc hands such blocks back to the kernel every time, so each layer pays
for fresh page faults; jemalloc keeps them for reuse, which brings the U-Net's
convolutions to the CPU's matrix-multiply speed (docs/benchmarks.md). The
`biounet` command therefore restarts itself once with jemalloc preloaded when
the machine has the library (Debian/Ubuntu: libjemalloc2, installed by
`make install` where it can be). BIOUNET_JEMALLOC=0 turns this off.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

JEMALLOC_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
    "/usr/local/lib/libjemalloc.so.2",
)
_REEXEC_FLAG = "BIOUNET_REEXEC"


def jemalloc_path() -> str | None:
    """The jemalloc shared library of this machine (or of the active conda environment), if any."""
    prefix = os.environ.get("CONDA_PREFIX")
    candidates = ((str(Path(prefix) / "lib" / "libjemalloc.so.2"),) if prefix else ()) + JEMALLOC_CANDIDATES
    return next((c for c in candidates if os.path.exists(c)), None)


def allocator() -> str:
    """"jemalloc" if it is loaded into this process, else "glibc"."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    return "jemalloc" if "jemalloc" in maps else "glibc"


def use_jemalloc(argv: list[str], module: str = "biounet") -> None:
    """Replace this process by `python -m <module> argv` with jemalloc preloaded, when possible.

    Does nothing if jemalloc is already loaded, missing, disabled with
    BIOUNET_JEMALLOC=0, or if this process is such a restart already.
    """
    if os.environ.get("BIOUNET_JEMALLOC", "1") == "0" or os.environ.get(_REEXEC_FLAG) or sys.platform != "linux":
        return
    path = jemalloc_path()
    if path is None or allocator() == "jemalloc":
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(p for p in (path, env.get("LD_PRELOAD", "")) if p)
    env[_REEXEC_FLAG] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict:
    """What biounet runs on here: CPU, cores usable, torch, device, allocator."""
    import torch

    from biounet import __version__
    from biounet.predict.device import cpu_threads, resolve_device

    device = resolve_device("auto")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "biounet": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "cpu": cpu_model(), "cores": cpu_threads(), "device": str(device) + (f" ({gpu})" if gpu else ""),
        "allocator": allocator(), "jemalloc": jemalloc_path() or "not found (install libjemalloc2)",
    }
