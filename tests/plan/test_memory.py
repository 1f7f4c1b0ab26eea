"""The tile a run chooses: as few tiles per block as memory allows, none larger than needed."""

from __future__ import annotations

from biounet.model.config import UNetConfig
from biounet.model.geometry import geometry_of
from biounet.plan.blocks import Block, tile_window
from biounet.plan.memory import choose_tile, tile_bytes
from biounet.plan.scale import model_block

CONFIG = UNetConfig(in_channels=3, out_channels=3, depth=5, width=16)  # he-nuclei's network


def test_a_block_that_needs_two_tiles_a_side_gets_the_smallest_two_that_cover_it():
    geometry = geometry_of(CONFIG)
    limit = tile_bytes(CONFIG, 1644)  # the largest tile that fits: 1644 (1460 out)
    assert choose_tile(CONFIG, 1024, limit) == geometry.input_size(1024) == 1212  # one tile: unchanged
    tile = choose_tile(CONFIG, 2080, limit)
    assert 2 * geometry.output_size(tile) >= 2080 and 2 * geometry.output_size(tile - geometry.align) < 2080
    assert tile < 1644 and tile_bytes(CONFIG, tile) <= limit


def test_every_block_of_a_20x_slide_at_scale_2_takes_two_by_two_tiles():
    """A 10240 px slide in blocks of 1024 at 2 model pixels per slide pixel (20x slide, 40x model):
    the model-space range of every block, whatever its offset, is covered by 2 x 2 tiles."""
    geometry = geometry_of(CONFIG)
    first = model_block(Block(0, (), 0, 1024, 0, 1024), (2.0, 2.0), geometry.align)
    covered = -(-max(first.shape) // geometry.align) * geometry.align
    tile = choose_tile(CONFIG, covered, tile_bytes(CONFIG, 1644))
    for i, y0 in enumerate(range(0, 10240, 1024)):
        inner = model_block(Block(i, (), y0, min(y0 + 1024, 10240), y0, min(y0 + 1024, 10240)), (2.0, 2.0),
                            geometry.align)
        *_, ys, xs = tile_window(inner, tile, geometry)
        assert len(ys) == len(xs) == 2, (y0, inner, tile)
