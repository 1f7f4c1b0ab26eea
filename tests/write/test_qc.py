"""The object table: block-by-block sums against skimage's regionprops on real nuclei."""

import numpy as np
import pytest
import tifffile
from skimage.measure import regionprops_table

from biounet.plan.blocks import Block, plan_blocks
from biounet.write.qc import ObjectTable, block_measures, measure, table_of, write_table
from tests.conftest import bbbc039_labels


@pytest.mark.parametrize("block", [64, 200, 1024])
def test_table_matches_regionprops_whatever_the_block(shared_data, block):
    labels = bbbc039_labels(shared_data, 3, "val").astype(np.int32)
    image = tifffile.imread(sorted((shared_data / "bbbc039" / "val" / "images").glob("*.tif"))[3]).astype(np.float64)
    count = int(labels.max())

    def intensity(b: Block) -> np.ndarray:
        return image[b.y0:b.y1, b.x0:b.x1]

    table = measure(labels, intensity, count, block)
    expected = regionprops_table(labels, image, properties=("label", "area", "centroid", "bbox", "intensity_mean"))
    ids = expected["label"]
    assert len(ids) > 50 and np.array_equal(np.flatnonzero(table.area), ids)
    assert np.array_equal(table.area[ids], expected["area"])
    np.testing.assert_allclose(table.sum_y[ids] / table.area[ids], expected["centroid-0"])
    np.testing.assert_allclose(table.sum_x[ids] / table.area[ids], expected["centroid-1"])
    for name, column in (("y0", "bbox-0"), ("x0", "bbox-1"), ("y1", "bbox-2"), ("x1", "bbox-3")):
        assert np.array_equal(getattr(table, name)[ids], expected[column]), name
    np.testing.assert_allclose(table.intensity[ids] / table.area[ids], expected["intensity_mean"])


def test_empty_block_reads_no_image():
    def never() -> np.ndarray:
        raise AssertionError("the image of an empty block was read")

    assert block_measures(np.zeros((8, 8), np.int32), never) is None


def test_table_grown_block_by_block_in_any_order_matches(shared_data, tmp_path):
    """`finish` adds each block as pass 2 writes it, in thread order, into a table that
    grows: the same table and the same CSV (written in row batches) as sized up front."""
    labels = bbbc039_labels(shared_data, 3, "val").astype(np.int32)
    image = tifffile.imread(sorted((shared_data / "bbbc039" / "val" / "images").glob("*.tif"))[3]).astype(np.float64)
    parts = [(b, block_measures(labels[b.y0:b.y1, b.x0:b.x1], lambda b=b: image[b.y0:b.y1, b.x0:b.x1], b.y0, b.x0))
             for b in plan_blocks((), *labels.shape, 64, 1)]
    expected = table_of(parts, int(labels.max()))
    grown = ObjectTable.empty(0)
    for i in np.random.default_rng(0).permutation(len(parts)):
        grown.add(*parts[i])
    n = len(expected.area)
    assert len(grown.area) >= n and not grown.area[n:].any()
    for name in expected.__dataclass_fields__:
        assert np.array_equal(getattr(grown, name)[:n], getattr(expected, name)), name
    write_table(expected, tmp_path / "whole.csv", 0.5, rows_per_batch=10**9)
    write_table(grown, tmp_path / "batches.csv", 0.5, rows_per_batch=7)
    text = (tmp_path / "whole.csv").read_text()
    assert text.count("\n") == int(labels.max()) + 1 and (tmp_path / "batches.csv").read_text() == text


def test_block_measures_given_the_labelled_pixels_match(shared_data):
    """Pass 2 hands over the labelled pixels it found: the same sums as finding them again."""
    labels = bbbc039_labels(shared_data, 3, "val").astype(np.int32)[:256, :256]
    image = np.arange(labels.size, dtype=np.uint16).reshape(labels.shape)
    found = block_measures(labels, lambda: image, 7, 9)
    given = block_measures(labels, lambda: image, 7, 9, np.flatnonzero(labels))
    assert len(found[0]) > 10
    for a, b in zip((found[0], found[1], *found[2], found[3]), (given[0], given[1], *given[2], given[3])):
        assert np.array_equal(a, b)
