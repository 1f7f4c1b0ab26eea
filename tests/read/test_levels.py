"""The pyramid level for a wanted pixel size, and levels' downsample factors (pure)."""

import pytest

from biounet.read.levels import choose_level, downsamples

# An Aperio 40x slide: 0.2520 um/px, levels 4x apart (46000 x 32914 -> 11500 x 8228 -> 2875 x 2057).
SVS = [0.252, 0.252 * 32914 / 8228, 0.252 * 32914 / 2057]


def test_downsamples_are_the_real_factors():
    assert downsamples([(32914, 46000), (8228, 11500), (2057, 2875)]) == [
        (1.0, 1.0), (32914 / 8228, 4.0), (32914 / 2057, 16.0)]
    assert downsamples([(32914, 46000), (8228, 11500)])[1][0] == pytest.approx(4.00024, abs=1e-5)


@pytest.mark.parametrize("wanted, level, scale", [
    (0.252, 0, 1.0),            # level 0 as it is
    (0.5, 0, 0.504),            # a 20x model on a 40x slide: level 0 shrunk by about half
    (1.0, 1, 1.00812),          # level 1 is 0.8 % coarser than wanted: within tolerance, scaled up that little
    (1.2, 1, 0.84010),          # level 1 shrunk
    (4.0, 2, 1.00807),          # level 2 (4.0323 um/px) is 0.8 % too coarse: taken, enlarged that little
    (3.8, 1, 0.26529),          # level 2 is 6 % too coarse: level 1, shrunk to about a quarter
    (0.1, 0, 2.52),             # finer than the scan: level 0, to be enlarged
])
def test_choose_level_for_an_svs(wanted, level, scale):
    got = choose_level(SVS, wanted)
    assert got[0] == level and got[1] == pytest.approx(scale, rel=1e-4)


def test_tolerance_is_the_boundary():
    sizes = [1.0, 2.0, 4.0]
    assert choose_level(sizes, 2.0 / 1.05)[0] == 1           # exactly 5 % coarser: taken
    assert choose_level(sizes, 2.0 / 1.0501)[0] == 0         # just over: not
    assert choose_level(sizes, 2.0 / 1.05, tolerance=0.0)[0] == 0
    assert choose_level(sizes, 1.9, tolerance=0.1) == (1, pytest.approx(2.0 / 1.9))


def test_order_of_levels_does_not_matter():
    assert choose_level([4.0, 1.0, 2.0], 2.5) == (2, pytest.approx(0.8))
    assert choose_level([4.0, 1.0, 2.0], 0.5) == (1, pytest.approx(2.0))


@pytest.mark.parametrize("sizes, wanted", [([], 1.0), ([1.0, 0.0], 1.0), ([1.0], -1.0), ([1.0], float("nan")),
                                           ([float("inf")], 1.0)])
def test_bad_sizes_are_refused(sizes, wanted):
    with pytest.raises(ValueError):
        choose_level(sizes, wanted)
