"""Instance labels: one id per object across block faces and corners, the same
ids whatever the block size, and counts that add up on real nuclei."""

import csv

import numpy as np
import pytest
import tifffile
import zarr
from scipy import ndimage as ndi

from benchmarks.common import threshold_model
from biounet.label.instances import instances_from_classes, label_instances, postprocess
from biounet.label.pass1 import Rim
from biounet.label.rules import InstanceRule
from biounet.pipeline.segment import segment
from biounet.plan.blocks import Block
from biounet.train.targets import three_class_target


def discs(shape, centres, radius):
    yy, xx = np.indices(shape)
    mask = np.zeros(shape, np.uint8)
    for cy, cx in centres:
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = 1
    return mask


# Centres on block corners, edges and inside, for blocks of 32, 64 and 128 px.
CENTRES = [(64, 64), (64, 150), (128, 128), (200, 64), (130, 230), (32, 256), (250, 250), (10, 10), (250, 5)]


@pytest.mark.parametrize("rule", [InstanceRule(1, 0, 5), InstanceRule(1, 3, 5)])
def test_one_id_per_object_whatever_the_block_size(rule):
    classes = discs((270, 290), CENTRES, 12)
    if rule.expand:  # a 3-class map: a 2 px boundary ring around each interior
        ring = discs((270, 290), CENTRES, 12) - discs((270, 290), CENTRES, 10)
        classes = classes + ring
    results = []
    for block in (32, 48, 64, 128, 512):
        out = np.zeros(classes.shape, np.int32)
        assert label_instances(classes, out, block, rule) == len(CENTRES)
        for cy, cx in CENTRES:
            ids = np.unique(out[discs(classes.shape, [(cy, cx)], 12) > 0])
            assert len(ids) == 1 and ids[0] > 0
        results.append(out)
    for out in results[1:]:
        assert np.array_equal(out, results[0])


@pytest.mark.parametrize("rule", [InstanceRule(1, 2, 20), InstanceRule(1, 4, 0), InstanceRule(2, 3, 5)])
def test_random_class_maps_give_the_same_labels_whatever_the_block_size(rule):
    """Blobs of seed class among wide boundary regions: many orphans, ties and objects
    that leave a block and come back; every block size must give the one-block result."""
    rng = np.random.default_rng(11)
    field = ndi.gaussian_filter(rng.random((150, 170)), 3)
    field = (field - field.min()) / np.ptp(field)
    classes = np.digitize(field, np.quantile(field, [0.35, 0.75])).astype(np.uint8)  # 0, 1, 2
    if rule.seed_class == 1:  # seeds in the middle band, boundary the top band
        classes = np.where(classes == 0, 0, 3 - classes).astype(np.uint8)
    whole = instances_from_classes(classes, rule)
    assert whole.max() > 10 and (whole[classes > 0] == 0).any() == (rule.min_size > 0)
    for block in (7, 16, 29, 64):
        out = np.zeros(classes.shape, np.int32)
        assert label_instances(classes, out, block, rule) == whole.max()
        assert np.array_equal(out, whole), block


def test_zarr_arrays_and_stacks(tmp_path):
    classes = np.stack([discs((200, 200), CENTRES[:4], 12), discs((200, 200), [(100, 100)], 12)])
    src = zarr.create_array(str(tmp_path / "c.zarr"), shape=classes.shape, chunks=(1, 64, 64), dtype="uint8")
    src[:] = classes
    dst = zarr.create_array(str(tmp_path / "i.zarr"), shape=classes.shape, chunks=(1, 64, 64), dtype="int32")
    n = label_instances(src, dst, 64, InstanceRule(1, 0, 5))
    assert n == 5
    out = dst[:]
    assert len(np.unique(out[0])) - 1 == 4 and len(np.unique(out[1])) - 1 == 1
    assert not set(np.unique(out[0])[1:]) & set(np.unique(out[1])[1:])  # unique across planes


