"""What a bioimage.io package needs to know of a biounet network's architecture.

The one place that depends on the architecture: its self-contained source file
(what bioimage.io consumers import to rebuild the network for the
`pytorch_state_dict` weights), the callable and its arguments, and the sizes it
accepts. Another architecture (an encoder U-Net, say) adds its branch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from biounet.model.geometry import geometry_of
from biounet.model.unet import UNetConfig


class ExportError(ValueError):
    """A model or an option `biounet export` cannot turn into a package."""


@dataclass(frozen=True)
class Architecture:
    """source: text of a Python file importing only torch; callable(**kwargs) builds the
    network (with the same state dict keys as biounet's). Valid input sizes are
    min + step k; the output is input + offset (offset <= 0: a valid network crops its
    own halo), of which `halo` more pixels per side are to be cropped (same padding)."""

    source: str
    file_name: str
    callable: str
    kwargs: dict
    min: int
    step: int
    offset: int
    halo: int


def architecture(config: UNetConfig) -> Architecture:
    """The architecture of a biounet network config, for a package."""
    arch = config.extra.get("arch", "unet")
    if getattr(config, "encoder", None) is not None:
        raise ExportError(f"a U-Net with a {config.encoder} encoder cannot be exported to bioimage.io by this "
                          "version: export an original U-Net (or run the encoder model with biounet itself)")
    if arch != "unet":
        raise ExportError(f"a network of architecture {arch!r} cannot be exported to bioimage.io")
    from biounet.model import unet_arch

    geometry = geometry_of(config)
    kwargs = {"in_channels": config.in_channels, "out_channels": config.out_channels, "depth": config.depth,
              "width": config.width, "padding": config.padding, "batch_norm": config.batch_norm,
              "dropout": config.dropout}
    if config.padding == "valid":  # the network crops its own margin: output = input - 2 margin
        offset, halo = -2 * geometry.margin, 0
    else:  # same padding: output = input, of which the margin is to be cropped
        offset, halo = 0, geometry.margin
    return Architecture(Path(unet_arch.__file__).read_text(), "unet_arch.py", "UNetArch", kwargs,
                        geometry.min_input, geometry.align, offset, halo)
