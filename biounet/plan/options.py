"""The choices a run offers that need no model or library to check (the CLI lists them
without importing torch): arithmetic precisions, test-time augmentations and tissue masks."""

from __future__ import annotations

import os

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""--precision: auto (bf16 on GPUs of compute capability 8.0+, fp16 on older ones, fp32 on the CPU) or one."""
TTA_MODES = ("none", "flips", "d4")
"""--tta: the network once, over 4 flips, or over the 8 symmetries of the square (`biounet.predict.tta`)."""


def check_tta(mode: str) -> str:
    """`mode` if it names a test-time augmentation, else ValueError saying which exist."""
    if mode not in TTA_MODES:
        raise ValueError(f"--tta {mode!r}: use {', '.join(TTA_MODES)}")
    return mode


TISSUE_MODES = ("auto", "none")
"""--tissue: detect tissue (`biounet.plan.tissue`), or predict every block; else a mask image's path."""


def check_tissue(option: str | os.PathLike | None, rgb: bool) -> str:
    """`option` ("auto", "none" or a mask image's path; None: auto for an RGB scan, none
    otherwise) as a run takes it; ValueError saying what is wrong."""
    if option is None:
        return "auto" if rgb else "none"
    option = os.fspath(option)
    if option in TISSUE_MODES:
        return option
    if not os.path.exists(option):
        raise ValueError(f"--tissue {option!r}: no such file; use auto, none or a tissue mask image (nonzero = tissue)")
    return option