def test_real_nuclei_mosaic_count_adds_up(shared_data):
    files = sorted((shared_data / "bbbc039" / "val" / "labels").glob("*.tif"))[:4]
    labels = [tifffile.imread(f) for f in files]
    targets = [three_class_target(lab) for lab in labels]
    targets = [np.where(t == 255, 0, t).astype(np.uint8) for t in targets]
    rule = InstanceRule(1, 4, 10)
    per_image = sum(int(instances_from_classes(t, rule).max()) for t in targets)
    # Fields separated by 4 px of background, so no nucleus cut by a field edge touches another.
    gap = [np.pad(t, ((0, 4), (0, 4))) for t in targets]
    mosaic = np.block([[gap[0], gap[1]], [gap[2], gap[3]]])
    out = np.zeros(mosaic.shape, np.int32)
    count = label_instances(mosaic, out, 128, rule)
    assert abs(count - per_image) <= 0.01 * per_image
    assert per_image >= 0.95 * sum(len(np.unique(lab)) - 1 for lab in labels)


def test_in_memory_postprocess_equals_blockwise(shared_data):
    lab = tifffile.imread(sorted((shared_data / "bbbc039" / "val" / "labels").glob("*.tif"))[0])
    target = three_class_target(lab)
    probs = np.eye(3, dtype=np.float32)[np.where(target == 255, 0, target)].transpose(2, 0, 1)
    whole = postprocess("watershed_3class", probs)
    out = np.zeros(lab.shape, np.int32)
    label_instances(target.clip(0, 2).astype(np.uint8) * (target != 255), out, 96, InstanceRule(1, 4, 10))
    assert np.array_equal(whole, out)


def test_segment_writes_instances_table_and_qc(tmp_path):
    shape = (300, 330)
    image = discs(shape, CENTRES, 12).astype(np.float32) * 0.9
    path = tmp_path / "discs.tif"
    tifffile.imwrite(path, image)
    model = threshold_model(tmp_path / "t.pt")
    outputs = []
    for block in (64, 128):
        out = tmp_path / f"b{block}.ome.zarr"
        r = segment(path, out, model=model, block=block, progress=False, qc_png=tmp_path / f"qc{block}.png")
        assert r.extra["objects"] == len(CENTRES)
        outputs.append(zarr.open_array(str(out), path="labels/instances/0")[:])
        assert (tmp_path / f"qc{block}.png").stat().st_size > 0
    assert np.array_equal(outputs[0], outputs[1])
    rows = list(csv.DictReader(open(tmp_path / "b64.objects.csv")))
    assert len(rows) == len(CENTRES)
    centres = sorted((float(r["centroid_y"]), float(r["centroid_x"])) for r in rows)
    expected = sorted(ndi.center_of_mass(discs(shape, [c], 12)) for c in CENTRES)  # edge discs are cut
    assert np.allclose(centres, expected, atol=0.01)
    areas = [int(r["area_px"]) for r in rows]
    assert max(areas) == int(discs((100, 100), [(50, 50)], 12).sum())
    assert all(abs(float(r["mean_intensity"]) - 0.9) < 1e-6 for r in rows)


def test_describe_ids_matches_numpy():
    """Sizes in the core, first core pixel and first seed-or-orphan pixel of every id."""
    from biounet.label.kernels import describe_ids

    rng = np.random.default_rng(3)
    for shape, core in (((64, 80), (5, 60, 3, 77)), ((7, 9), (0, 7, 0, 9)), ((4, 4), (1, 3, 1, 3))):
        local = rng.integers(0, 50, shape).astype(np.int32)
        classes = rng.integers(0, 3, shape).astype(np.uint8)
        count, n_seeds = int(local.max()), 30
        y0, y1, x0, x1 = core
        sizes, first_core, first = describe_ids(local, classes, 1, n_seeds, count, y0, y1, x0, x1)
        inner = local[y0:y1, x0:x1]
        assert np.array_equal(sizes, np.bincount(inner.ravel(), minlength=count + 1) * (np.arange(count + 1) > 0))
        values, at = np.unique(inner, return_index=True)
        expected = np.full(count + 1, inner.size)
        expected[values[values > 0]] = at[values > 0]
        assert np.array_equal(first_core[1:], expected[1:])
        eligible = (local > 0) & ((classes == 1) | (local > n_seeds))
        expected = np.full(count + 1, local.size)
        for i in np.flatnonzero(eligible.ravel())[::-1]:
            expected[local.ravel()[i]] = i
        assert np.array_equal(first[1:], expected[1:])


