"""Pyramid means of the image copy: exact for every integer type, to the full range."""

from fractions import Fraction

import numpy as np
import pytest

from biounet.write.pyramid import shrink

INTEGERS = ["bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64"]


def exact_shrink(data: np.ndarray, step: tuple[int, int]) -> np.ndarray:
    """Means of sy x sx pixels (the last odd row/column repeated) in Python fractions,
    rounded half to even (Python's round of a Fraction)."""
    sy, sx = step
    *lead, h, w = data.shape
    out = np.zeros((*lead, -(-h // sy), -(-w // sx)), data.dtype)
    for index in np.ndindex(*out.shape):
        *plane, y, x = index
        values = [int(data[(*plane, min(sy * y + i, h - 1), min(sx * x + j, w - 1))])
                  for i in range(sy) for j in range(sx)]
        out[index] = round(Fraction(sum(values), sy * sx))
    return out


@pytest.mark.parametrize("step", [(2, 2), (2, 1), (1, 2)])
@pytest.mark.parametrize("dtype", INTEGERS)
def test_integer_means_are_exact_over_the_whole_range(dtype, step):
    """Random values of the type's whole range, blocks at its extremes (whose sums
    overflow the type) and ties: each output pixel is the exact mean, rounded half to even."""
    rng = np.random.default_rng(0)
    if dtype == "bool":
        data = rng.random((2, 9, 7)) > 0.5
    else:
        info = np.iinfo(dtype)
        data = rng.integers(info.min, info.max, (2, 9, 7), dtype=dtype, endpoint=True)
        data[0, :4, :4], data[1, :4, :4] = info.max, info.min
        data[0, 4:6, :2] = [[info.max, info.max - 1], [info.max - 1, info.max]]  # a tie at the top: x.5
        data[1, 4:6, :2] = [[info.min, info.min + 1], [info.min + 1, info.min]]
    got = shrink(data, False, step)
    assert got.dtype == data.dtype and np.array_equal(got, exact_shrink(data, step))


def test_float64_keeps_its_precision():
    data = 1 + np.random.default_rng(1).random((8, 8)) * 2.0**-30  # differences float32 cannot hold
    expected = (data[::2, ::2] + data[1::2, ::2] + data[::2, 1::2] + data[1::2, 1::2]) / 4
    got = shrink(data, False, (2, 2))
    assert got.dtype == np.float64 and np.array_equal(got, expected)
