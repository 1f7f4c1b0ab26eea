"""Network output -> uint8 class map, as the model's post-processing defines it.

Two forms of each rule, with bit-identical results: numpy (evaluation, tuning,
anything holding outputs in memory) and torch on the network's own device
(`segment`: on a GPU only the uint8 class map, and probabilities if asked for,
travel back to the host).
"""

from __future__ import annotations

import numpy as np

from biounet.model.postprocess import method_of, method_params


def class_map(probs: np.ndarray) -> np.ndarray:
    """uint8 index of the most probable class per pixel (the first on ties, as argmax);
    probs are (C, ...). One comparison per class: 3x faster than np.argmax over axis 0."""
    best = probs[0]
    out = np.zeros(best.shape, np.uint8)
    for c in range(1, probs.shape[0]):
        better = probs[c] > best
        if c == 1:
            out = better.view(np.uint8).copy()
        else:
            out[better] = c
        if c + 1 < probs.shape[0]:
            best = np.maximum(best, probs[c])
    return out


def output_classes(name: str, output, **params):
    """The uint8 class map a method reads instances from (what `segment` stores): of a
    numpy array, or of a torch tensor on its own device (bit for bit the same)."""
    p = method_params(name, params)
    tensor = hasattr(output, "device") and not isinstance(output, np.ndarray)
    if tensor:
        import torch

        def uint8(a):
            return a.to(torch.uint8)
    else:
        output = np.asarray(output)

        def uint8(a):
            return a.astype(np.uint8)
    if name == "components":
        foreground = output[0] if output.shape[0] == 1 else 1.0 - output[0]
        return uint8(foreground > p["threshold"])
    if name == "watershed_3class":
        if output.shape[0] != 3:
            raise ValueError(f"watershed_3class needs 3 classes, got {output.shape[0]}")
        return device_class_map(output) if tensor else class_map(output)
    if name == "argmax":
        if output.shape[0] == 1:
            return uint8(output[0] > p["threshold"])
        return device_class_map(output) if tensor else class_map(output)
    distance = output[0] if output.ndim == 3 else output
    if output.ndim == 3 and output.shape[0] != 1:
        raise ValueError(f"watershed_distance needs one channel, got {output.shape[0]}")
    classes = uint8(distance > p["foreground_threshold"])
    classes[distance > p["seed_threshold"]] = 2
    return classes


def model_classes(postprocess: dict | None, output):
    """The class map of a network output (numpy, or a tensor on its device) by a model
    spec's `postprocess` entry."""
    name, params = method_of(postprocess)
    return output_classes(name, output, **params)


def class_names(target_classes: list[str], head: str) -> list[str]:
    """Names of the class map's values: the model's classes, or for a regression head
    background / foreground / core."""
    return ["background", "foreground", "core"] if head == "regression" else list(target_classes)


def device_class_map(probs):
    """`class_map` in torch on the tensor's device: uint8 (first class on ties)."""
    import torch

    best = probs[0]
    out = (probs[1] > best).to(torch.uint8) if probs.shape[0] > 1 else torch.zeros_like(best, dtype=torch.uint8)
    for c in range(2, probs.shape[0]):
        best = torch.maximum(best, probs[c - 1])
        out[probs[c] > best] = c
    return out


def encode_probabilities(output, dtype: str):
    """Network output (numpy or torch) stored as float16, or as uint8 (x 255, rounded
    half to even, clipped)."""
    if isinstance(output, np.ndarray):
        if dtype == "uint8":
            return np.clip(np.rint(output * 255.0), 0, 255).astype(np.uint8)
        return output.astype(np.float16)
    import torch

    if dtype == "uint8":
        return torch.round(output * 255.0).clamp_(0, 255).to(torch.uint8)
    return output.to(torch.float16)
