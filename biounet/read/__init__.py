"""Reading slides lazily."""

from biounet.read.image import Image, ImageReadError, describe, open_image

__all__ = ["Image", "ImageReadError", "describe", "open_image"]
