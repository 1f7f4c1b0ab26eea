from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from biounet.evaluate.metrics import instance_scores
from biounet.label.instances import (
    POSTPROCESS,
    components,
    postprocess,
    remove_small,
    watershed_3class,
    watershed_distance,
)
from biounet.predict.classes import class_map
from biounet.train.targets import binary_target, distance_target, three_class_target


@pytest.fixture(scope="module")
def labels(shared_data: Path) -> np.ndarray:
    folder = shared_data / "bbbc039" / "train" / "labels"
    return tifffile.imread(sorted(folder.glob("*.tif"))[9])  # 191 nuclei, many touching


def one_hot(target: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[target].transpose(2, 0, 1)


def soften(probs: np.ndarray, blur: float, seed: int = 0) -> np.ndarray:
    """Blurred, noisy probabilities: a plausible network output."""
    rng = np.random.default_rng(seed)
    noisy = ndi.gaussian_filter(probs, (0, blur, blur)) + rng.normal(0, 0.05, probs.shape)
    noisy = np.clip(noisy, 1e-3, None)
    return (noisy / noisy.sum(0)).astype(np.float32)


def test_registry_names_and_dispatch(labels):
    assert set(POSTPROCESS) == {"components", "watershed_3class", "watershed_distance"}
    probs = one_hot(binary_target(labels), 2)
    np.testing.assert_array_equal(postprocess("components", probs), components(probs))
    with pytest.raises(ValueError, match="unknown"):
        postprocess("nope", probs)


def test_class_map_is_argmax():
    probs = np.array([[[0.7, 0.1]], [[0.2, 0.3]], [[0.1, 0.6]]])
    out = class_map(probs)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[0, 2]])
    rng = np.random.default_rng(1)
    for classes in (1, 2, 3, 5):
        probs = rng.random((classes, 40, 30)).astype(np.float32)
        probs[:, :10] = 0.5  # ties go to the first class, as with argmax
        np.testing.assert_array_equal(class_map(probs), np.argmax(probs, axis=0))


def test_remove_small_renumbers():
    lab = np.array([[1, 1, 0, 5, 0, 7, 7, 7]])
    np.testing.assert_array_equal(remove_small(lab, 2), [[1, 1, 0, 0, 0, 2, 2, 2]])
    assert remove_small(lab, 2).dtype == np.int32


@pytest.mark.parametrize(
    "name, make, n_classes, min_f1_05, min_f1_09",
    [
        ("components", binary_target, 2, 0.99, 0.97),
        ("watershed_3class", three_class_target, 3, 0.99, 0.99),
        ("watershed_distance", distance_target, None, 0.99, 0.95),
    ],
)
def test_ideal_output_gives_back_the_instances(
    labels, name, make, n_classes, min_f1_05, min_f1_09
):
    target = make(labels)
    output = target[None] if n_classes is None else one_hot(target, n_classes)
    pred = POSTPROCESS[name](output)
    assert pred.dtype == np.int32 and pred.shape == labels.shape
    scores = instance_scores(labels, pred)
    assert scores.f1[0] >= min_f1_05
    assert scores.f1[-1] >= min_f1_09
    assert scores.merges == 0


# A 1-px gap does not survive a blur of 1 px (the pair merges), a 2-px boundary does.
@pytest.mark.parametrize("name, make, n, blur", [
    ("components", binary_target, 2, 0.5), ("watershed_3class", three_class_target, 3, 1.0)
])
def test_blurred_noisy_probabilities_still_work(labels, name, make, n, blur):
    pred = POSTPROCESS[name](soften(one_hot(make(labels), n), blur))
    assert instance_scores(labels, pred).average_f1 > 0.9


def test_touching_pair_is_split_by_three_class_watershed():
    lab = np.zeros((20, 30), dtype=np.int32)
    lab[5:15, 3:15], lab[5:15, 15:27] = 1, 2
    pred = watershed_3class(one_hot(three_class_target(lab), 3))
    assert len(np.unique(pred)) == 3
    assert instance_scores(lab, pred).f1[-1] == 1.0
    # without the boundary class the pair is one component
    merged = components(one_hot((lab > 0).astype(np.uint8), 2))
    assert merged.max() == 1


def test_foreground_without_seed_becomes_its_own_object():
    probs = np.zeros((3, 20, 20), dtype=np.float32)
    probs[0] = 1
    probs[:, 2:8, 2:8] = np.array([0, 0, 1.0])[:, None, None]  # all boundary, no interior
    probs[:, 10:18, 10:18] = np.array([0, 1.0, 0])[:, None, None]
    pred = watershed_3class(probs)
    assert pred.max() == 2
    assert len(np.unique(pred[2:8, 2:8])) == 1 and pred[2, 2] > 0


def test_distance_watershed_on_a_synthetic_pair():
    yy, xx = np.mgrid[:40, :60]
    lab = np.zeros((40, 60), dtype=np.int32)
    lab[(yy - 20) ** 2 + (xx - 20) ** 2 <= 100] = 1
    lab[(yy - 20) ** 2 + (xx - 38) ** 2 <= 100] = 2  # overlapping discs: touching cells
    pred = watershed_distance(distance_target(lab))
    assert pred.max() == 2
    assert instance_scores(lab, pred).f1[0] == 1.0
    with pytest.raises(ValueError):
        watershed_distance(np.zeros((2, 4, 4)))


def test_small_objects_are_dropped_and_empty_input_gives_empty_labels():
    probs = np.zeros((2, 30, 30), dtype=np.float32)
    probs[0] = 1
    probs[:, 1:3, 1:3] = np.array([0, 1.0])[:, None, None]  # 4 px
    probs[:, 10:20, 10:20] = np.array([0, 1.0])[:, None, None]
    assert components(probs).max() == 1
    assert components(probs, min_size=1).max() == 2
    empty = np.zeros((1, 16, 16), dtype=np.float32)
    assert components(empty).max() == 0 and watershed_distance(empty).max() == 0
