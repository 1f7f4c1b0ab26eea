"""Training data: pairing files, targets from instance ids and class masks, patches."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr

from biounet.read.files import DataError, find_pairs, is_class_mask, stem, to_instances
from biounet.train.augment import AugmentParams
from biounet.train.data import (
    LazySource,
    PatchDataset,
    TargetSpec,
    array_source,
    batch_seed,
    load_examples,
    load_sources,
    make_loader,
    make_targets,
)
from biounet.train.targets import IGNORE_INDEX
from biounet.train.weights import weight_map

PERCENTILE = {"method": "percentile", "low": 1.0, "high": 99.8}


def bbbc039(shared_data: Path, index: int) -> tuple[np.ndarray, np.ndarray]:
    root = shared_data / "bbbc039" / "train"
    name = sorted((root / "labels").glob("*.tif"))[index].name
    return tifffile.imread(root / "images" / name), tifffile.imread(root / "labels" / name)


def isbi(shared_data: Path, index: int) -> tuple[np.ndarray, np.ndarray]:
    root = shared_data / "isbi2012" / "train"
    return tifffile.imread(root / "images" / f"slice{index:02d}.tif"), tifffile.imread(root / "labels" / f"slice{index:02d}.tif")


def test_stem_and_pairs(tmp_path):
    assert stem("a.ome.tif") == stem("a.tif") == stem("a.png") == stem("a.zarr") == stem("a.ome.zarr") == "a"
    (tmp_path / "im").mkdir()
    (tmp_path / "lab").mkdir()
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    tifffile.imwrite(tmp_path / "im" / "a.ome.tif", img)
    tifffile.imwrite(tmp_path / "im" / "b.tif", img)
    tifffile.imwrite(tmp_path / "im" / "c.tif", img)  # no labels: left out
    (tmp_path / "im" / "notes.txt").write_text("not an image")
    tifffile.imwrite(tmp_path / "lab" / "a.tif", img > 30)
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "lab" / "b.png", (img > 30).astype(np.uint8))
    pairs = find_pairs(tmp_path / "im", tmp_path / "lab")
    assert [(n, i.name, l.name) for n, i, l in pairs] == [("a", "a.ome.tif", "a.tif"), ("b", "b.tif", "b.png")]
    examples = load_examples(tmp_path / "im", tmp_path / "lab")
    assert examples[1].image.shape == (1, 8, 8) and examples[1].labels.dtype == np.uint8
    with pytest.raises(DataError, match="two folders"):
        find_pairs(tmp_path / "lab", tmp_path / "im" / "c.tif")  # folder vs file
    (tmp_path / "other").mkdir()
    tifffile.imwrite(tmp_path / "other" / "z.tif", img)
    with pytest.raises(DataError, match="no image in"):
        find_pairs(tmp_path / "im", tmp_path / "other")


def test_class_mask_becomes_its_own_binary_target(shared_data):
    _, labels = isbi(shared_data, 0)
    assert is_class_mask(labels)
    inst = to_instances(labels)
    assert inst.max() > 50  # cells separated by membranes
    t = make_targets(labels, TargetSpec("binary"))
    np.testing.assert_array_equal(t.target, labels)  # 1 = interior, 0 = membrane: unchanged
    assert t.weight.max() > 5  # border term between neighbouring cells
    assert t.mask.all()


def test_instances_binary_target_separates_touching(shared_data):
    _, labels = bbbc039(shared_data, 9)
    assert not is_class_mask(labels)
    t = make_targets(labels, TargetSpec("binary"))
    assert set(np.unique(t.target)) == {0, 1}
    assert (t.target == 1).sum() < (labels != 0).sum()  # separation lines
    np.testing.assert_allclose(t.weight, weight_map(labels), atol=1e-6)
    three = make_targets(labels, TargetSpec("3class"))
    assert set(np.unique(three.target)) == {0, 1, 2} and three.weight.min() > 0
    dist = make_targets(labels, TargetSpec("distance"))
    assert dist.target.dtype == np.float32 and 0 <= dist.target.min() and dist.target.max() == 1
    np.testing.assert_array_equal(dist.weight, 1.0)


@pytest.mark.parametrize("kind", ["binary", "3class", "distance"])
def test_ignore_region(shared_data, kind):
    _, labels = bbbc039(shared_data, 0)
    labels = labels.astype(np.int32)
    labels[:, :200] = 9999  # unannotated
    t = make_targets(labels, TargetSpec(kind, ignore=9999))
    assert not t.mask[:, :200].any() and t.mask[:, 200:].all()
    assert (t.weight[:, :200] == 0).all()
    if kind != "distance":
        assert (t.target[:, :200] == IGNORE_INDEX).all()
        assert IGNORE_INDEX not in t.target[:, 200:]
    # a class mask with an ignore value
    mask = (labels != 0).astype(np.int32)
    mask[:, :200] = 7
    assert is_class_mask(mask, ignore=7)
    assert make_targets(mask, TargetSpec(kind, ignore=7)).mask.sum() == labels[:, 200:].size


def _source(shared_data, index=3, spec=TargetSpec("binary")):
    image, labels = bbbc039(shared_data, index)
    return array_source("x", image[None], labels, spec, PERCENTILE)


def test_patches_without_augmentation_are_aligned_crops(shared_data):
    src = _source(shared_data)
    ds = PatchDataset([src], tile=252, out=68, batch_size=3, seed=5, augment=None)
    image, target, weight, mask = ds.batch(7)
    assert image.shape == (3, 1, 252, 252) and target.shape == weight.shape == mask.shape == (3, 68, 68)
    assert target.dtype == torch.int64 and weight.dtype == torch.float32 and mask.dtype == torch.bool
    rng = batch_seed(5, 7)
    p = 252  # reflect-padded copies, indexed from -p
    padded = np.pad(src.image, ((0, 0), (p, p), (p, p)), mode="reflect")
    for i, (k, y0, x0) in enumerate(ds.sample(rng) for _ in range(3)):
        np.testing.assert_array_equal(image[i].numpy(), padded[:, p + y0 : p + y0 + 252, p + x0 : p + x0 + 252])
        m = 92  # the output part lies inside the image
        np.testing.assert_array_equal(target[i].numpy(), src.targets.target[y0 + m : y0 + m + 68, x0 + m : x0 + m + 68])
        np.testing.assert_array_equal(weight[i].numpy(), src.targets.weight[y0 + m : y0 + m + 68, x0 + m : x0 + m + 68])
    # output windows lie inside the image; inputs are mirrored at the edges
    assert all(0 <= y0 + 92 and y0 + 92 + 68 <= 520 for _, y0, _ in (ds.sample(batch_seed(1, j)) for j in range(50)))


def test_augmented_targets_follow_the_image(shared_data):
    """Image = its own target: after warping, the image's centre must still equal the target."""
    _, labels = bbbc039(shared_data, 9)
    spec = TargetSpec("binary")
    t = make_targets(labels, spec)
    src = array_source("self", t.target[None].astype(np.float32), labels, spec, {"method": "none"})
    params = AugmentParams(scale_range=(1, 1), shift_range=(0, 0), gamma_range=(1, 1), max_rotation_deg=30)
    ds = PatchDataset([src], tile=348, out=164, batch_size=4, seed=1, augment=params)
    image, target, weight, mask = ds.batch(0)
    centre = image[:, 0, 92:256, 92:256]
    agree = ((centre > 0.5).long() == target).float().mean()
    assert agree > 0.98, agree
    assert set(target.unique().tolist()) <= {0, 1} and mask.all()
    # same index, same batch; another index, another batch
    again = ds.batch(0)
    assert all(torch.equal(a, b) for a, b in zip((image, target, weight, mask), again))
    assert not torch.equal(ds.batch(1)[0], image)


