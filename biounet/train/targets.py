"""Training targets built from an instance label image.

Input everywhere: an integer label image (any number of dimensions),
0 = background, every other value one instance, and optionally an ``ignore``
value marking unannotated pixels.

Ignored pixels are never an instance. In class targets they carry
``IGNORE_INDEX`` (255), which ``torch.nn.CrossEntropyLoss(ignore_index=255)``
skips; the distance target holds 0 there and callers mask the loss with
``ignore_mask`` (the weight map from ``biounet.train.weights`` is 0 there too).

Connectivity: ``connectivity=2`` (the default) means the full 3x3 (3x3x3)
neighbourhood, i.e. 8-connectivity in 2-D; ``connectivity=1`` means
4-connectivity. With the default, separated instances do not touch even
diagonally, so labelling the foreground with either connectivity recovers them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

IGNORE_INDEX = 255
"""Class-target value of ignored pixels."""


def ignore_mask(labels: np.ndarray, ignore: int | None = None) -> np.ndarray:
    """Boolean mask of the pixels to leave out of the loss."""
    labels = np.asarray(labels)
    if ignore is None:
        return np.zeros(labels.shape, dtype=bool)
    return labels == ignore


def instances_only(labels: np.ndarray, ignore: int | None = None) -> np.ndarray:
    """The label image with ignored pixels set to background (0)."""
    labels = np.asarray(labels)
    if ignore is None:
        return labels
    return np.where(labels == ignore, 0, labels).astype(labels.dtype, copy=False)


def separate_touching(
    labels: np.ndarray, *, ignore: int | None = None, connectivity: int = 2
) -> np.ndarray:
    """Instances with a 1-px background line wherever two of them touch.

    A pixel becomes background when a neighbour (per ``connectivity``) belongs
    to an instance with a *smaller* id: only one side of each contact yields,
    so the line is one pixel wide, as in the U-Net paper's Fig. 3. Which side
    yields depends on the ids, so relabelling may move the line by a pixel.
    Ignored pixels are returned as 0.
    """
    labels = instances_only(labels, ignore)
    foreground = labels != 0
    # Background must never win the minimum below: give it a value above every id.
    top = int(labels.max(initial=0)) + 1
    work = np.where(foreground, labels.astype(np.int64, copy=False), top)
    footprint = ndi.generate_binary_structure(labels.ndim, connectivity)
    lowest = ndi.grey_erosion(work, footprint=footprint, mode="constant", cval=top)
    out = labels.copy()
    out[foreground & (lowest < work)] = 0
    return out


def binary_target(
    labels: np.ndarray, *, ignore: int | None = None, connectivity: int = 2
) -> np.ndarray:
    """uint8 class map: 0 background (incl. separation lines), 1 cell, 255 ignore."""
    target = (separate_touching(labels, ignore=ignore, connectivity=connectivity) != 0)
    target = target.astype(np.uint8)
    target[ignore_mask(labels, ignore)] = IGNORE_INDEX
    return target


def three_class_target(
    labels: np.ndarray, *, ignore: int | None = None, connectivity: int = 2
) -> np.ndarray:
    """uint8 class map: 0 background, 1 interior, 2 boundary, 255 ignore.

    Boundary = ``find_boundaries(mode='inner')``: the instance pixels that
    have a neighbour (per ``connectivity``) with another value, background or
    another instance. Between touching instances both sides are boundary, so
    the interiors of neighbours never touch. A cell bordering an ignored region
    gets a boundary there too; the image edge is not a boundary.
    """
    inst = instances_only(labels, ignore)
    target = (inst != 0).astype(np.uint8)
    edges = find_boundaries(inst, connectivity=connectivity, mode="inner", background=0)
    target[edges] = 2
    target[ignore_mask(labels, ignore)] = IGNORE_INDEX
    return target


def distance_target(
    labels: np.ndarray, *, ignore: int | None = None, connectivity: int = 2
) -> np.ndarray:
    """float32 distance to the instance's border, divided by the instance's max.

    One Euclidean distance transform of the separated foreground (touching
    instances get their 1-px line first, see ``separate_touching``) gives every
    pixel its distance to the nearest non-instance pixel; each instance is then
    scaled to a maximum of 1, so every instance, small or large, has a core
    near 1 and a rim near 0. Background, separation lines and ignored pixels
    are 0. Outside the image does not count as background.
    """
    inst = separate_touching(labels, ignore=ignore, connectivity=connectivity)
    dist = ndi.distance_transform_edt(inst != 0)
    if inst.size and 0 <= inst.min() and inst.max() <= 4 * inst.size:
        index = inst.astype(np.intp, copy=False)
    else:
        index = np.unique(inst, return_inverse=True)[1].reshape(inst.shape)
    peak = np.zeros(int(index.max(initial=0)) + 1)
    np.maximum.at(peak, index.ravel(), dist.ravel())
    peak[peak == 0] = 1.0  # background (its distance is 0 anyway)
    return (dist / peak[index]).astype(np.float32)
