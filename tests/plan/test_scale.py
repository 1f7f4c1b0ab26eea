"""Scale (pure): the factor and why, the pyramid level read, the model-space block, the
default block size, and post-processing in slide pixels."""

import pytest

from biounet.label.rules import InstanceRule, scaled_rule
from biounet.plan.blocks import Block
from biounet.plan.resample import taps
from biounet.plan.scale import (RESCALE_TOLERANCE, ScaleError, check_options, model_block, plan_scale,
                                scale_factor, scaled_block_size)


def test_the_factor_is_the_slide_pixel_over_the_model_pixel():
    assert scale_factor(0.5, 0.25) == (2.0, "slide 0.50 um/px from the file, model 0.25 um/px")
    factor, why = scale_factor(0.325, 0.25, slide_from="--pixel-size")
    assert factor == pytest.approx(1.3) and why == "slide 0.33 um/px from --pixel-size, model 0.25 um/px"
    assert scale_factor(0.25, 0.5)[0] == 0.5


def test_within_the_tolerance_nothing_is_rescaled():
    assert RESCALE_TOLERANCE == 0.05
    assert scale_factor(0.26, 0.25) == (1.0, "none: slide 0.26 um/px from the file, model 0.25 um/px, within 5%")
    assert scale_factor(0.25 * 1.049, 0.25)[0] == 1.0
    assert scale_factor(0.25 * 1.06, 0.25)[0] == pytest.approx(1.06)
    assert scale_factor(0.25 * 0.94, 0.25)[0] == pytest.approx(0.94)


def test_unknown_sizes_and_no_rescale_say_why():
    assert scale_factor(0.5, None) == (1.0, "none: the model records no pixel size")
    assert scale_factor(None, 0.25) == (1.0, "none: the slide has no pixel size; give --pixel-size or --diameter")
    assert scale_factor(0.5, 0.25, rescale=False) == (1.0, "none: --no-rescale")


def test_a_diameter_sets_the_factor_from_the_models_objects():
    assert scale_factor(None, 0.25, model_diameter=24.0, diameter=12.0) == (
        2.0, "objects 12 px from --diameter, model 24 px")
    assert scale_factor(0.5, None, model_diameter=24.0, diameter=30.0)[0] == pytest.approx(0.8)
    with pytest.raises(ScaleError, match="--diameter needs a model that records its objects' diameter"):
        scale_factor(None, 0.25, diameter=12.0)


@pytest.mark.parametrize("pixel_size, diameter, rescale, message", [
    (0.0, None, True, "--pixel-size 0: give the slide's pixel size in um/px, a positive number"),
    (-0.5, None, True, "--pixel-size -0.5: give"),
    (float("nan"), None, True, "--pixel-size nan: give"),
    (None, 0.0, True, "--diameter 0: give the objects' typical diameter in pixels of the slide, a positive"),
    (0.5, 12.0, True, "--pixel-size and --diameter both set the scale"),
    (None, 12.0, False, "--diameter asks for rescaling and --no-rescale turns it off"),
])
def test_options_that_cannot_work_are_refused(pixel_size, diameter, rescale, message):
    with pytest.raises(ScaleError, match=message):
        check_options(pixel_size, diameter, rescale)


def test_options_that_fit_pass():
    for options in ((None, None, True), (0.25, None, True), (0.25, None, False), (None, 12.0, True)):
        check_options(*options)


PYRAMID = [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)]  # e.g. 0.25, 0.5, 1.0 um/px


@pytest.mark.parametrize("factor, level, read, steps", [
    (2.0, 0, 2.0, 2.0),      # a 0.5 um/px slide, a 0.25 model: enlarge level 0
    (0.5, 1, 1.0, 0.5),      # a 0.25 slide, a 0.5 model: level 1 as it is
    (0.3, 1, 0.6, 0.3),      # level 1 shrunk to 0.6
    (0.25, 2, 1.0, 0.25),    # level 2 as it is
    (0.26, 2, 1.0, 0.25),    # level 2 is 4 % too coarse: within the tolerance, as it is
    (0.2, 2, 0.8, 0.2),      # coarser than the pyramid: its last level, shrunk
])
def test_the_input_comes_from_the_coarsest_level_not_coarser_than_the_model(factor, level, read, steps):
    scale = plan_scale(factor, "why", 0, PYRAMID)
    assert scale.level == level and scale.read_steps == pytest.approx((read, read))
    assert scale.steps == pytest.approx((steps, steps)) and scale.rescaled


def test_levels_are_relative_to_the_level_segmented():
    scale = plan_scale(0.5, "why", 1, PYRAMID)  # segment level 1 (0.5 um/px) for a 1.0 um/px model
    assert scale.level == 2 and scale.read_steps == (1.0, 1.0) and scale.steps == (0.5, 0.5)
    assert scale.text == "scale 0.50 (why; input from level 2)"
    svs = [(1.0, 1.0), (32914 / 8228, 4.0)]  # real factors differ per axis: the steps follow them
    scale = plan_scale(0.25, "why", 0, svs)
    assert scale.level == 1 and scale.steps == pytest.approx((8228 / 32914, 0.25))


def test_factor_one_is_no_rescaling():
    scale = plan_scale(1.0, "none: the model records no pixel size", 0, PYRAMID)
    assert not scale.rescaled and scale.level == 0 and scale.text == "scale 1 (none: the model records no pixel size)"
    assert plan_scale(2.0, "slide 0.50 um/px from the file, model 0.25 um/px", 0, PYRAMID).text == (
        "scale 2.00 (slide 0.50 um/px from the file, model 0.25 um/px)")


@pytest.mark.parametrize("steps", [2.0, 1.3, 0.5, 1 / 1.3])
def test_the_model_block_starts_on_the_tile_grid_and_holds_every_tap(steps):
    for block in (Block(0, (), 0, 128, 0, 200), Block(3, (1,), 256, 384, 1024, 1037)):
        inner = model_block(block, (steps, steps), 16)
        ky, kx = taps(block.y0, block.y1, steps), taps(block.x0, block.x1, steps)
        assert inner.y0 % 16 == 0 and inner.x0 % 16 == 0 and inner.plane == block.plane
        assert inner.y0 <= ky.lo and inner.y1 == ky.hi and inner.y0 > ky.lo - 16
        assert inner.x0 <= kx.lo and inner.x1 == kx.hi


def test_large_factors_take_smaller_default_blocks():
    assert scaled_block_size(1024, 2.0, 16) == 1024
    assert scaled_block_size(4096, 2.0, 16) == 2048
    assert scaled_block_size(1024, 8.0, 16) == 512
    assert scaled_block_size(1024, 3.0, 16) == 1024
    assert scaled_block_size(1024, 5.0, 16) == 816
    assert scaled_block_size(1024, 1000.0, 16) == 16


def test_postprocessing_sizes_become_slide_pixels():
    rule = InstanceRule(seed_class=1, expand=4, min_size=10)
    assert scaled_rule(rule, 1.0) is rule
    assert scaled_rule(rule, 2.0) == InstanceRule(1, 2, 2)      # half the reach, a quarter of the area
    assert scaled_rule(rule, 0.5) == InstanceRule(1, 8, 40)     # a finer slide: twice the reach
    assert scaled_rule(rule, 1.3) == InstanceRule(1, 3, 6)
    assert scaled_rule(InstanceRule(1, 0, 10), 10.0) == InstanceRule(1, 0, 1)  # at least one pixel
