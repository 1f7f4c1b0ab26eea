"""Outlines on pixel corners: rasterised back (pixel centres inside, by skimage) they give the
mask exactly; holes are interior rings and pieces separate polygons, every ring simple."""

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import polygon as draw_polygon

from biounet.measure.outline import polygons
from tests.conftest import bbbc039_labels


def ring_mask(ring: np.ndarray, shape) -> np.ndarray:
    """Pixels whose centre lies inside a ring of (x, y) corners (skimage takes (row, col)
    points at pixel indices, so the ring moves by half a pixel)."""
    rr, cc = draw_polygon(ring[:, 1] - 0.5, ring[:, 0] - 0.5, shape)
    out = np.zeros(shape, bool)
    out[rr, cc] = True
    return out


def rasterise(polys, shape) -> np.ndarray:
    """Union of the polygons, each its exterior less its holes; pieces must not overlap."""
    out = np.zeros(shape, bool)
    for exterior, *holes in polys:
        piece = ring_mask(exterior, shape)
        for hole in holes:
            piece &= ~ring_mask(hole, shape)
        assert not (out & piece).any()
        out |= piece
    return out


def signed_area(ring: np.ndarray) -> float:
    x, y = ring[:-1, 0].astype(float), ring[:-1, 1].astype(float)
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def check_rings(polys) -> None:
    """Closed, simple (no corner twice), exteriors positive and holes negative, turning at every vertex."""
    for exterior, *holes in polys:
        for k, ring in enumerate([exterior, *holes]):
            assert np.array_equal(ring[0], ring[-1])
            corners = [tuple(p) for p in ring[:-1].tolist()]
            assert len(corners) == len(set(corners)) >= 4
            assert (signed_area(ring) > 0) == (k == 0)
            steps = np.diff(np.concatenate([ring, ring[1:2]]), axis=0)
            assert np.all((steps[:-1] == 0).sum(1) == 1)  # axis-parallel edges
            assert np.all(np.abs(np.cross(steps[:-1], steps[1:])) > 0)  # no straight-through vertices


def test_random_masks_round_trip_exactly():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        shape = tuple(rng.integers(1, 14, 2))
        mask = rng.random(shape) < rng.random()
        polys = polygons(mask)
        check_rings(polys)
        assert np.array_equal(rasterise(polys, shape), mask)
        # one polygon per 4-connected piece: pieces touching at a corner stay apart
        assert len(polys) == ndimage.label(mask, structure=ndimage.generate_binary_structure(2, 1))[1]


def test_real_nuclei_round_trip_exactly(shared_data):
    labels = bbbc039_labels(shared_data, 2, "val")
    ids = np.unique(labels)[1:]
    assert len(ids) > 50
    for i in ids:
        polys = polygons(labels == i)
        check_rings(polys)
        assert np.array_equal(rasterise(polys, labels.shape), labels == i), i


def square(mask, y0, x0, size, value=True):
    mask[y0:y0 + size, x0:x0 + size] = value


@pytest.mark.parametrize("flip", [False, True])
def test_holes_islands_and_corner_contacts(flip):
    mask = np.zeros((24, 30), bool)
    square(mask, 1, 1, 13)  # a donut ...
    square(mask, 4, 4, 7, False)
    square(mask, 5, 5, 5)  # ... with an island in its hole, itself with a hole
    square(mask, 7, 7, 1, False)
    square(mask, 16, 16, 3)  # two squares touching at one corner
    square(mask, 19, 19, 3)
    mask[1:4, 20:23] = True  # a pocket closed off by a corner contact: a hole touching the exterior there
    mask[2, 21] = mask[3, 22] = False
    if flip:
        mask = mask[::-1, ::-1].copy()
    polys = polygons(mask)
    check_rings(polys)
    assert np.array_equal(rasterise(polys, mask.shape), mask)
    assert sorted(len(p) for p in polys) == [1, 1, 2, 2, 2]  # two squares; the donut, island and pocket ring
    donut = max(polys, key=lambda p: signed_area(p[0]))
    island = next(p for p in polys if len(p) == 2 and signed_area(p[0]) == 25)
    assert signed_area(donut[0]) == 169 and signed_area(donut[1]) == -49  # its hole holds the island
    assert signed_area(island[1]) == -1
    pocket = next(p for p in polys if len(p) == 2 and signed_area(p[0]) == 8)
    assert signed_area(pocket[1]) == -1


def test_empty_mask_has_no_polygons():
    assert polygons(np.zeros((5, 5), bool)) == []
