"""The U-Net, its tile geometry and its file format."""

from biounet.model.geometry import Geometry, TileSizeError
from biounet.model.unet import UNet, UNetConfig, count_parameters

__all__ = ["Geometry", "TileSizeError", "UNet", "UNetConfig", "count_parameters"]
