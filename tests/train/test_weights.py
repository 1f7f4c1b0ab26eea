import math
from pathlib import Path

import numpy as np
import pytest

from biounet.train.targets import separate_touching
from biounet.train.weights import (
    border_cutoff,
    border_term,
    border_term_reference,
    cached_weight_map,
    class_weights,
    clear_weight_cache,
    weight_map,
    weight_map_reference,
)
from tests.conftest import bbbc039_labels as read_labels


@pytest.fixture(scope="module")
def crowded(shared_data: Path) -> np.ndarray:
    return read_labels(shared_data, 9)  # 191 nuclei, many touching


def test_cutoff_is_where_the_term_falls_below_eps():
    cut = border_cutoff(5.0, 1e-6)
    assert cut == pytest.approx(26.28, abs=0.01)
    assert math.exp(-(cut**2) / 50) == pytest.approx(1e-6)


def test_matches_reference_on_a_crowded_crop(crowded):
    crop = crowded[100:356, 200:456]
    assert len(np.unique(crop)) > 40
    fast, ref = weight_map(crop), weight_map_reference(crop)
    assert np.abs(fast - ref).max() <= 1e-4
    assert ref.max() > 9  # the crop does contain separation lines


def test_matches_reference_on_a_full_image(shared_data):
    labels = read_labels(shared_data, 0)  # 71 nuclei: the reference takes ~2 s
    fast, ref = weight_map(labels), weight_map_reference(labels)
    assert np.abs(fast - ref).max() <= 1e-4


def test_border_term_matches_reference_everywhere(crowded):
    sep = separate_touching(crowded[:200, :300])
    assert np.abs(border_term(sep) - border_term_reference(sep)).max() <= 1e-4


def disc(shape, centre, radius) -> np.ndarray:
    yy, xx = np.indices(shape)
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_hand_computed_value_between_two_single_pixel_cells():
    labels = np.zeros((21, 31), dtype=np.int32)
    labels[10, 10], labels[10, 20] = 1, 2
    w = weight_map(labels)
    # midway: d1 = d2 = 5; background is the most frequent class, so w_c = 1
    assert w[10, 15] == pytest.approx(1 + 10 * math.exp(-(10**2) / (2 * 5**2)), rel=1e-6)
    # on the cells: w_c = n_background / n_cell, no border term
    assert w[10, 10] == pytest.approx((21 * 31 - 2) / 2, rel=1e-6)


def test_isolated_cell_has_no_border_term():
    labels = np.zeros((200, 200), dtype=np.uint16)
    labels[disc(labels.shape, (40, 40), 12)] = 1
    labels[disc(labels.shape, (150, 150), 12)] = 2  # 130 px apart, gap > 100 px
    labels[disc(labels.shape, (150, 124), 10)] = 3  # 3 px from cell 2, far from cell 1
    near_one = np.zeros(labels.shape, dtype=bool)
    near_one[:95, :95] = True
    assert np.all(border_term(labels)[near_one] == 0)
    assert border_term_reference(labels)[near_one].max() < 1e-6 * 10
    w = weight_map(labels)
    background = class_weights((labels != 0).astype(np.uint8))[0]
    assert np.all(w[near_one & (labels == 0)] == background)
    assert w[150, 136] > 5  # the pair's gap is weighted


def test_single_cell_and_empty_images():
    labels = np.zeros((50, 60), dtype=np.uint8)
    assert np.all(weight_map(labels) == 1)
    labels[disc(labels.shape, (25, 30), 8)] = 7
    assert np.all(border_term(labels) == 0) and np.all(border_term_reference(labels) == 0)


def test_two_identical_cells_give_a_mirror_symmetric_map():
    labels = np.zeros((81, 101), dtype=np.int32)
    labels[disc(labels.shape, (40, 35), 11)] = 1
    labels[disc(labels.shape, (40, 65), 11)] = 2  # gap of 7 px, mirror axis x = 50
    w = weight_map(labels)
    np.testing.assert_allclose(w, w[:, ::-1], atol=1e-6)
    np.testing.assert_allclose(w, w[::-1, :], atol=1e-6)
    # on the axis both cells are 4 px away
    assert w[40, 50] == pytest.approx(1 + 10 * math.exp(-(8**2) / 50), rel=1e-6)


def test_separation_lines_get_high_weight(crowded):
    sep = separate_touching(crowded)
    line = (crowded != 0) & (sep == 0)
    w = weight_map(crowded)
    # both neighbours within sqrt(2) px: at least 1 + 10 exp(-(2 sqrt 2)^2 / 50)
    assert w[line].min() > 1 + 10 * math.exp(-8 / 50) - 1e-4
    assert w[line].min() > np.median(w[sep == 0]) + 5


def test_class_weights_balance_the_binary_target(crowded):
    target = (separate_touching(crowded) != 0).astype(np.uint8)
    n_bg, n_fg = np.bincount(target.ravel())
    np.testing.assert_allclose(class_weights(target), [1.0, n_bg / n_fg])
    w = weight_map(crowded)
    assert np.all(w[target == 1] == np.float32(n_bg / n_fg))
    fixed = weight_map(crowded, class_weights=[0.5, 2.0])
    assert np.all(fixed[target == 1] == 2.0)


def test_ignored_pixels_weigh_zero(crowded):
    labels = crowded[:200, :200].copy()
    labels[:50] = 65535
    w = weight_map(labels, ignore=65535)
    assert np.all(w[:50] == 0) and np.all(w[50:] > 0)


def test_cache_returns_the_same_read_only_map(crowded):
    clear_weight_cache()
    labels = crowded[:128, :128]
    first = cached_weight_map(labels)
    assert cached_weight_map(labels.copy()) is first
    assert not first.flags.writeable
    np.testing.assert_array_equal(first, weight_map(labels))
    assert cached_weight_map(labels, w0=5.0) is not first
    other = labels.copy()
    other[0, 0] = 1 + other.max()
    assert cached_weight_map(other) is not first
    clear_weight_cache()
