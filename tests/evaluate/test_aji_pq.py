"""AJI (Kumar et al. 2017) and panoptic quality (Kirillov et al. 2019): hand-computed cases, and a
straightforward per-object reference on a real MoNuSeg tile."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from biounet.evaluate.metrics import aggregate, instance_scores
from tests.conftest import eroded_labels

BUSIEST = "TCGA-HE-7129-01Z-00-DX1"  # 1584 nuclei in 1000 x 1000 px


def monuseg_labels(shared_data: Path, name: str = BUSIEST) -> np.ndarray:
    return tifffile.imread(shared_data / "monuseg" / "train" / "labels" / f"{name}.tif")


# ------------------------------------------------------------------ by hand


def figures(true: np.ndarray, pred: np.ndarray) -> tuple[float, float, float, float]:
    s = instance_scores(true, pred)
    return s.aji, s.pq, s.sq, s.rq


def test_touching_objects_with_a_shifted_border():
    true = np.zeros((6, 10), np.uint16)
    pred = np.zeros_like(true)
    true[1:5, 1:5], true[1:5, 5:9] = 1, 2  # two touching 16 px objects
    pred[1:5, 1:6], pred[1:5, 6:9] = 1, 2  # their border one column too far right: 20 px and 12 px
    # 1 - 1: IoU 16 / 20 = 0.8; 2 - 2: 12 / 16 = 0.75; 2 - 1 overlap 4 px: IoU 4 / 32, nobody's best
    # AJI: C = 16 + 12, U = 20 + 16; PQ: two matches, SQ = (0.8 + 0.75) / 2, RQ = 1
    aji, pq, sq, rq = figures(true, pred)
    assert aji == pytest.approx(28 / 36)
    assert (pq, sq, rq) == pytest.approx((0.775, 0.775, 1.0))


def test_split():
    true = np.zeros((6, 6), np.uint16)
    pred = np.zeros_like(true)
    true[1:5, 1:5] = 7  # 16 px
    pred[1:4, 1:5], pred[4:5, 1:5] = 3, 4  # 12 px (IoU 0.75) and 4 px (IoU 0.25)
    # AJI: 7 pairs with 3: C = 12, U = 16; 4 is nobody's partner: U += 4
    # PQ: 7 - 3 match (0.75); 4 is a false positive: RQ = 1 / (1 + 1/2), PQ = 0.75 * 2/3
    aji, pq, sq, rq = figures(true, pred)
    assert aji == pytest.approx(12 / 20)
    assert (pq, sq, rq) == pytest.approx((0.5, 0.75, 2 / 3))


def test_merge_counts_the_merged_object_in_each_union():
    true = np.zeros((6, 6), np.uint16)
    pred = np.zeros_like(true)
    true[1:4, 1:5], true[4:5, 1:5] = 1, 2  # 12 px and 4 px, touching
    pred[1:5, 1:5] = 9  # both as one 16 px object: IoU 0.75 and 0.25
    # AJI: both true objects pair with 9 (Kumar's over-penalisation): C = 12 + 4, U = 16 + 16
    # PQ: 1 - 9 matches (0.75); 2 is missed: RQ = 1 / (1 + 1/2)
    aji, pq, sq, rq = figures(true, pred)
    assert aji == pytest.approx(16 / 32)
    assert (pq, sq, rq) == pytest.approx((0.5, 0.75, 2 / 3))


def test_missed_and_extra_objects():
    true = np.zeros((8, 8), np.uint16)
    true[0:3, 0:3], true[5:7, 5:7] = 1, 2  # 9 px and 4 px
    pred = np.where(true == 1, 5, 0)  # 1 found exactly, 2 missed
    # AJI: C = 9, U = 9 + 4 (the missed object's area); PQ: SQ 1, RQ = 1 / (1 + 1/2)
    aji, pq, sq, rq = figures(true, pred)
    assert aji == pytest.approx(9 / 13)
    assert (pq, sq, rq) == pytest.approx((2 / 3, 1.0, 2 / 3))
    extra = np.where(true == 1, 5, 0)
    extra[5:7, 0:2] = 6  # an extra 4 px object where there is nothing
    aji, pq, sq, rq = figures(np.where(true == 1, 1, 0), extra)
    assert aji == pytest.approx(9 / 13)  # the extra object's area joins U
    assert (pq, sq, rq) == pytest.approx((2 / 3, 1.0, 2 / 3))


def test_a_tie_goes_to_the_lower_id():
    """Two predicted objects of equal IoU with a true one: the lower id is its partner, as the first
    maximum in the MoNuSeg MATLAB code (max) and HoVer-Net's (np.argmax) is."""
    true = np.zeros((4, 8), np.uint16)
    true[0:2, 0:3] = 1  # 6 px
    pred_small, pred_large = np.zeros_like(true), np.zeros_like(true)
    pred_small[0, 0:2] = 1  # 2 px inside: IoU 2 / 6
    pred_large[1:3, 0:3] = 1  # 3 px inside, 3 outside: IoU 3 / 9
    low_small = pred_small * 1 + pred_large * 2
    low_large = pred_small * 2 + pred_large * 1
    # partner the small one: C = 2, U = 6 + 6 (the large one unpartnered); the large one: C = 3, U = 9 + 2
    assert instance_scores(true, low_small).aji == pytest.approx(2 / 12)
    assert instance_scores(true, low_large).aji == pytest.approx(3 / 11)


