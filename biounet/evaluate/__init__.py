"""Scoring segmentations against ground truth; see ``biounet.evaluate.metrics``."""

from biounet.evaluate.metrics import (
    THRESHOLDS,
    InstanceScores,
    MembraneScores,
    aggregate,
    instance_scores,
    membrane_scores,
    overlap,
)

__all__ = [
    "THRESHOLDS",
    "InstanceScores",
    "MembraneScores",
    "aggregate",
    "instance_scores",
    "membrane_scores",
    "overlap",
]
