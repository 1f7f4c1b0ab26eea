from pathlib import Path

import numpy as np
import pytest

from biounet.evaluate.metrics import (
    THRESHOLDS,
    aggregate,
    instance_scores,
    overlap,
)
from tests.conftest import bbbc039_labels as bbbc039
from tests.conftest import eroded_labels


@pytest.fixture(scope="module")
def labels(shared_data: Path) -> np.ndarray:
    return bbbc039(shared_data, 9)  # 191 nuclei, many touching


def test_thresholds():
    assert THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)


def hand_example() -> tuple[np.ndarray, np.ndarray]:
    true = np.zeros((10, 10), dtype=np.int32)
    pred = np.zeros((10, 10), dtype=np.int32)
    true[0:4, 0:4] = 1  # A, 16 px
    true[0:2, 6:10] = 2  # B, 8 px
    true[6:8, 0:2] = 3  # C, 4 px
    true[6:8, 2:4] = 4  # D, 4 px
    pred[0:4, 0:3] = 10  # inside A: IoU 12/16 = 0.75
    pred[0:2, 6:8] = 20  # half of B: IoU 0.5
    pred[0:2, 8:10] = 30  # other half of B: IoU 0.5 -> B is split
    pred[6:8, 0:4] = 40  # C and D together: IoU 0.5 each -> a merge
    pred[8:10, 8:10] = 50  # nothing there
    return true, pred


def test_hand_computed_example():
    true, pred = hand_example()
    ov = overlap(true, pred)
    np.testing.assert_array_equal(ov.true_ids, [1, 2, 3, 4])
    np.testing.assert_array_equal(ov.pred_ids, [10, 20, 30, 40, 50])
    expected = np.zeros((4, 5))
    expected[0, 0] = 0.75
    expected[1, 1] = expected[1, 2] = expected[2, 3] = expected[3, 3] = 0.5
    np.testing.assert_allclose(ov.iou_matrix(), expected)

    s = instance_scores(true, pred)
    # t <= 0.7: only A matches: TP 1, FP 4, FN 3, F1 = 2 / 9; above 0.75 nothing
    assert s.tp == (1, 1, 1, 1, 1, 0, 0, 0, 0)
    assert s.fp == (4, 4, 4, 4, 4, 5, 5, 5, 5)
    assert s.fn == (3, 3, 3, 3, 3, 4, 4, 4, 4)
    np.testing.assert_allclose(s.f1, [2 / 9] * 5 + [0] * 4)
    assert s.average_f1 == pytest.approx(10 / 81)
    assert (s.n_true, s.n_pred, s.missed, s.extra) == (4, 5, 3, 4)
    assert (s.splits, s.merges) == (1, 1)
    # foreground: 32 true px, 32 predicted, 28 shared
    assert s.foreground_iou == pytest.approx(28 / 36)
    assert s.foreground_dice == pytest.approx(56 / 64)


def test_below_one_half_matching_is_one_to_one():
    true, pred = hand_example()
    s = instance_scores(true, pred, thresholds=(0.3,))
    assert s.tp == (3,)  # A-10, B with 20 or 30, C or D with 40


def test_sparse_overlap_equals_a_dense_count(labels):
    true = labels[:200, :260]
    pred = np.roll(true, (3, -2), axis=(0, 1)).astype(np.int64) * 100_003  # large ids
    ov = overlap(true, pred)
    for k in np.random.default_rng(0).choice(len(ov.pair_true), 20, replace=False):
        t, p = ov.true_ids[ov.pair_true[k]], ov.pred_ids[ov.pair_pred[k]]
        inter = np.count_nonzero((true == t) & (pred == p))
        union = np.count_nonzero((true == t) | (pred == p))
        assert ov.intersection[k] == inter
        assert ov.iou[k] == pytest.approx(inter / union)
    assert ov.true_area.sum() == np.count_nonzero(true)


def test_identical_labels_score_perfectly(labels):
    s = instance_scores(labels, labels)
    assert s.f1 == (1.0,) * 9 and s.average_f1 == 1.0
    assert s.tp[0] == s.n_true == s.n_pred == len(np.unique(labels)) - 1
    assert (s.missed, s.extra, s.splits, s.merges) == (0, 0, 0, 0)
    assert s.foreground_iou == s.foreground_dice == 1.0


def test_relabelled_copy_scores_the_same(labels):
    rng = np.random.default_rng(1)
    new_ids = np.concatenate([[0], rng.permutation(np.arange(1, 60_000))[: labels.max()]])
    s = instance_scores(labels, new_ids[labels])
    assert s.f1 == (1.0,) * 9
    assert (s.splits, s.merges) == (0, 0)


