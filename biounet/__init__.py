"""biounet: U-Net segmentation of microscopy slides too big for memory.

The Python API is `from biounet import segment, open_image`. Both are loaded
on first use: importing `biounet` (and so starting the `biounet` command for
`--help`) must not import torch, zarr, scipy or dask, which take seconds.
"""

from __future__ import annotations

__version__ = "0.1.0"

# name -> (module, attribute), imported on first access
_LAZY = {"segment": ("biounet.pipeline.segment", "segment"), "open_image": ("biounet.read.image", "open_image")}

__all__ = ["__version__", "open_image", "segment"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'biounet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