def test_foreground_bias_and_sparse_labels(shared_data):
    image, labels = bbbc039(shared_data, 3)
    labels = labels.astype(np.int32)
    labels[:, 100:] = 65535  # only a 100 px strip annotated
    spec = TargetSpec("binary", ignore=65535)
    src = array_source("sparse", image[None], labels, spec, PERCENTILE)
    sparse = PatchDataset([src], tile=220, out=36, batch_size=16, seed=0, augment=None, sparse=True)
    assert all(sparse.batch(i)[3].flatten(1).any(1).all() for i in range(3))
    plain = PatchDataset([src], tile=220, out=36, batch_size=16, seed=0, augment=None)
    assert not all(plain.batch(i)[3].flatten(1).any(1).all() for i in range(3))
    biased = PatchDataset([_source(shared_data, 3)], tile=188, out=4, batch_size=32, seed=0, augment=None,
                          foreground_bias=1.0)
    assert (biased.batch(0)[1].flatten(1) == 1).any(1).all()


def test_stream_is_the_same_with_workers(shared_data):
    src = _source(shared_data)
    ds = PatchDataset([src], tile=220, out=36, batch_size=2, seed=3, start=5, stop=11)
    alone = list(make_loader(ds, 0))
    assert len(alone) == 6
    with_workers = list(make_loader(ds, 2))
    for a, b in zip(alone, with_workers):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    direct = ds.batch(8)
    assert all(torch.equal(x, y) for x, y in zip(alone[3], direct))


