"""How much memory a tile needs, and the largest tile that fits a budget."""

from __future__ import annotations

from biounet.model.config import UNetConfig
from biounet.model.geometry import geometry_of

# Live float32 tensors at full resolution during inference, in units of
# width x tile^2: the kept skip (1), the up-convolution output (1), the
# concatenation (2) and the first decoder convolution (1), plus slack for the
# allocator. Checked against measured peak RSS in benchmarks/.
ACTIVATION_FACTOR = 6.0


# An encoder U-Net: the floats alive at the peak (`activation_floats`) times this slack.
ENCODER_SLACK = 1.5


def tile_bytes(config: UNetConfig, tile_in: int) -> int:
    """Estimated peak activation memory of one tile in the forward pass."""
    if config.encoder is not None:
        from biounet.model.encoder_unet import activation_floats

        return int(ENCODER_SLACK * activation_floats(config) * tile_in * tile_in * 4)
    return int(ACTIVATION_FACTOR * config.width * tile_in * tile_in * 4 + 4 * config.in_channels * tile_in**2)


def choose_tile(config: UNetConfig, block: int, memory_limit: int) -> int:
    """The tile for blocks of `block` px a side within `memory_limit`: as few tiles per block
    as the largest tile that fits allows, each no larger than they need to be (a 2048 px
    block in tiles of at most 1644 px takes 2 x 2 tiles of 1212, not of 1644: 45% fewer
    pixels through the network)."""
    geometry = geometry_of(config)
    best = geometry.input_size(block)
    while best > geometry.min_input and tile_bytes(config, best) > memory_limit:
        best -= geometry.align
    per_side = -(-block // geometry.output_size(best))
    return min(best, geometry.input_size(-(-block // per_side)))


def choose_batch(config: UNetConfig, tile_in: int, memory_limit: int, tiles_per_block: int) -> int:
    """How many tiles to run at once within `memory_limit` (at least 1)."""
    return max(1, min(tiles_per_block, memory_limit // max(tile_bytes(config, tile_in), 1)))