def test_label4_matches_scipy():
    from biounet.label.kernels import label4

    rng = np.random.default_rng(4)
    for shape, p in (((90, 110), 0.55), ((1, 17), 0.5), ((13, 1), 0.5), ((40, 40), 0.0), ((33, 47), 1.0)):
        mask = rng.random(shape) < p
        got, n = label4(mask)
        expected, m = ndi.label(mask)
        assert n == m and np.array_equal(got, expected)
    checker = (np.indices((31, 29)).sum(0) % 2).astype(bool)  # the most components a mask can have
    got, n = label4(checker)
    assert n == checker.sum() and np.array_equal(got, ndi.label(checker)[0])


def nearest_seed_labels(seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brute force over all seed pixels: each pixel's smallest squared distance to a seed
    pixel, which seed pixels lie at it (pixels x seed pixels), and the seed pixels' labels."""
    sy, sx = np.nonzero(seeds)
    ys, xs = np.indices(seeds.shape)
    d2 = (ys[..., None] - sy) ** 2 + (xs[..., None] - sx) ** 2
    best = d2.min(axis=-1)
    at_best = d2 == best[..., None]
    return best, at_best, seeds[sy, sx]


def test_grow_gives_each_pixel_a_nearest_seed_and_equals_expand_labels_without_ties():
    from skimage.segmentation import expand_labels

    from biounet.label.pass1 import grow

    rng = np.random.default_rng(5)
    for distance in (1, 2, 4, 7):
        mask = ndi.binary_dilation(rng.random((60, 80)) > 0.97, iterations=6)
        seeds, _ = ndi.label(ndi.binary_erosion(mask, iterations=4))
        got = grow(seeds.astype(np.int32), mask, distance)
        best, at_best, seed_labels = nearest_seed_labels(seeds)
        grown = mask & (seeds == 0) & (best <= distance * distance)
        assert (got[seeds > 0] == seeds[seeds > 0]).all()
        assert (got[~mask] == 0).all() and (got[mask & ~grown & (seeds == 0)] == 0).all()
        for y, x in zip(*np.nonzero(grown)):
            assert got[y, x] in set(seed_labels[at_best[y, x]].tolist())
        expected = np.where(mask, expand_labels(seeds, distance=distance), 0)
        tie = np.array([[len(set(seed_labels[at_best[y, x]].tolist())) > 1 for x in range(mask.shape[1])]
                        for y in range(mask.shape[0])])
        assert np.array_equal(got[~tie], expected[~tie])
        assert (grown & ~tie).sum() > 100 and (grown & tie).any()  # both cases are exercised
    empty = np.zeros((5, 5), np.int32)
    assert np.array_equal(grow(empty, np.ones((5, 5), bool), 3), empty)




def test_merged_roots_are_the_smallest_id_of_each_set():
    from biounet.label.merge import merged_roots

    pairs = np.array([[5, 2], [2, 7], [3, 4], [9, 9]])
    assert merged_roots(10, pairs).tolist() == [0, 1, 2, 3, 3, 2, 6, 2, 8, 9]
    assert merged_roots(3, np.zeros((0, 2), np.int64)).tolist() == [0, 1, 2]


@pytest.mark.parametrize("shape, width", [((40, 30), 3), ((5, 2), 3), ((1, 7), 1)])
def test_rim_holds_the_outer_rows_and_columns_of_a_block(shape, width):
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 50, shape, dtype=np.int32)
    seed = rng.random(shape) < 0.5
    block = Block(0, (), 100, 100 + shape[0], 200, 200 + shape[1])
    rim = Rim.of(ids, seed, width)
    assert all(band.base is None for band in rim.ids + rim.seed)  # copies: a rim must not keep its block alive
    assert rim.ids[0].dtype == np.uint16
    for side, at in (("top", 0), ("bottom", -1)):
        assert np.array_equal(rim.edge(side)[0], ids[at]) and np.array_equal(rim.edge(side)[1], seed[at])
    for side, at in (("left", 0), ("right", -1)):
        assert np.array_equal(rim.edge(side)[0], ids[:, at]) and np.array_equal(rim.edge(side)[1], seed[:, at])
    yy, xx = np.nonzero(np.ones(shape, bool))
    on_rim = (yy < width) | (yy >= shape[0] - width) | (xx < width) | (xx >= shape[1] - width)
    got = rim.at(block, yy[on_rim] + 100, xx[on_rim] + 200)
    assert np.array_equal(got, ids[yy[on_rim], xx[on_rim]])
    if not on_rim.all():
        with pytest.raises(ValueError, match="outside"):
            rim.at(block, yy[~on_rim] + 100, xx[~on_rim] + 200)