def test_eroded_objects_fail_only_the_strict_thresholds(labels):
    # Shrink every nucleus by 1 px (4-connected, against background and neighbours).
    # These nuclei are small (median ~250 px), so 1 px already costs ~20% IoU;
    # a few tiny ones vanish, hence F1 just under 1 at the lenient thresholds.
    s = instance_scores(labels, eroded_labels(labels))
    assert all(f >= 0.95 for f in s.f1[:3])  # t <= 0.6
    assert s.f1[-1] < 0.2  # t = 0.9
    assert all(a >= b for a, b in zip(s.f1, s.f1[1:]))
    assert (s.splits, s.merges) == (0, 0)


def touching_pair(labels: np.ndarray) -> tuple[int, int]:
    """The two touching nuclei with the longest contact and similar sizes."""
    a, b = labels[:, :-1].ravel(), labels[:, 1:].ravel()
    contact = (a != b) & (a > 0) & (b > 0)
    pairs = np.sort(np.stack([a[contact], b[contact]]), axis=0)
    pairs, counts = np.unique(pairs, axis=1, return_counts=True)
    area = np.bincount(labels.ravel())
    ratio = area[pairs].min(0) / area[pairs].max(0)
    best = np.argmax(counts * (ratio > 0.5))
    return int(pairs[0, best]), int(pairs[1, best])


def test_merging_two_touching_nuclei_is_one_merge(labels):
    i, j = touching_pair(labels)
    merged = np.where(labels == j, i, labels)
    s = instance_scores(labels, merged)
    assert (s.merges, s.splits) == (1, 0)
    assert s.n_pred == s.n_true - 1
    # sizes within 2x: the merged object's IoU with either is below 2/3
    assert (s.missed, s.extra) == (2, 1)


def test_splitting_a_nucleus_is_one_split(labels):
    i = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1  # the largest nucleus
    rows = np.nonzero(labels == i)[0]
    split = labels.astype(np.int32).copy()
    split[(labels == i) & (np.arange(labels.shape[0])[:, None] > np.median(rows))] = 99_999
    s = instance_scores(labels, split)
    assert (s.splits, s.merges) == (1, 0)
    assert s.missed == 1 and s.extra == 2


def test_dropped_nuclei_are_missed(labels):
    dropped = [5, 17, 42, 100]
    pred = np.where(np.isin(labels, dropped), 0, labels)
    s = instance_scores(labels, pred)
    assert (s.missed, s.extra) == (len(dropped), 0)
    assert s.tp == (s.n_true - len(dropped),) * 9
    assert s.f1[0] == pytest.approx(2 * s.tp[0] / (2 * s.tp[0] + len(dropped)))


def test_empty_images():
    empty = np.zeros((8, 8), dtype=np.uint8)
    one = empty.copy()
    one[2:5, 2:5] = 1
    assert instance_scores(empty, empty).average_f1 == 1.0
    s = instance_scores(one, empty)
    assert s.average_f1 == 0.0 and s.missed == 1 and s.foreground_iou == 0.0
    s = instance_scores(empty, one)
    assert s.average_f1 == 0.0 and s.extra == 1


def test_aggregate_means_per_image_and_pools_counts(shared_data):
    a, b = bbbc039(shared_data, 0), bbbc039(shared_data, 1)
    drop = np.where(np.isin(b, np.arange(1, 40)), 0, b)
    per_image = [instance_scores(a, a), instance_scores(b, drop)]
    summary = aggregate(per_image)
    assert summary["n_images"] == 2
    np.testing.assert_allclose(summary["f1"], np.mean([s.f1 for s in per_image], axis=0))
    assert summary["average_f1"] == pytest.approx(np.mean([s.average_f1 for s in per_image]))
    tp = per_image[0].tp[0] + per_image[1].tp[0]
    fn = per_image[1].fn[0]
    assert summary["f1_pooled"][0] == pytest.approx(2 * tp / (2 * tp + fn))
    counts = zip(summary["tp"], summary["fp"], summary["fn"])
    pooled = [2 * t / (2 * t + p + n) for t, p, n in counts]
    assert summary["f1_pooled"] == pytest.approx(pooled)
    assert summary["average_f1_pooled"] != pytest.approx(summary["average_f1"])
    assert summary["missed"] == 39 and summary["extra"] == 0
    assert summary["n_true"] == per_image[0].n_true + per_image[1].n_true