def test_lazy_source_matches_in_memory(shared_data, tmp_path):
    image, labels = isbi(shared_data, 1)
    for name, arr in (("img.zarr", image), ("lab.zarr", labels)):
        z = zarr.create_array(str(tmp_path / name), shape=arr.shape, dtype=arr.dtype, chunks=(128, 128))
        z[:] = arr
    spec = TargetSpec("binary")
    (lazy,) = load_sources(tmp_path / "img.zarr", tmp_path / "lab.zarr", spec, PERCENTILE, lazy_pixels=0)
    assert isinstance(lazy, LazySource) and lazy.shape == (512, 512) and lazy.channels == 1
    full = array_source("m", image[None], labels, spec, PERCENTILE)
    full.targets = make_targets(labels, spec, weights=lazy.class_weights)
    for y0, x0 in [(-60, -30), (100, 200), (250, 280)]:
        a_img, a_t = lazy.window(y0, y0 + 220, x0, x0 + 220)
        b_img, b_t = full.window(y0, y0 + 220, x0, x0 + 220)
        np.testing.assert_array_equal(a_img, b_img)
        if y0 < 0:
            continue  # mirrored labels: a cell and its reflection become one, so targets differ there
        np.testing.assert_array_equal(a_t.target, b_t.target)
        np.testing.assert_allclose(a_t.weight, b_t.weight, atol=1e-4)
    ds = PatchDataset([lazy], tile=220, out=36, batch_size=2, seed=0, start=0, stop=4)
    batches = list(make_loader(ds, 2))  # reopened inside the worker processes
    assert len(batches) == 4 and batches[0][0].shape == (2, 1, 220, 220)


def test_multichannel_and_errors(shared_data, tmp_path):
    image, labels = bbbc039(shared_data, 0)
    (tmp_path / "im").mkdir()
    (tmp_path / "lab").mkdir()
    tifffile.imwrite(tmp_path / "im" / "a.tif", np.stack([image, image // 2, 4095 - image]), metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "lab" / "a.tif", labels)
    spec = TargetSpec("binary")
    (src,) = load_sources(tmp_path / "im", tmp_path / "lab", spec, PERCENTILE)
    assert src.channels == 3 and src.image.shape == (3, 520, 696)
    (two,) = load_sources(tmp_path / "im", tmp_path / "lab", spec, PERCENTILE, channels=[0, 2])
    assert two.channels == 2
    np.testing.assert_allclose(two.image[0], src.image[0])
    with pytest.raises(DataError, match="channel"):
        load_sources(tmp_path / "im", tmp_path / "lab", spec, PERCENTILE, channels=[5])
    tifffile.imwrite(tmp_path / "lab" / "a.tif", labels[:500])
    with pytest.raises(DataError, match="labels are"):
        load_sources(tmp_path / "im", tmp_path / "lab", spec, PERCENTILE)
    with pytest.raises(DataError, match="unknown target"):
        replace(spec, target="4class")


def test_folder_normalisation_shares_one_set_of_statistics(shared_data, tmp_path):
    folder = shared_data / "bbbc039" / "val"
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
    raws = []
    for path in sorted((folder / "images").glob("*.tif"))[:3]:
        raws.append(tifffile.imread(path))
        for sub in ("images", "labels"):
            (tmp_path / sub / path.name).symlink_to(folder / sub / path.name)
    spec = TargetSpec("3class")
    own = load_sources(tmp_path / "images", tmp_path / "labels", spec, PERCENTILE)
    shared = load_sources(tmp_path / "images", tmp_path / "labels", spec, {**PERCENTILE, "over": "folder"})
    low, high = np.percentile(np.concatenate([r.ravel() for r in raws]), [1.0, 99.8])
    for raw, a, b in zip(raws, own, shared):
        np.testing.assert_allclose(b.image[0], (raw - low) / (high - low), rtol=1e-5, atol=1e-5)
        assert not np.allclose(a.image, b.image)  # each image's own statistics differ from the folder's
