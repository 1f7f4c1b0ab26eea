"""Membrane metrics of the ISBI 2012 EM segmentation challenge, as the challenge computed them.

Definitions: Arganda-Carreras et al. 2015, "Crowdsourcing the creation of
image segmentation algorithms for connectomics" (Front. Neuroanat. 9:142),
and the challenge's Fiji code (trainableSegmentation.metrics: RandError,
PixelError, VariationOfInformation). Labels: 1 = cell interior, 0 = membrane.
The proposal is a probability map of the interior (or a 0/1 map); at each
threshold t of THRESHOLDS its pixels > t are interior.

- Pixel error = 1 - the maximal F-score of pixel similarity: at each
  threshold, precision and recall of the interior class, with TP, FP and FN
  summed over the images; the best threshold counts (PixelError).
- Rand error = 1 - the maximal F-score of the foreground-restricted Rand
  index (the challenge's "Rand error" of 2012-2015, the one the U-Net paper
  reports): segments are the 4-connected components of the interiors; pixel
  pairs are counted only over true interior pixels (the ground truth's
  membranes are pruned out); a predicted membrane pixel counts as a segment of
  its own. With p_ij the fraction of true-interior pixels in true segment i
  and predicted segment j, t_i and s_j the row and column sums,
  Rand split score (recall) = sum p_ij^2 / sum t_i^2 and Rand merge score
  (precision) = sum p_ij^2 / sum s_j^2 (eq. 3 and 4 of the paper, alpha 0.5 for
  the F-score). TP, FP and FN (pair counts) are summed over the images before
  the F-score, as RandError.getForegroundRestrictedRandIndexMaximalFScore does.
- V_Rand and V_Info: the challenge's final scores (higher is better): the
  proposal's membranes are first thinned to 1-pixel lines by a watershed of the
  binarised proposal (the classic Vincent-Soille flooding, 4-connected, as
  Fiji's WatershedTransform2D), then V_Rand is the Rand F-score above and
  V_Info = I(S;T) / ((H(S) + H(T)) / 2), both per image, averaged over the
  images, maximal over the thresholds (getMaximalVRandAfterThinning,
  getMaximalVInfoAfterThinning).

THRESHOLDS are the challenge's: 0.0 to 1.0 in steps of 0.1, accumulated in
floating point as Fiji's loop does (so the last one is 0.9999999999999999). A
0/1 or integer proposal (a class map) is scored at its only threshold (> 0).
Everything is computed per image as sufficient statistics per threshold
(`membrane_curves`) and combined over a data set by `membrane_summary`: the
maxima are over the data set's thresholds, not per image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from numba import njit
from scipy import ndimage as ndi


def _fiji_thresholds(step: float = 0.1, top: float = 1.0) -> tuple[float, ...]:
    values, th = [], 0.0
    while th <= top:
        values.append(th)
        th += step
    return tuple(values)


THRESHOLDS: tuple[float, ...] = _fiji_thresholds()
FOUR = ndi.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class MembraneCurves:
    """Sufficient statistics of one image at each threshold (rows follow `thresholds`).

    pixel: (T, 3) TP, FP, FN pixel counts of the interior class; rand: (T, 3)
    TP, FP, FN pixel-pair counts of the foreground-restricted Rand index (N^2
    normalisation: ordered pairs, a pixel paired with itself included); v_rand,
    v_info: (T,) the image's scores after thinning.
    """

    thresholds: tuple[float, ...]
    pixel: np.ndarray
    rand: np.ndarray
    v_rand: np.ndarray
    v_info: np.ndarray


@dataclass(frozen=True)
class MembraneScores:
    """ISBI 2012 scores of an image or a data set (see the module doc).

    rand_precision (the merge score: merges lower it) and rand_recall (the split
    score) are those at `rand_threshold`, the threshold of the maximal Rand
    F-score; rand_error = 1 - that F-score. v_rand and v_info: higher is better.
    """

    pixel_error: float
    rand_error: float
    rand_precision: float
    rand_recall: float
    rand_threshold: float
    v_rand: float
    v_info: float

    def to_dict(self) -> dict:
        return asdict(self)


def f_score(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    """(precision, recall, F) with Fiji's conventions: no positives predicted -> precision 1, none true ->
    recall 1, precision + recall = 0 -> F 0."""
    precision = 1.0 if tp + fp == 0 else float(tp / (tp + fp))
    recall = 1.0 if tp + fn == 0 else float(tp / (tp + fn))
    return precision, recall, (0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))


def contingency(true_segments: np.ndarray, pred_segments: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true id, predicted id, count) of every pixel pair class over the true interior (true id > 0);
    predicted id 0 = a predicted membrane pixel."""
    inside = true_segments > 0
    t = true_segments[inside].astype(np.int64)
    p = pred_segments[inside].astype(np.int64)
    n_pred = int(p.max()) + 1 if p.size else 1
    key = t * n_pred + p
    if key.size and int(key.max()) < max(key.size, 1 << 20):
        counts = np.bincount(key)
        key = np.flatnonzero(counts)
        counts = counts[key]
    else:
        key, counts = np.unique(key, return_counts=True)
    return key // n_pred, key % n_pred, counts.astype(np.float64)


