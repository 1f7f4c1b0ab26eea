"""Planning output blocks and tiles (pure geometry)."""

from biounet.plan.blocks import Block, plan_blocks, tile_starts
from biounet.plan.mirror import mirror_index, mirror_window

__all__ = ["Block", "plan_blocks", "tile_starts", "mirror_index", "mirror_window"]
