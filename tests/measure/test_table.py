"""The object table: block-by-block sums against skimage's regionprops on real nuclei."""

import numpy as np
import pytest
import tifffile
from skimage.measure import regionprops_table

from biounet.label.instances import label_instances
from biounet.label.rules import InstanceRule
from biounet.measure.table import ObjectTable, TablePart, block_part, table_columns, table_of, write_table
from biounet.plan.blocks import plan_blocks
from tests.conftest import as_pixel_type, bbbc039_labels


def image_of(shared_data, index=3):
    return tifffile.imread(sorted((shared_data / "bbbc039" / "val" / "images").glob("*.tif"))[index])


def parts_of(labels, image, block):
    return [block_part(labels[b.y0:b.y1, b.x0:b.x1], image[b.y0:b.y1, b.x0:b.x1], b.y0, b.x0)
            for b in plan_blocks((), *labels.shape, block, 1)]


@pytest.mark.parametrize("block", [64, 200, 1024])
def test_table_matches_regionprops_whatever_the_block(shared_data, block):
    labels = bbbc039_labels(shared_data, 3, "val").astype(np.int32)
    image = image_of(shared_data).astype(np.float64)
    table = table_of(parts_of(labels, image, block), int(labels.max()))
    expected = regionprops_table(labels, image, properties=("label", "area", "centroid", "bbox", "intensity_mean"))
    ids = expected["label"]
    assert len(ids) > 50 and np.array_equal(np.flatnonzero(table.area), ids)
    assert np.array_equal(table.area[ids], expected["area"])
    np.testing.assert_allclose(table.sum_y[ids] / table.area[ids], expected["centroid-0"])
    np.testing.assert_allclose(table.sum_x[ids] / table.area[ids], expected["centroid-1"])
    for name, column in (("y0", "bbox-0"), ("x0", "bbox-1"), ("y1", "bbox-2"), ("x1", "bbox-3")):
        assert np.array_equal(getattr(table, name)[ids], expected[column]), name
    np.testing.assert_allclose(table.intensity[ids] / table.area[ids], expected["intensity_mean"])


def test_empty_block_has_no_part():
    assert block_part(np.zeros((8, 8), np.int32), np.ones((8, 8))) is None


def test_parts_added_in_any_order_give_the_same_table_and_csv(shared_data, tmp_path):
    """Blocks finish in any order (and on any worker): the same table, and the same CSV
    written in row batches as at once; parts survive their round trip through bytes."""
    labels = bbbc039_labels(shared_data, 3, "val").astype(np.int32)
    image = image_of(shared_data)
    parts = parts_of(labels, image, 64)
    expected = table_of(parts, int(labels.max()))
    shuffled = ObjectTable.empty(int(labels.max()), expected.intensity.dtype)
    for i in np.random.default_rng(0).permutation(len(parts)):
        part = parts[i]
        shuffled.add(None if part is None else TablePart.from_bytes(part.to_bytes()))
    for name in expected.__dataclass_fields__:
        assert np.array_equal(getattr(shuffled, name), getattr(expected, name)), name
    write_table(expected, tmp_path / "whole.csv", 0.5, rows_per_batch=10**9)
    write_table(shuffled, tmp_path / "batches.csv", 0.5, rows_per_batch=7)
    text = (tmp_path / "whole.csv").read_text()
    assert text.count("\n") == int(labels.max()) + 1 and (tmp_path / "batches.csv").read_text() == text


def test_pass2_sums_equal_measuring_the_final_labels(shared_data):
    """Pass 2 sums objects as it relabels them (several local ids per object, objects
    cut by blocks): the same parts as measuring its final labels afterwards."""
    labels = bbbc039_labels(shared_data, 5, "val")
    classes = (labels > 0).astype(np.uint8)
    image = image_of(shared_data, 5)
    out = np.zeros(labels.shape, np.int32)
    got = []
    label_instances(classes, out, 96, InstanceRule(1, 0, 10), each=lambda b, final, sums: got.append((b, sums)),
                    intensity=lambda b: image[b.y0:b.y1, b.x0:b.x1])
    assert len(got) == len(plan_blocks((), *labels.shape, 96, 1))
    for b, sums in got:
        expected = block_part(out[b.y0:b.y1, b.x0:b.x1], image[b.y0:b.y1, b.x0:b.x1], b.y0, b.x0)
        part = None if sums is None else TablePart.of(sums, 0)
        if expected is None:
            assert part is None
            continue
        for name in ("ids", "area", "sum_y", "sum_x", "intensity", "box"):
            assert np.array_equal(getattr(part, name), getattr(expected, name)), name


def exact_means(labels: np.ndarray, image: np.ndarray) -> dict[int, float]:
    """Mean pixel value per object from Python integer sums (one correctly rounded division)."""
    sums: dict[int, list[int]] = {}
    for i, v in zip(labels[labels > 0].tolist(), image[labels > 0].tolist()):
        sums.setdefault(i, [0, 0])
        sums[i][0] += int(v)
        sums[i][1] += 1
    return {i: total / area for i, (total, area) in sums.items()}


@pytest.mark.parametrize("dtype", ["int8", "int16", "uint32", "int32", "uint64", "int64", ">i8", "bool"])
def test_integer_intensities_are_exact_whatever_the_type(shared_data, dtype):
    """Integer pixels of any width (values beyond float64's exact integers included, either
    byte order) and bool: each object's mean is its exact sum divided once, whatever the
    blocks that cut it."""
    labels = bbbc039_labels(shared_data, 3, "val").astype(np.int32)
    image = as_pixel_type(image_of(shared_data), dtype)
    expected = exact_means(labels, image)
    ids = np.array(sorted(expected))
    for block in (64, 1024):
        table = table_of(parts_of(labels, image, block), int(labels.max()))
        _, columns = table_columns(table)
        assert np.array_equal(columns[0], ids)
        assert np.array_equal(columns[-1], np.round([expected[i] for i in ids], 3)), block
        assert table.intensity.dtype == np.int64


def test_float16_intensities_are_summed_in_float64(shared_data):
    """float16 pixels (which the compiled loops cannot read) are measured, in float64."""
    labels = bbbc039_labels(shared_data, 3, "val").astype(np.int32)
    image = image_of(shared_data).astype(np.float16)
    table = table_of(parts_of(labels, image, 64), int(labels.max()))
    assert table.intensity.dtype == np.float64
    expected = regionprops_table(labels, image.astype(np.float64), properties=("label", "intensity_mean"))
    np.testing.assert_allclose(table.intensity[expected["label"]] / table.area[expected["label"]],
                               expected["intensity_mean"], rtol=1e-12)
