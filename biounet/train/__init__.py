"""Training building blocks: targets, the U-Net weight map and augmentation.

All functions are pure: numpy in, numpy out (``targets``, ``weights``), or
torch in, torch out (``augment``), so they are testable on their own and
usable from any training loop.
"""
