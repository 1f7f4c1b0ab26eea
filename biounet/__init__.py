"""biounet: U-Net segmentation of microscopy slides too big for memory.

The Python API is `from biounet import segment, open_image`. Both are loaded
on first use: importing `biounet` (and so starting the `biounet` command for
`--help`) must not import torch, zarr, scipy or dask, which take seconds.
"""

from __future__ import annotations

import sys
import types

from biounet.version import __version__  # noqa: E402

# name -> (module, attribute), imported on first access
_LAZY = {"segment": ("biounet.segment", "segment"), "open_image": ("biounet.read.image", "open_image")}

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


class _Package(types.ModuleType):
    """`biounet.segment` stays the function, as it was with eager imports.

    Importing the submodule `biounet.segment` makes Python set it as the
    package's attribute `segment`; that would hide the function from a later
    `from biounet import segment`. The submodule stays in sys.modules.
    """

    def __setattr__(self, name: str, value) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
