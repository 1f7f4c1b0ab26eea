import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from biounet.plan.blocks import plan_blocks, tile_starts
from biounet.plan.mirror import mirror_index, mirror_window


@given(n=st.integers(2, 40), pad=st.integers(0, 120))
def test_mirror_index_equals_numpy_reflect(n, pad):
    a = np.arange(n)
    assert np.array_equal(a[mirror_index(np.arange(-pad, n + pad), n)], np.pad(a, pad, mode="reflect"))


def test_mirror_single_pixel():
    assert np.all(mirror_index(np.arange(-5, 6), 1) == 0)


def test_mirror_window_reads_only_bounding_box():
    img = np.arange(20 * 30).reshape(1, 20, 30)
    seen = []

    def read(ys, xs):
        seen.append((ys, xs))
        return img[:, ys, xs]

    win = mirror_window(read, (20, 30), 5, 15, -3, 4)
    assert np.array_equal(win, np.pad(img, ((0, 0), (0, 0), (3, 0)), mode="reflect")[:, 5:15, 0:7])
    assert seen == [(slice(5, 15), slice(0, 4))]


@given(start=st.integers(0, 20).map(lambda k: 16 * k), length=st.integers(1, 3000), k=st.integers(1, 80))
def test_tile_starts_cover_and_align(start, length, k):
    tile_out = 4 + 16 * k
    starts = tile_starts(start, start + length, tile_out, 16)
    assert all(s % 16 == 0 for s in starts)
    assert starts[0] == start and starts == sorted(set(starts))
    covered = np.zeros(length, bool)
    for s in starts:
        covered[max(s - start, 0) : s - start + tile_out] = True
    assert covered.all()


def test_tile_starts_examples():
    assert tile_starts(0, 1000, 388, 16) == [0, 384, 624]
    assert tile_starts(0, 100, 388, 16) == [0]
    with pytest.raises(ValueError):
        tile_starts(8, 100, 388, 16)


def test_plan_blocks_chunk_aligned():
    blocks = plan_blocks((2,), 1000, 1337, 512, 16)
    assert len(blocks) == 2 * 2 * 3
    assert {(b.y0 % 512, b.x0 % 512) for b in blocks} == {(0, 0)}
    assert blocks[-1].shape == (1000 - 512, 1337 - 1024)
    assert len({b.key() for b in blocks}) == len(blocks)
    with pytest.raises(ValueError):
        plan_blocks((), 100, 100, 500, 16)


def test_cpu_workers_share_the_cores():
    from biounet.plan.run import cpu_workers

    assert cpu_workers(None, 2) == (2, 1)  # two networks of one thread each
    assert cpu_workers(None, 16) == (2, 8)
    assert cpu_workers(None, 1) == (1, 1)
    assert cpu_workers(1, 16) == (1, 16)  # --workers 1: one network on every core, as before
    assert cpu_workers(3, 16) == (3, 5)
    assert cpu_workers(4, 2) == (4, 1)
