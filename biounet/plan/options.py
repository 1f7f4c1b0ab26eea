"""The choices a run offers that need no model or library to check (the CLI lists them
without importing torch): arithmetic precisions and test-time augmentations."""

from __future__ import annotations

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""--precision: auto (bf16 on GPUs of compute capability 8.0+, fp16 on older ones, fp32 on the CPU) or one."""
TTA_MODES = ("none", "flips", "d4")
"""--tta: the network once, over 4 flips, or over the 8 symmetries of the square (`biounet.predict.tta`)."""


def check_tta(mode: str) -> str:
    """`mode` if it names a test-time augmentation, else ValueError saying which exist."""
    if mode not in TTA_MODES:
        raise ValueError(f"--tta {mode!r}: use {', '.join(TTA_MODES)}")
    return mode
