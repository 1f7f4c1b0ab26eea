"""Scoring segmentations against ground truth (`metrics`, `membranes`), evaluating and tuning
models on folders of annotated images (`run`, `tune`)."""
