"""biounet: U-Net segmentation of microscopy slides too big for memory."""

from biounet.version import __version__  # noqa: E402

from biounet.read.image import open_image  # noqa: E402
from biounet.segment import segment  # noqa: E402

__all__ = ["__version__", "open_image", "segment"]
