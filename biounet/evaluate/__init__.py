"""Scoring segmentations against ground truth; see ``biounet.evaluate.metrics``."""

from biounet.evaluate.membranes import MembraneScores, membrane_scores
from biounet.evaluate.metrics import THRESHOLDS, InstanceScores, aggregate, instance_scores, overlap

__all__ = [
    "THRESHOLDS",
    "InstanceScores",
    "MembraneScores",
    "aggregate",
    "instance_scores",
    "membrane_scores",
    "overlap",
]
