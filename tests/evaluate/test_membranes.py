"""ISBI 2012 membrane metrics: hand-computed examples, closed forms and real slices."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from biounet.evaluate.membranes import (
    THRESHOLDS,
    membrane_curves,
    membrane_scores,
    membrane_summary,
    rand_counts,
    thin,
    v_info_score,
)

EIGHT = np.ones((3, 3), dtype=bool)

# Two cells of 4 pixels each, one membrane column between them.
CELLS = np.array([[1, 1, 0, 1, 1],
                  [1, 1, 0, 1, 1]], np.uint8)


def test_thresholds_are_the_challenges():
    """0.0 to 1.0 in steps of 0.1, accumulated as Fiji's loop does: eleven, the last just under 1."""
    assert len(THRESHOLDS) == 11 and THRESHOLDS[0] == 0.0 and THRESHOLDS[5] == 0.5
    assert 1 - 1e-12 < THRESHOLDS[-1] < 1.0


def test_merge_by_hand():
    """A gap in the membrane merges the cells: 32 of 64 predicted pairs are true (precision 1/2)."""
    merged = np.ones_like(CELLS, np.float32)
    s = membrane_scores(CELLS, merged)
    assert rand_counts(ndi.label(CELLS)[0], ndi.label(merged)[0]) == (32, 32, 0)  # TP, FP, FN pixel pairs
    assert (s.rand_precision, s.rand_recall) == (0.5, 1.0)
    assert s.rand_error == pytest.approx(1 - 2 / 3)
    # pixels: 8 true interior, 2 false; F = 2 * 0.8 * 1 / 1.8, against an accuracy of 0.8
    assert s.pixel_error == pytest.approx(1 - 16 / 18)


def test_split_by_hand():
    """Half of the left cell predicted as membrane: each of its pixels is a segment of its own."""
    split = CELLS.astype(np.float32)
    split[1, :2] = 0
    s = membrane_scores(CELLS, split)
    # pairs together in both: 2^2 (the left half) + 4^2 (the right cell) + 2 (two singletons) = 22
    # of 32 true pairs (recall) and of 22 predicted ones (precision)
    assert rand_counts(ndi.label(CELLS)[0], ndi.label(split > 0.5)[0]) == (22, 0, 10)
    assert s.rand_precision == 1.0 and s.rand_recall == pytest.approx(22 / 32)
    assert s.rand_error == pytest.approx(1 - 2 * (22 / 32) / (1 + 22 / 32))


def test_v_info_by_hand():
    """A refinement keeps all the information about the truth: I = H(T) = log 2, H(S) = 1.5 log 2."""
    true = np.array([[1, 1, 1, 1, 2, 2, 2, 2]])
    refined = np.array([[1, 1, 2, 2, 3, 3, 3, 3]])
    assert v_info_score(true, refined) == pytest.approx(2 * 1 / (1 + 1.5))
    assert v_info_score(true, true) == pytest.approx(1.0)
    assert v_info_score(true, np.ones_like(true)) == 0.0  # everything merged: no mutual information
    single = np.ones((2, 2), int)
    assert v_info_score(single, single) == 1.0  # two one-segment partitions are the same partition


def test_pixel_error_is_maximal_f_score_not_accuracy():
    """All pixels predicted interior with probability 0.75: below 0.75 every pixel is interior (F 8/9);
    from 0.8 on none is (F 0). The best threshold counts: 1 - 8/9, where 1 - accuracy would be 0.2."""
    s = membrane_scores(CELLS, np.full(CELLS.shape, 0.75, np.float32))
    assert s.pixel_error == pytest.approx(1 / 9)


def test_the_best_threshold_counts():
    """Interiors at 0.65 and membranes at 0.55: only thresholds 0.6 separate them, and that one counts."""
    probability = np.where(CELLS == 1, 0.65, 0.55).astype(np.float32)
    s = membrane_scores(CELLS, probability)
    assert s.pixel_error == 0.0 and s.rand_error == 0.0 and s.v_rand == 1.0
    assert s.rand_threshold == 0.6
    at_half = membrane_scores(CELLS, probability, thresholds=(0.5,))
    assert at_half.rand_error == pytest.approx(1 / 3) and at_half.pixel_error > 0


