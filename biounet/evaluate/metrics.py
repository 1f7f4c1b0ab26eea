"""Segmentation accuracy: instance metrics (Caicedo et al. 2019) and membrane metrics.

Instance metrics compare a true and a predicted label image (0 = background):

- IoU of every overlapping (true, predicted) pair, from one pass over the
  pixels (a sparse contingency table; objects that do not overlap never
  appear, so the cost does not grow with n_true * n_pred).
- At IoU threshold t a true and a predicted object match when IoU > t. For
  t >= 0.5 such matches are unique (two objects cannot both cover more than
  half of a third's union); below 0.5 a maximum one-to-one matching is used.
- F1 = 2TP / (2TP + FP + FN) at t = 0.50, 0.55, ..., 0.90; ``average_f1`` is
  their mean. An image with no objects in either label image scores F1 = 1.
- ``missed`` (FN) and ``extra`` (FP) objects at IoU 0.7.
- ``splits``: true objects overlapped by more than one predicted object at
  IoU > 0.1; ``merges``: predicted objects overlapping more than one true
  object at IoU > 0.1 (counts of objects, as in Caicedo et al.'s code).
- Foreground pixel IoU and Dice.
- ``aji``: the aggregated Jaccard index of Kumar et al. (IEEE TMI 2017), by
  which the MoNuSeg challenge ranks: each true object G is paired with the
  predicted object S of highest IoU with it (the lowest id on a tie; a
  predicted object may be the partner of several), C adds up |G & S| and U
  |G | S| over the true objects; a true object overlapping nothing adds its
  own area to U, and every predicted object that is nobody's partner adds its
  area to U. AJI = C / U.
- ``pq``: panoptic quality (Kirillov et al. 2019, as HoVer-Net and CellViT
  report it for nuclei): matches at IoU > 0.5 (unique), ``sq`` the mean IoU of
  the matches, ``rq`` = TP / (TP + FP/2 + FN/2) (= F1 at 0.5), PQ = SQ x RQ.
  With no match SQ is 0 (PQ is 0 either way).

An image with no objects in either label image scores 1 on every figure (F1,
AJI, PQ, SQ, RQ): nothing was to be found and nothing was found.

Over a data set (``aggregate``) the headline ``f1`` and ``average_f1`` are
means of the per-image values, as Caicedo et al. report them (each image
weighs the same, however many nuclei it has); the pooled figures (TP, FP, FN
summed over images, then F1) are given too, as ``f1_pooled`` and
``average_f1_pooled``. Counts (missed, extra, splits, merges) are summed.
Likewise ``aji``, ``pq``, ``sq`` and ``rq`` are means of the per-image values
(the MoNuSeg challenge's AJI is the mean of per-image AJI; HoVer-Net's PQ is
the mean over images too), and ``aji_pooled`` (C and U summed over the
images, then C / U) and ``pq_pooled``, ``sq_pooled``, ``rq_pooled`` (matches
and their IoU summed over the images: Kirillov et al.'s data-set PQ) are the
pooled ones.

Membrane metrics (ISBI 2012: 1 = cell interior, 0 = membrane) are in
``biounet.evaluate.membranes``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy.sparse import csr_array
from scipy.sparse.csgraph import maximum_bipartite_matching

THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(9))
COUNT_THRESHOLD = 0.7
PQ_THRESHOLD = 0.5
SPLIT_MERGE_THRESHOLD = 0.1


@dataclass(frozen=True)
class Overlap:
    """Objects of two label images and their overlapping pairs.

    Objects are indexed 0..n-1 in order of their ids; ``pair_true[k]`` and
    ``pair_pred[k]`` overlap by ``intersection[k]`` pixels.
    """

    true_ids: np.ndarray
    pred_ids: np.ndarray
    true_area: np.ndarray
    pred_area: np.ndarray
    pair_true: np.ndarray
    pair_pred: np.ndarray
    intersection: np.ndarray

    @property
    def iou(self) -> np.ndarray:
        """IoU of each overlapping pair."""
        union = self.true_area[self.pair_true] + self.pred_area[self.pair_pred]
        return self.intersection / (union - self.intersection)

    def iou_matrix(self) -> np.ndarray:
        """Dense (n_true, n_pred) IoU matrix; for small cases and inspection."""
        out = np.zeros((len(self.true_ids), len(self.pred_ids)))
        out[self.pair_true, self.pair_pred] = self.iou
        return out


def _objects(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ids (without 0), their areas, and each pixel's object index (-1 = background)."""
    ids, index = np.unique(labels, return_inverse=True)
    area = np.bincount(index, minlength=len(ids))
    if len(ids) and ids[0] == 0:
        return ids[1:], area[1:], index - 1
    return ids, area, index


