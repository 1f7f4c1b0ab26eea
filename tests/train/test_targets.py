from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from biounet.train.targets import (
    IGNORE_INDEX,
    binary_target,
    distance_target,
    separate_touching,
    three_class_target,
)

EIGHT = np.ones((3, 3), dtype=bool)


@pytest.fixture(scope="module")
def labels(shared_data: Path) -> np.ndarray:
    folder = shared_data / "bbbc039" / "train" / "labels"
    # the image with the most nuclei: many touching pairs
    return max((tifffile.imread(f) for f in sorted(folder.glob("*.tif"))[:10]), key=np.max)


def two_squares() -> np.ndarray:
    lab = np.zeros((10, 14), dtype=np.uint16)
    lab[2:8, 1:7] = 3
    lab[2:8, 7:13] = 5
    return lab


def test_touching_squares_get_a_one_pixel_line_on_the_higher_id_side():
    target = binary_target(two_squares())
    expected = (two_squares() != 0).astype(np.uint8)
    expected[2:8, 7] = 0
    np.testing.assert_array_equal(target, expected)


def test_separated_instances_never_touch_even_diagonally(labels):
    sep = separate_touching(labels)
    grown_max = ndi.grey_dilation(sep, footprint=EIGHT)
    lowered = np.where(sep == 0, np.iinfo(sep.dtype).max, sep)
    grown_min = ndi.grey_erosion(lowered, footprint=EIGHT)
    inside = sep != 0
    # every 3x3 neighbour of an instance pixel is background or the same instance
    assert np.all(grown_max[inside] == sep[inside])
    assert np.all(grown_min[inside] == sep[inside])


def test_separation_only_removes_pixels_that_touched_another_instance(labels):
    sep = separate_touching(labels)
    removed = (labels != 0) & (sep == 0)
    assert 0 < removed.sum() < 0.05 * (labels != 0).sum()
    grown = ndi.grey_dilation(labels, footprint=EIGHT)
    shrunk = ndi.grey_erosion(np.where(labels == 0, labels.max() + 1, labels), footprint=EIGHT)
    touches_other = (grown != labels) | (shrunk != labels)
    assert np.all(touches_other[removed])
    assert np.all(sep[sep != 0] == labels[sep != 0])


def test_components_of_binary_target_are_the_instances(labels):
    target = binary_target(labels)
    comps, n = ndi.label(target == 1, structure=EIGHT)
    # each 8-connected component lies inside one instance
    lo = ndi.minimum(labels, comps, index=np.arange(1, n + 1))
    hi = ndi.maximum(labels, comps, index=np.arange(1, n + 1))
    np.testing.assert_array_equal(lo, hi)
    assert n >= len(np.unique(labels)) - 1 - 2  # at most a couple of tiny instances vanish


def test_four_connectivity_separates_only_edge_neighbours():
    lab = np.zeros((6, 6), dtype=np.int32)
    lab[1:3, 1:3] = 1
    lab[3:5, 3:5] = 2  # touches 1 only diagonally
    np.testing.assert_array_equal(separate_touching(lab, connectivity=1), lab)
    assert separate_touching(lab, connectivity=2)[3, 3] == 0


def test_ignore_pixels_get_ignore_index_and_do_not_separate():
    lab = two_squares()
    lab[2:8, 7:13] = 999  # the right square is unannotated
    for make in (binary_target, three_class_target):
        target = make(lab, ignore=999)
        assert np.all(target[2:8, 7:13] == IGNORE_INDEX)
    np.testing.assert_array_equal(binary_target(lab, ignore=999)[2:8, 1:7], 1)
    assert distance_target(lab, ignore=999)[2:8, 7:13].max() == 0


def test_three_class_target(labels):
    target = three_class_target(labels)
    assert target.dtype == np.uint8 and set(np.unique(target)) == {0, 1, 2}
    np.testing.assert_array_equal(target == 0, labels == 0)
    interior, n = ndi.label(target == 1, structure=EIGHT)
    lo = ndi.minimum(labels, interior, index=np.arange(1, n + 1))
    hi = ndi.maximum(labels, interior, index=np.arange(1, n + 1))
    np.testing.assert_array_equal(lo, hi)  # interiors of neighbours never touch
    # boundary pixels are exactly the instance pixels with a different 8-neighbour
    grown = ndi.grey_dilation(labels, footprint=EIGHT, mode="nearest")
    shrunk = ndi.grey_erosion(labels, footprint=EIGHT, mode="nearest")
    edge = (labels != 0) & ((grown != labels) | (shrunk != labels))
    np.testing.assert_array_equal(target == 2, edge)


def test_distance_target_of_a_disc():
    yy, xx = np.mgrid[:41, :41]
    lab = ((yy - 20) ** 2 + (xx - 20) ** 2 <= 12**2).astype(np.uint8)
    dist = distance_target(lab)
    assert dist.dtype == np.float32
    assert dist[20, 20] == 1.0
    # the centre is sqrt(12^2 + 1^2) px from the nearest background pixel (32, 21);
    # a rim pixel is 1 px from the background
    assert dist[20, 8] == pytest.approx(1 / np.sqrt(145))
    assert np.all(dist[lab == 0] == 0)


def test_distance_target_per_instance(labels):
    dist = distance_target(labels)
    sep = separate_touching(labels)
    assert 0 <= dist.min() and dist.max() <= 1
    np.testing.assert_array_equal(dist[sep == 0], 0)
    ids = np.unique(sep)[1:]
    np.testing.assert_allclose(ndi.maximum(dist, sep, ids), 1.0, rtol=1e-6)
    # same as one distance transform per separated instance
    for i in ids[:: max(1, len(ids) // 15)]:
        own = ndi.distance_transform_edt(sep == i)
        np.testing.assert_allclose(dist[sep == i], (own / own.max())[sep == i], atol=1e-6)