def test_empty_images():
    empty = np.zeros((8, 8), np.uint8)
    one = empty.copy()
    one[2:5, 2:5] = 1
    assert figures(empty, empty) == (1.0, 1.0, 1.0, 1.0)  # nothing to find, nothing found
    assert figures(one, empty) == (0.0, 0.0, 0.0, 0.0)
    assert figures(empty, one) == (0.0, 0.0, 0.0, 0.0)
    s = instance_scores(one, empty)
    assert (s.aji_intersection, s.aji_union) == (0, 9)


def test_aggregate_means_per_image_and_pools_the_sums():
    true = np.zeros((6, 6), np.uint16)
    true[1:5, 1:5] = 1
    split = np.where(true == 1, 3, 0)
    split[4:5, 1:5] = 4  # AJI 12/20, PQ 0.5 (as in test_split)
    per_image = [instance_scores(true, true), instance_scores(true, split)]
    summary = aggregate(per_image)
    assert summary["aji"] == pytest.approx((1 + 12 / 20) / 2)  # MoNuSeg: the mean of per-image AJI
    assert summary["aji_pooled"] == pytest.approx((16 + 12) / (16 + 20))
    assert summary["pq"] == pytest.approx((1 + 0.5) / 2)
    # pooled: 2 matches with IoU 1 and 0.75, 1 false positive
    assert summary["sq_pooled"] == pytest.approx(1.75 / 2)
    assert summary["rq_pooled"] == pytest.approx(2 / (2 + 0.5))
    assert summary["pq_pooled"] == pytest.approx(1.75 / 2.5)


# ------------------------------------------------------------------ against a reference, on real data


