"""The object table: block-by-block sums against skimage's regionprops on real nuclei."""

import numpy as np
import pytest
import tifffile
from skimage.measure import regionprops_table

from biounet.plan.blocks import Block
from biounet.write.qc import block_measures, measure
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