def overlap(true: np.ndarray, pred: np.ndarray) -> Overlap:
    """Sparse contingency table of two label images of the same shape."""
    true, pred = np.asarray(true), np.asarray(pred)
    if true.shape != pred.shape:
        raise ValueError(f"shapes differ: {true.shape} vs {pred.shape}")
    true_ids, true_area, t = _objects(true.ravel())
    pred_ids, pred_area, p = _objects(pred.ravel())
    both = (t >= 0) & (p >= 0)
    n_pred = len(pred_ids)
    key = t[both].astype(np.int64) * n_pred + p[both]
    if len(true_ids) * n_pred <= max(key.size, 1 << 20):
        counts = np.bincount(key, minlength=len(true_ids) * n_pred)
        key = np.flatnonzero(counts)
        counts = counts[key]
    else:
        key, counts = np.unique(key, return_counts=True)
    return Overlap(
        true_ids=true_ids,
        pred_ids=pred_ids,
        true_area=true_area,
        pred_area=pred_area,
        pair_true=key // max(n_pred, 1),
        pair_pred=key % max(n_pred, 1),
        intersection=counts,
    )


def match(ov: Overlap, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matched (true, pred) object indices with IoU > threshold."""
    hit = ov.iou > threshold
    t, p = ov.pair_true[hit], ov.pair_pred[hit]
    if threshold >= 0.5 or len(t) == 0:
        return t, p
    graph = csr_array(
        (np.ones(len(t), dtype=np.int8), (t, p)), shape=(len(ov.true_ids), len(ov.pred_ids))
    )
    partner = maximum_bipartite_matching(graph, perm_type="column")
    matched = np.flatnonzero(partner >= 0)
    return matched, partner[matched]


def _f1(tp: int, fp: int, fn: int) -> float:
    denominator = 2 * tp + fp + fn
    return 1.0 if denominator == 0 else 2 * tp / denominator


def aji_sums(ov: Overlap) -> tuple[int, int]:
    """(C, U) of the aggregated Jaccard index (Kumar et al. 2017, see module doc): AJI = C / U.

    Kept as sums so that a data set's pooled AJI can add them up. Each true
    object's partner is its overlapping pair of highest IoU, found for all
    objects at once by sorting the pairs.
    """
    order = np.lexsort((ov.pair_pred, -ov.iou, ov.pair_true))  # by true object, best IoU first, lowest id first
    t = ov.pair_true[order]
    best = order[np.flatnonzero(np.diff(t, prepend=-1))]
    t, p, inter = ov.pair_true[best], ov.pair_pred[best], ov.intersection[best]
    partnered = np.zeros(len(ov.pred_ids), dtype=bool)
    partnered[p] = True
    union = ov.true_area[t] + ov.pred_area[p] - inter
    alone = ov.true_area.sum() - ov.true_area[t].sum()  # true objects that overlap nothing
    return int(inter.sum()), int(union.sum() + alone + ov.pred_area[~partnered].sum())


def aji_of(intersection: int, union: int) -> float:
    """C / U; 1 when both label images are empty (U = 0)."""
    return 1.0 if union == 0 else intersection / union


def panoptic(tp: int, fp: int, fn: int, iou_sum: float) -> tuple[float, float, float]:
    """(PQ, SQ, RQ) of matches at IoU > 0.5: `tp` of them with IoUs adding up to `iou_sum`.

    RQ is F1 at 0.5; SQ is 0 without a match; all three are 1 with no object at all.
    """
    rq = _f1(tp, fp, fn)
    sq = iou_sum / tp if tp else float(tp + fp + fn == 0)
    return sq * rq, sq, rq


@dataclass(frozen=True)
class InstanceScores:
    """Instance metrics of one image (see module doc)."""

    thresholds: tuple[float, ...]
    tp: tuple[int, ...]
    fp: tuple[int, ...]
    fn: tuple[int, ...]
    f1: tuple[float, ...]
    average_f1: float
    n_true: int
    n_pred: int
    missed: int
    extra: int
    splits: int
    merges: int
    foreground_iou: float
    foreground_dice: float
    aji: float
    aji_intersection: int
    aji_union: int
    pq: float
    sq: float
    rq: float
    pq_tp: int
    pq_iou_sum: float

    def to_dict(self) -> dict:
        return asdict(self)


def instance_scores(
    true: np.ndarray,
    pred: np.ndarray,
    *,
    thresholds: Sequence[float] = THRESHOLDS,
    count_threshold: float = COUNT_THRESHOLD,
    split_merge_threshold: float = SPLIT_MERGE_THRESHOLD,
) -> InstanceScores:
    """Score predicted against true instance labels of one image."""
    ov = overlap(true, pred)
    n_true, n_pred = len(ov.true_ids), len(ov.pred_ids)
    tp = [len(match(ov, t)[0]) for t in thresholds]
    fp = [n_pred - k for k in tp]
    fn = [n_true - k for k in tp]
    f1 = [_f1(*c) for c in zip(tp, fp, fn)]
    counted = len(match(ov, count_threshold)[0])
    matched = ov.iou > PQ_THRESHOLD  # unique matches (see `match`)
    pq_tp, pq_iou_sum = int(np.count_nonzero(matched)), float(ov.iou[matched].sum())
    aji_intersection, aji_union = aji_sums(ov)

    near = ov.iou > split_merge_threshold
    partners_of_true = np.bincount(ov.pair_true[near], minlength=n_true)
    partners_of_pred = np.bincount(ov.pair_pred[near], minlength=n_pred)

    fg_true, fg_pred = np.asarray(true) != 0, np.asarray(pred) != 0
    inter = int(np.count_nonzero(fg_true & fg_pred))
    size_true, size_pred = int(fg_true.sum()), int(fg_pred.sum())
    union = size_true + size_pred - inter
    return InstanceScores(
        thresholds=tuple(float(t) for t in thresholds),
        tp=tuple(tp),
        fp=tuple(fp),
        fn=tuple(fn),
        f1=tuple(f1),
        average_f1=float(np.mean(f1)),
        n_true=n_true,
        n_pred=n_pred,
        missed=n_true - counted,
        extra=n_pred - counted,
        splits=int(np.count_nonzero(partners_of_true > 1)),
        merges=int(np.count_nonzero(partners_of_pred > 1)),
        foreground_iou=1.0 if union == 0 else inter / union,
        foreground_dice=1.0 if union == 0 else 2 * inter / (size_true + size_pred),
        aji=aji_of(aji_intersection, aji_union),
        aji_intersection=aji_intersection,
        aji_union=aji_union,
        **dict(zip(("pq", "sq", "rq"), panoptic(pq_tp, n_pred - pq_tp, n_true - pq_tp, pq_iou_sum))),
        pq_tp=pq_tp,
        pq_iou_sum=pq_iou_sum,
    )


def aggregate(scores: Iterable[InstanceScores]) -> dict:
    """Data-set summary: per-image mean F1, AJI and PQ (headline) and pooled ones; summed counts."""
    scores = list(scores)
    if not scores:
        raise ValueError("no scores to aggregate")
    thresholds = scores[0].thresholds
    if any(s.thresholds != thresholds for s in scores):
        raise ValueError("all images must be scored at the same thresholds")
    tp = np.sum([s.tp for s in scores], axis=0)
    fp = np.sum([s.fp for s in scores], axis=0)
    fn = np.sum([s.fn for s in scores], axis=0)
    f1 = np.mean([s.f1 for s in scores], axis=0)
    pooled = [_f1(*c) for c in zip(tp, fp, fn)]
    return {
        "n_images": len(scores),
        "thresholds": list(thresholds),
        "f1": f1.tolist(),
        "average_f1": float(f1.mean()),
        "f1_pooled": pooled,
        "average_f1_pooled": float(np.mean(pooled)),
        "tp": tp.tolist(),
        "fp": fp.tolist(),
        "fn": fn.tolist(),
        **{
            key: int(sum(getattr(s, key) for s in scores))
            for key in ("n_true", "n_pred", "missed", "extra", "splits", "merges")
        },
        "foreground_iou": float(np.mean([s.foreground_iou for s in scores])),
        "foreground_dice": float(np.mean([s.foreground_dice for s in scores])),
        **{key: float(np.mean([getattr(s, key) for s in scores])) for key in ("aji", "pq", "sq", "rq")},
        "aji_pooled": aji_of(sum(s.aji_intersection for s in scores), sum(s.aji_union for s in scores)),
        **dict(zip(("pq_pooled", "sq_pooled", "rq_pooled"), _pooled_panoptic(scores))),
    }


def _pooled_panoptic(scores: Sequence[InstanceScores]) -> tuple[float, float, float]:
    tp = sum(s.pq_tp for s in scores)
    fp = sum(s.n_pred for s in scores) - tp
    fn = sum(s.n_true for s in scores) - tp
    return panoptic(tp, fp, fn, sum(s.pq_iou_sum for s in scores))