def test_thinning_puts_a_thick_membrane_on_its_middle_line():
    """A 3-pixel membrane floods from both cells and meets in its middle column, which becomes the line."""
    interior = np.ones((6, 11), bool)
    interior[:, 4:7] = False
    thinned = thin(interior)
    assert np.all(thinned[:, 5] == 0) and np.count_nonzero(thinned == 0) == 6
    assert len(np.unique(thinned[:, :5])) == 1 and len(np.unique(thinned[:, 6:])) == 1
    assert thinned[0, 0] != thinned[0, -1]
    assert np.all(thin(np.ones((4, 4), bool)) == 1) and np.all(thin(np.zeros((4, 4), bool)) == 1)


def test_thick_membranes_cost_rand_error_but_not_v_rand():
    """Closed form: cells of L columns and R rows whose membranes are predicted one column thicker on each
    side; each true pixel under the thick membrane is a segment of its own. V_Rand thins them away."""
    rows, width = 6, 5
    true = np.ones((rows, 2 * width + 1), np.uint8)
    true[:, width] = 0
    predicted = true.astype(np.float32)
    predicted[:, width - 1 : width + 2] = 0
    s = membrane_scores(true, predicted)
    recall = (2 * ((width - 1) * rows) ** 2 + 2 * rows) / (2 * (width * rows) ** 2)
    assert (s.rand_precision, s.rand_recall) == (1.0, pytest.approx(recall))
    assert s.rand_error == pytest.approx(1 - 2 * recall / (1 + recall))
    assert s.v_rand == 1.0 and s.v_info == pytest.approx(1.0)


def test_a_data_set_takes_one_threshold_for_all_its_images():
    """Image 1 is right only at 0.3, image 2 only at 0.7: each alone scores perfectly, together no single
    threshold is right for both; pair counts and pixel counts add up over the images."""
    one = membrane_curves(CELLS, np.where(CELLS == 1, 0.35, 0.25).astype(np.float32))
    two = membrane_curves(CELLS, np.where(CELLS == 1, 0.75, 0.65).astype(np.float32))
    assert membrane_summary([one]).rand_error == 0.0 == membrane_summary([two]).rand_error
    both = membrane_summary([one, two])
    assert both.rand_error > 0 and both.pixel_error > 0 and both.v_rand < 1
    assert membrane_summary([one, one]) == membrane_summary([one])
    with pytest.raises(ValueError, match="same thresholds"):
        membrane_summary([one, membrane_curves(CELLS, CELLS)])  # a class map has only one threshold


def test_ignored_pixels_count_nowhere():
    wrong = CELLS.astype(np.float32)
    wrong[0, 2] = 1  # a pixel of the membrane predicted interior: a merge
    assert membrane_scores(CELLS, wrong).rand_error > 0
    valid = np.ones(CELLS.shape, bool)
    valid[0, 2] = False
    s = membrane_scores(CELLS, wrong, valid=valid)
    assert s.pixel_error == 0.0  # the pixel is not scored; the merge through it still is
    assert s.rand_error == pytest.approx(1 / 3)


@pytest.fixture(scope="module")
def membrane(shared_data: Path) -> np.ndarray:
    return tifffile.imread(shared_data / "isbi2012" / "train" / "labels" / "slice16.tif")


def test_real_slice_against_itself_scores_perfectly(membrane):
    for proposal in (membrane, membrane.astype(np.float32) * 0.8 + 0.1):
        s = membrane_scores(membrane, proposal)
        assert s.pixel_error == 0.0 and s.rand_error == pytest.approx(0.0, abs=1e-12)
        assert s.v_rand == pytest.approx(1.0) and s.v_info == pytest.approx(1.0)


def test_real_slice_merges_and_thick_membranes(membrane):
    """Gaps in the membranes merge cells (precision falls, recall stays 1); thicker membranes split off
    pixels (recall falls, precision stays 1) and thinning forgives them (V_Rand stays near 1)."""
    leaky = membrane_scores(membrane, ndi.binary_dilation(membrane == 1, EIGHT, iterations=2).astype(np.uint8))
    assert leaky.rand_precision < 0.2 and leaky.rand_recall == 1.0 and leaky.rand_error > 0.5
    assert leaky.v_rand < 0.5
    thick = membrane_scores(membrane, ndi.binary_erosion(membrane == 1, EIGHT).astype(np.uint8))
    assert thick.rand_precision > 0.999 and 0.8 < thick.rand_recall < 0.99
    assert thick.v_rand > 0.99 and thick.v_info > 0.99 and thick.pixel_error > 0.02
