"""What a bioimage.io package needs to know of a biounet network's architecture.

The one place that depends on the architecture: its self-contained source file
(what bioimage.io consumers import to rebuild the network for the
`pytorch_state_dict` weights), the callable and its arguments, and the sizes it
accepts: the original U-Net (`unet_arch.py` as it is) and the encoder U-Net
(`encoders.py` and `encoder_arch.py` joined into one file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from biounet.model.config import UNetConfig
from biounet.model.geometry import geometry_of


class ExportError(ValueError):
    """A model or an option `biounet export` cannot turn into a package."""


@dataclass(frozen=True)
class Architecture:
    """source: text of a Python file importing only torch; callable(**kwargs) builds the
    network (with the same state dict keys as biounet's). Valid input sizes are
    min + step k; the output is input + offset (offset <= 0: a valid network crops its
    own halo), of which `halo` more pixels per side are to be cropped (same padding).
    `network` is biounet's class of `callable` (what the torchscript weights script)."""

    source: str
    file_name: str
    callable: str
    kwargs: dict
    min: int
    step: int
    offset: int
    halo: int
    network: type[nn.Module]


def architecture(config: UNetConfig) -> Architecture:
    """The architecture of a biounet network config, for a package."""
    arch = config.extra.get("arch", "unet")
    if arch != "unet":
        raise ExportError(f"a network of architecture {arch!r} cannot be exported to bioimage.io")
    geometry = geometry_of(config)
    if config.padding == "valid":  # the network crops its own margin: output = input - 2 margin
        offset, halo = -2 * geometry.margin, 0
    else:  # same padding: output = input, of which the margin is to be cropped
        offset, halo = 0, geometry.margin
    sizes = (geometry.min_input, geometry.align, offset, halo)
    if getattr(config, "encoder", None) is not None:
        from biounet.model.encoder_arch import EncoderUNetArch

        kwargs = {"encoder": config.encoder, "in_channels": config.in_channels,
                  "out_channels": config.out_channels, "width": config.width}
        return Architecture(encoder_source(), "encoder_unet_arch.py", "EncoderUNetArch", kwargs, *sizes,
                            EncoderUNetArch)
    from biounet.model import unet_arch

    kwargs = {"in_channels": config.in_channels, "out_channels": config.out_channels, "depth": config.depth,
              "width": config.width, "padding": config.padding, "batch_norm": config.batch_norm,
              "dropout": config.dropout}
    return Architecture(Path(unet_arch.__file__).read_text(), "unet_arch.py", "UNetArch", kwargs, *sizes,
                        unet_arch.UNetArch)


def encoder_source() -> str:
    """One self-contained file (imports only torch and math) defining `EncoderUNetArch`:
    `encoders.py`, then `encoder_arch.py` without its `from __future__` line (allowed
    only at the top of a file) and its import of biounet's `encoders`."""
    from biounet.model import encoder_arch, encoders

    arch_lines = [line for line in Path(encoder_arch.__file__).read_text().splitlines(keepends=True)
                  if line.strip() != "from __future__ import annotations"
                  and not line.startswith("from biounet.")]
    return Path(encoders.__file__).read_text() + "\n\n" + "".join(arch_lines)
