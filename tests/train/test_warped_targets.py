"""Class targets from warped instance ids: the torch twins of the numpy targets, and what
computing them after the warp changes under zoom (real BBBC039 nuclei)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage as ndi

from biounet.read.files import INTERNAL_IGNORE, DataError, to_instances
from biounet.train.augment import AugmentParams
from biounet.train.data import PatchDataset, TargetSpec, array_source, make_targets
from biounet.train.targets import IGNORE_INDEX, binary_target, three_class_target
from biounet.train.warped_targets import class_target_from_instances, class_weight_map

PERCENTILE = {"method": "percentile", "low": 1.0, "high": 99.8}
STILL = {"sigma": 0.0, "max_rotation_deg": 0.0, "flips": False, "rot90": False}


@pytest.fixture(scope="module")
def nuclei(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """A BBBC039 training image with many touching nuclei (image, instance ids)."""
    root = shared_data / "bbbc039" / "train"
    best = None
    for path in sorted((root / "labels").glob("*.tif"))[:8]:
        lab = tifffile.imread(path)
        contacts = int((ndi.grey_dilation(lab, size=3) != lab)[lab > 0].sum())
        if best is None or contacts > best[0]:
            best = (contacts, path.name, lab)
    return tifffile.imread(root / "images" / best[1]), best[2]


@pytest.mark.parametrize("kind", ["3class", "binary"])
def test_torch_targets_equal_the_numpy_targets(nuclei, kind):
    _, lab = nuclei
    ids = to_instances(lab, None, "instances").astype(np.int64)
    ids[:40, :200] = INTERNAL_IGNORE  # an unannotated strip cutting through nuclei
    reference = (three_class_target if kind == "3class" else binary_target)(ids, ignore=INTERNAL_IGNORE)
    both = torch.from_numpy(np.stack([ids, ids[::-1, ::-1].copy()]))
    out = class_target_from_instances(both, kind, INTERNAL_IGNORE).numpy()
    assert np.array_equal(out[0], reference)
    assert np.array_equal(out[1], (three_class_target if kind == "3class" else binary_target)(
        ids[::-1, ::-1], ignore=INTERNAL_IGNORE))
    assert (out[0] == IGNORE_INDEX).sum() == 40 * 200
    wide = torch.from_numpy(np.where(ids > 0, ids + 2**25, ids)[None])  # ids beyond float32's exact range
    assert np.array_equal(class_target_from_instances(wide, kind, INTERNAL_IGNORE)[0].numpy(), reference)


@pytest.mark.parametrize("kind", ["3class", "binary"])
def test_kept_instances_give_the_same_targets_and_weights(nuclei, kind):
    _, lab = nuclei
    plain = make_targets(lab, TargetSpec(kind))
    kept = make_targets(lab, TargetSpec(kind, instances=True))
    for name in ("target", "mask", "foreground"):
        assert np.array_equal(getattr(plain, name), getattr(kept, name)), name
    assert np.allclose(plain.weight, kept.weight, rtol=1e-6, atol=1e-6)
    assert kept.border.max() > 1.0 and kept.instances.max() == lab.max()
    weight = class_weight_map(torch.from_numpy(kept.target)[None], torch.from_numpy(kept.per_class)[None],
                              torch.from_numpy(kept.border)[None])[0].numpy()
    assert np.allclose(weight, plain.weight, rtol=1e-6, atol=1e-6)
    with pytest.raises(DataError, match="distance"):
        TargetSpec("distance", instances=True)


def _batches(image, lab, zoom, after, kind="3class", batch_size=8):
    """The first two batches of a dataset at a fixed zoom; its sources always keep the ids."""
    src = array_source("n", image[None].astype(np.float32), lab, TargetSpec(kind, instances=True), PERCENTILE)
    params = AugmentParams(zoom_range=(zoom, zoom), targets_after_warp=after, **STILL)
    ds = PatchDataset([src], tile=188, out=100, batch_size=batch_size, seed=5, target=kind, augment=params)
    return ds, [ds.batch(i) for i in range(2)]


def test_without_a_warp_both_ways_give_the_same_batch(nuclei):
    image, lab = nuclei
    for kind in ("3class", "binary"):
        _, plain = _batches(image, lab, 1.0, False, kind)
        _, after = _batches(image, lab, 1.0, True, kind)
        for a, b in zip(plain, after):
            for name, x, y in zip(("image", "target", "weight", "mask"), a, b):
                assert x.dtype == y.dtype and x.shape == y.shape
                if name == "weight":  # interpolated before or after adding the class weights
                    assert torch.allclose(x, y, rtol=0, atol=1e-3)
                else:
                    assert torch.equal(x, y), name


def test_boundaries_stay_one_pixel_at_any_zoom(nuclei):
    image, lab = nuclei
    boundary = {}
    for after in (False, True):
        for zoom in (0.5, 1.0, 2.0):
            _, batches = _batches(image, lab, zoom, after)
            targets = torch.cat([b[1] for b in batches])
            boundary[after, zoom] = float((targets == 2).sum() / (targets > 0).sum())
    # Warping the target nearest doubles the boundary's width at 2x; computing it afterwards does not.
    assert boundary[False, 2.0] > 1.6 * boundary[True, 2.0]
    assert boundary[True, 2.0] < 0.65 * boundary[True, 1.0]  # 1 px of a twice larger nucleus
    assert boundary[True, 0.5] > 1.5 * boundary[True, 1.0]


def test_touching_nuclei_stay_apart_when_shrunk(nuclei):
    """At 0.5x, nearest sampling of the target drops boundaries between touching nuclei, so
    their interiors merge; from the warped ids every contact keeps its boundary."""
    from biounet.train.augment import apply_warp

    image, lab = nuclei
    merged = {}
    for after in (False, True):
        ds, batches = _batches(image, lab, 0.5, after)
        twin = PatchDataset(ds.sources, ds.tile, ds.out, ds.batch_size, seed=ds.seed, target=ds.target,
                            augment=AugmentParams(**{**vars(ds.augment), "targets_after_warp": True}))
        count = 0
        m, o = ds.margin, ds.out
        for index, (_, target, _, _) in enumerate(batches):
            raw = twin.raw(index)  # the same windows and seed as ds's batch: their ids
            grid = ds._warp_grid(ds.batch_size, torch.Generator().manual_seed(raw[4]), raw[0].device)
            ids = apply_warp(None, raw[1], None, grid[:, m : m + o, m : m + o].contiguous())[1]
            for t, i in zip(target.numpy(), ids.numpy()):
                interiors, n = ndi.label(t == 1, structure=np.ones((3, 3)))
                for k in range(1, n + 1):
                    count += len(np.unique(i[interiors == k])) > 1
        merged[after] = count
    assert merged[True] == 0
    assert merged[False] >= 3