def rand_counts(true_segments: np.ndarray, pred_segments: np.ndarray) -> tuple[float, float, float]:
    """TP, FP, FN pixel pairs of the foreground-restricted Rand index, N^2 normalisation, a predicted membrane
    pixel a segment of its own (RandError.getForegroundRestrictedRandIndexStatsN2)."""
    t, p, c = contingency(true_segments, pred_segments)
    alone = float(c[p == 0].sum())
    rows = np.bincount(t, weights=c)
    cols = np.bincount(p[p > 0], weights=c[p > 0])
    both = float(np.sum(c[p > 0] ** 2)) + alone
    in_true = float(np.sum(rows**2))
    in_pred = float(np.sum(cols**2)) + alone
    return both, in_pred - both, in_true - both


def _xlogx(values: np.ndarray) -> float:
    values = values[values > 0]
    return float(np.sum(values * np.log(values)))


def v_info_score(true_segments: np.ndarray, pred_segments: np.ndarray) -> float:
    """V_Info of one image: I(S;T) / ((H(S) + H(T)) / 2) over the true interior, a predicted membrane pixel a
    segment of its own (VariationOfInformation.foregroundRestrictedFscore).

    Where a partition has no entropy Fiji's conventions apply (a score of 0),
    except that two single-segment partitions are identical and score 1.
    """
    t, p, c = contingency(true_segments, pred_segments)
    n = float(c.sum())
    if n == 0:
        return 1.0
    alone = float(c[p == 0].sum()) / n
    h_true = -_xlogx(np.bincount(t, weights=c) / n)
    h_pred = -(_xlogx(np.bincount(p[p > 0], weights=c[p > 0]) / n) - alone * np.log(n))
    joint = -(_xlogx(c[p > 0] / n) - alone * np.log(n))
    if h_true <= 0 and h_pred <= 0:
        return 1.0
    if h_true <= 0 or h_pred <= 0:
        return 0.0
    mutual = h_true + h_pred - joint
    precision, recall = mutual / h_true, mutual / h_pred
    return 0.0 if precision + recall <= 0 else 2 * precision * recall / (precision + recall)


INIT, MASK, WSHED, INQUEUE = -1, -2, 0, -3


@njit(cache=True, nogil=True)
def _flood(level_of: np.ndarray, labels: np.ndarray, level: int, queue: np.ndarray, flag: bool,
           current: int) -> tuple[bool, int]:
    """One grey level of the Vincent-Soille watershed as WatershedTransform2D floods it (4-connected,
    pixels in Fiji's order: x outer, y inner)."""
    h, w = level_of.shape
    dy = (0, -1, 0, 1)  # Neighborhood2DC4: (x-1, y), (x, y-1), (x+1, y), (x, y+1)
    dx = (-1, 0, 1, 0)
    head = tail = 0
    for x in range(w):
        for y in range(h):
            if level_of[y, x] != level:
                continue
            labels[y, x] = MASK
            for k in range(4):
                v, u = y + dy[k], x + dx[k]
                if 0 <= v < h and 0 <= u < w and labels[v, u] >= WSHED:
                    queue[tail] = y * w + x
                    tail += 1
                    labels[y, x] = INQUEUE
                    break
    while head < tail:
        y, x = queue[head] // w, queue[head] % w
        head += 1
        for k in range(4):
            v, u = y + dy[k], x + dx[k]
            if not (0 <= v < h and 0 <= u < w):
                continue
            other = labels[v, u]
            if other > 0:
                if labels[y, x] == INQUEUE or (labels[y, x] == WSHED and flag):
                    labels[y, x] = other
                elif labels[y, x] > 0 and labels[y, x] != other:
                    labels[y, x] = WSHED
                    flag = False
            elif other == WSHED:
                if labels[y, x] == INQUEUE:
                    labels[y, x] = WSHED
                    flag = True
            elif other == MASK:
                labels[v, u] = INQUEUE
                queue[tail] = v * w + u
                tail += 1
    for x in range(w):  # new minima at this level
        for y in range(h):
            if level_of[y, x] != level or labels[y, x] != MASK:
                continue
            current += 1
            labels[y, x] = current
            head = tail = 0
            queue[tail] = y * w + x
            tail += 1
            while head < tail:
                b, a = queue[head] // w, queue[head] % w
                head += 1
                for k in range(4):
                    v, u = b + dy[k], a + dx[k]
                    if 0 <= v < h and 0 <= u < w and labels[v, u] == MASK:
                        labels[v, u] = current
                        queue[tail] = v * w + u
                        tail += 1
    return flag, current