def reference(true: np.ndarray, pred: np.ndarray) -> dict:
    """AJI and PQ object by object, as the papers describe them, with plain loops.

    AJI (Kumar et al. 2017, Algorithm 1): for each true object G, the predicted S of highest IoU (the first
    of equal ones in id order) gives C += |G & S|, U += |G | S| and is marked used; a G overlapping no S adds
    |G|; every unused S adds |S|. PQ: pairs with IoU > 0.5.
    """
    true_boxes, pred_boxes = ndi.find_objects(true), ndi.find_objects(pred)

    def box(*slices_pairs) -> tuple[slice, slice]:
        return tuple(slice(min(s[i].start for s in slices_pairs), max(s[i].stop for s in slices_pairs))
                     for i in range(2))

    true_ids = [i + 1 for i, b in enumerate(true_boxes) if b is not None]
    pred_ids = [i + 1 for i, b in enumerate(pred_boxes) if b is not None]
    c = u = 0
    used = set()
    tp, iou_sum = 0, 0.0
    for g in true_ids:
        g_box = true_boxes[g - 1]
        g_area = int(np.count_nonzero(true[g_box] == g))
        best = None  # (iou, intersection, union, id)
        for s in pred_ids:
            s_box = pred_boxes[s - 1]
            if any(a.stop <= b.start or b.stop <= a.start for a, b in zip(g_box, s_box)):
                continue  # bounding boxes apart: no overlap
            window = box(g_box, s_box)
            in_g, in_s = true[window] == g, pred[window] == s
            inter = int(np.count_nonzero(in_g & in_s))
            if inter == 0:
                continue
            union = int(np.count_nonzero(in_g | in_s))
            if best is None or inter / union > best[0]:
                best = (inter / union, inter, union, s)
            if inter / union > 0.5:
                tp += 1
                iou_sum += inter / union
        if best is None:
            u += g_area
        else:
            c += best[1]
            u += best[2]
            used.add(best[3])
    for s in pred_ids:
        if s not in used:
            u += int(np.count_nonzero(pred[pred_boxes[s - 1]] == s))
    fp, fn = len(pred_ids) - tp, len(true_ids) - tp
    sq = iou_sum / tp if tp else 0.0
    rq = tp / (tp + fp / 2 + fn / 2)
    return {"aji": c / u, "aji_intersection": c, "aji_union": u, "pq": sq * rq, "sq": sq, "rq": rq, "tp": tp}


def perturbed(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A plausible bad segmentation of `labels`: eroded by 1 px, shifted by (1, 2) px, a few objects dropped,
    merged with a touching neighbour or cut in two, and blobs where there is nothing; ids renumbered at random."""
    rng = np.random.default_rng(seed)
    ids = np.unique(labels)[1:]
    out = labels.astype(np.int64)
    out[np.isin(out, rng.choice(ids, len(ids) // 20, replace=False))] = 0  # dropped
    a, b = out[:, :-1].ravel(), out[:, 1:].ravel()
    touching = np.unique(np.sort(np.stack([a, b])[:, (a != b) & (a > 0) & (b > 0)], axis=0), axis=1)
    for i, j in touching[:, rng.choice(touching.shape[1], touching.shape[1] // 5, replace=False)].T:
        out[out == j] = i  # merged (chains of merges too)
    for i in rng.choice(np.unique(out)[1:], 30, replace=False):
        rows = np.nonzero(out == i)[0]
        out[(out == i) & (np.arange(out.shape[0])[:, None] > np.median(rows))] = out.max() + 1  # split
    out = np.roll(eroded_labels(out), (1, 2), axis=(0, 1))
    background = np.argwhere(ndi.binary_erosion(out == 0, iterations=6))
    for y, x in background[rng.choice(len(background), 40, replace=False)]:
        out[y - 3 : y + 3, x - 3 : x + 3] = out.max() + 1  # extra
    new_ids = np.concatenate([[0], rng.permutation(np.arange(1, out.max() + 1)) + 1])
    return new_ids[out]


@pytest.fixture(scope="module")
def busy(shared_data) -> tuple[np.ndarray, np.ndarray]:
    labels = monuseg_labels(shared_data)
    return labels, perturbed(labels)


def test_matches_a_per_object_reference_on_a_real_tile(busy):
    labels, pred = busy
    s, ref = instance_scores(labels, pred), reference(labels, pred)
    assert s.n_true == 1584 and 0.3 < ref["aji"] < 0.8 and ref["tp"] < s.n_true  # a real test, not 0 or 1
    assert (s.aji_intersection, s.aji_union) == (ref["aji_intersection"], ref["aji_union"])
    for key in ("aji", "pq", "sq", "rq"):
        assert abs(getattr(s, key) - ref[key]) <= 1e-12, (key, getattr(s, key), ref[key])
    assert s.pq_tp == ref["tp"] and s.rq == pytest.approx(s.f1[0], abs=1e-15)


def test_a_tile_of_1584_nuclei_is_scored_quickly(busy):
    labels, pred = busy
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        instance_scores(labels, pred)
        seconds.append(time.perf_counter() - started)
    assert min(seconds) < 3.0, seconds  # ~0.2 s on 2 busy cores; `reference` takes ~6 s
