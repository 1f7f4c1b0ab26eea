"""Resampling between pixel grids (pure): known patterns up and down, and position purity."""

import numpy as np
import pytest
import torch

from biounet.plan.mirror import mirror_window
from biounet.plan.resample import resample_axis, taps


def resample_1d(values: np.ndarray, start: int, stop: int, ratio: float) -> np.ndarray:
    kernel = taps(start, stop, ratio)
    source = mirror_window(lambda ys, xs: values[None, xs], (1, len(values)), 0, 1, kernel.lo, kernel.hi)[0]
    return resample_axis(source, kernel, 0, kernel.lo)


def test_enlarging_is_bilinear_between_pixel_centres():
    ramp = np.arange(50, dtype=np.float32)
    out = resample_1d(ramp, 2, 96, 0.5)  # twice the pixels; away from the edges
    centres = (np.arange(2, 96) + 0.5) * 0.5 - 0.5  # target centres in source pixels
    assert np.abs(out - centres).max() < 1e-5  # a ramp is reproduced exactly: its value is the position


@pytest.mark.parametrize("ratio", [2.0, 3.0, 1.3])
def test_shrinking_keeps_a_ramp_and_a_constant(ratio):
    ramp = np.arange(200, dtype=np.float32)
    n = int(190 / ratio)
    out = resample_1d(ramp, 2, n, ratio)
    # The tent is symmetric about each centre; sampled at whole pixels it stays so for whole
    # ratios, and is off by a few hundredths of a pixel for others (as PIL's antialiasing).
    off = 1e-4 if ratio.is_integer() else 0.06
    assert np.abs(out - ((np.arange(2, n) + 0.5) * ratio - 0.5)).max() < off
    assert np.abs(resample_1d(np.full(200, 7.0, np.float32), 0, n, ratio) - 7.0).max() < 1e-5


def test_shrinking_averages_instead_of_aliasing():
    """Stripes one pixel wide shrunk 3x: plain bilinear would pick single stripes (0 or 1);
    the antialiasing kernel averages what each pixel covers."""
    stripes = (np.arange(300) % 2).astype(np.float32)
    out = resample_1d(stripes, 1, 99, 3.0)
    assert out.min() > 0.4 and out.max() < 0.6
    two = resample_1d(stripes, 1, 149, 2.0)  # 2x: each pixel averages one stripe of each
    assert np.abs(two - 0.5).max() < 1e-6


def test_weights_sum_to_one_and_sit_around_the_centre():
    for ratio in (0.25, 0.5, 1 / 1.3, 1.0, 1.3, 2.0, 4.0):
        k = taps(-7, 40, ratio)
        assert np.abs(k.weight.sum(1) - 1).max() < 1e-6
        centre = (np.arange(-7, 40) + 0.5) * ratio - 0.5
        assert np.abs((k.weight * k.index).sum(1) - centre).max() < (0.06 if ratio > 1 else 1e-4)


def test_keeping_the_size_is_the_identity():
    values = np.random.default_rng(1).random(40).astype(np.float32)
    assert np.array_equal(resample_1d(values, 0, 40, 1.0), values)


@pytest.mark.parametrize("ratio", [0.5, 1 / 1.3, 1.3, 2.0, 3.7])
def test_a_region_resampled_alone_equals_it_cut_from_a_larger_one(ratio):
    """Position purity, bit for bit, in 2D: what a block computes does not depend on the block."""
    rng = np.random.default_rng(2)
    image = rng.random((2, 90, 110)).astype(np.float32)

    def resampled(y0, y1, x0, x1):
        ky, kx = taps(y0, y1, ratio), taps(x0, x1, ratio)
        src = mirror_window(lambda ys, xs: image[:, ys, xs], image.shape[1:], ky.lo, ky.hi, kx.lo, kx.hi)
        return resample_axis(resample_axis(src, ky, 1, ky.lo), kx, 2, kx.lo)

    whole = resampled(-20, 120, -16, 150)
    for y0, y1, x0, x1 in [(-20, 3, -16, 0), (7, 31, 40, 97), (64, 120, 33, 150), (0, 1, 5, 6)]:
        part = resampled(y0, y1, x0, x1)
        assert np.array_equal(part, whole[:, y0 + 20 : y1 + 20, x0 + 16 : x1 + 16]), (y0, x0)


def test_torch_tensors_give_the_numpy_result():
    values = np.random.default_rng(3).random((3, 60, 50)).astype(np.float32)
    k = taps(4, 70, 0.75)
    local = resample_axis(values[:, k.lo : k.hi], k, 1, k.lo)
    assert np.array_equal(resample_axis(torch.from_numpy(values[:, k.lo : k.hi]), k, 1, k.lo).numpy(), local)


def test_bad_ratios_and_missing_source_are_refused():
    with pytest.raises(ValueError, match="positive"):
        taps(0, 10, 0.0)
    with pytest.raises(ValueError, match="empty"):
        taps(5, 5, 1.0)
    k = taps(0, 10, 2.0)
    with pytest.raises(ValueError, match="not all in"):
        resample_axis(np.zeros(5, np.float32), k, 0, k.lo)