def thin(interior: np.ndarray) -> np.ndarray:
    """Segments of a binary proposal with its membranes thinned to 1-pixel lines (label 0).

    The classic watershed of the binarised proposal (membranes high) that
    Fiji's WatershedTransform2D computes with 4-connectivity: the interiors'
    4-connected components are the basins, the membranes are flooded from them
    breadth first, and pixels where two basins meet form the lines.
    """
    level_of = np.where(np.asarray(interior, bool), 0, 1).astype(np.uint8)
    labels = np.full(level_of.shape, INIT, np.int32)
    queue = np.empty(level_of.size, np.int64)
    flag, current = False, 0
    for level in np.unique(level_of):  # from the lowest level present (Fiji's h_min) up
        flag, current = _flood(level_of, labels, int(level), queue, flag, current)
    labels[labels == INIT] = 0
    return labels


def membrane_curves(true: np.ndarray, proposal: np.ndarray, *, valid: np.ndarray | None = None,
                    thresholds: Sequence[float] = THRESHOLDS) -> MembraneCurves:
    """Per-threshold statistics of one image (see `MembraneCurves`).

    true: 1 (or any non-zero) = cell interior, 0 = membrane. proposal: the
    interior probability (floats), or a 0/1 or integer map (then only its one
    threshold, > 0). valid: pixels to score (e.g. not ignored); the others
    count nowhere.
    """
    true, proposal = np.asarray(true) != 0, np.asarray(proposal)
    if true.shape != proposal.shape or true.ndim != 2:
        raise ValueError(f"membrane scores need two 2-D images of one shape: {true.shape} vs {proposal.shape}")
    if not np.issubdtype(proposal.dtype, np.floating):
        proposal, thresholds = (proposal != 0).astype(np.float32), (0.0,)
    if valid is not None:
        valid = np.asarray(valid, bool)
        true = true & valid
    true_segments = ndi.label(true, FOUR)[0]
    pixel, rand, v_rand, v_info = [], [], [], []
    for th in thresholds:
        interior = proposal > th
        scored = interior if valid is None else interior & valid
        outside = ~true if valid is None else ~true & valid
        pixel.append((np.count_nonzero(scored & true), np.count_nonzero(scored & outside),
                      np.count_nonzero(~interior & true)))
        rand.append(rand_counts(true_segments, ndi.label(interior, FOUR)[0]))
        thinned = thin(interior)
        v_rand.append(f_score(*rand_counts(true_segments, thinned))[2])
        v_info.append(v_info_score(true_segments, thinned))
    return MembraneCurves(tuple(float(t) for t in thresholds), np.array(pixel, np.float64),
                          np.array(rand, np.float64), np.array(v_rand), np.array(v_info))


def membrane_summary(curves: Sequence[MembraneCurves]) -> MembraneScores:
    """The scores of a data set (or of one image): statistics combined over the images at each threshold,
    then the best threshold of each score."""
    curves = list(curves)
    if not curves:
        raise ValueError("no membrane scores to combine")
    thresholds = curves[0].thresholds
    if any(c.thresholds != thresholds for c in curves):
        raise ValueError("all images must be scored at the same thresholds (probabilities, or all class maps)")
    pixel = sum(c.pixel for c in curves)
    rand = sum(c.rand for c in curves)
    pixel_f = [f_score(*row)[2] for row in pixel]
    rand_prf = [f_score(*row) for row in rand]
    best = int(np.argmax([f for _, _, f in rand_prf]))
    precision, recall, f = rand_prf[best]
    return MembraneScores(
        pixel_error=float(1.0 - max(pixel_f)),
        rand_error=float(1.0 - f),
        rand_precision=float(precision),
        rand_recall=float(recall),
        rand_threshold=float(thresholds[best]),
        v_rand=float(np.max(np.mean([c.v_rand for c in curves], axis=0))),
        v_info=float(np.max(np.mean([c.v_info for c in curves], axis=0))),
    )


def membrane_scores(true: np.ndarray, proposal: np.ndarray, *, valid: np.ndarray | None = None,
                    thresholds: Sequence[float] = THRESHOLDS) -> MembraneScores:
    """The ISBI 2012 scores of one image (see the module doc)."""
    return membrane_summary([membrane_curves(true, proposal, valid=valid, thresholds=thresholds)])
