"""Tissue detection's maths, on real slides' pixels and on synthetic ones: thresholds, the
cleaning, the dilation by the network's context and the blocks it touches."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.he_slide import HESlide
from biounet.plan import tissue as T
from biounet.plan.blocks import plan_blocks
from tests.conftest import bbbc039_labels


def pooled(image: np.ndarray, factor: int) -> np.ndarray:
    """(C, h, w) means of factor x factor pixels of a (H, W[, C]) image (sizes multiples of factor)."""
    image = image if image.ndim == 3 else image[..., None]
    h, w = image.shape[0] // factor, image.shape[1] // factor
    return image[: h * factor, : w * factor].reshape(h, factor, w, factor, -1).mean(axis=(1, 3)).transpose(2, 0, 1)


@pytest.fixture(scope="module")
def he_tiles(shared_data):
    return [tifffile.imread(p) for p in sorted((shared_data / "monuseg" / "train" / "images").glob("*.tif"))]


def test_otsu_agrees_with_scikit_image(he_tiles):
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(0)
    bimodal = np.concatenate([rng.normal(0.03, 0.005, 5000), rng.normal(0.3, 0.08, 3000)])
    density = T.optical_density(pooled(he_tiles[1], 8), 255)
    for values in (bimodal, density):
        step = (values.max() - values.min()) / 256
        assert abs(T.otsu(values) - threshold_otsu(values, nbins=256)) <= step
    assert T.otsu(np.full(10, 3.0)) == 3.0


def test_brightfield_finds_real_tissue_on_glass_and_nothing_on_glass_alone():
    """A 2048 x 3072 slide of MoNuSeg tissue on glass with noise and dust: the mask (8 px per pixel)
    matches where the tissue is; glass alone gives no tissue, tissue alone is all tissue."""
    slide = HESlide(2048, 3072, tissue=0.4, seed=5)
    image, truth = slide.image(), slide.tissue_mask(0, 2048, 0, 3072)
    thumb = pooled(image, 8)
    found = T.brightfield_tissue(thumb, 255, 8)
    truth_thumb = pooled(truth.astype(float), 8)[0]
    inside, outside = truth_thumb == 1, truth_thumb == 0  # thumbnail pixels wholly tissue or glass
    assert found[inside].mean() > 0.99
    assert found[outside].mean() < 0.01
    assert len(slide.dust) > 5  # the dust specks did not become tissue
    glass = HESlide(1024, 1024, tissue=1e-9, seed=6).image()
    assert not T.brightfield_tissue(pooled(glass, 8), 255, 8).any()
    for tile in slide.tiles()[:6]:  # real tissue filling the whole view, pale or dark
        assert T.brightfield_tissue(pooled(tile, 8), 255, 8).mean() > 0.95


def test_fluorescence_mask_covers_every_nucleus(shared_data):
    """BBBC039 fields: log-Otsu (half way to the background) with the context dilation keeps every
    annotated nucleus pixel, and leaves most of the empty background out before dilation."""
    images = sorted((shared_data / "bbbc039" / "val" / "images").glob("*.tif"))[:5]
    for i, path in enumerate(images):
        field = tifffile.imread(path)[:512, :688]
        nuclei = bbbc039_labels(shared_data, i, "val")[:512, :688] > 0
        found = T.fluorescence_tissue(pooled(field, 8), 8)
        grown = np.repeat(np.repeat(T.dilate(found, T.context_radius(92, 8)), 8, 0), 8, 1)
        assert grown[nuclei].all()
        covered = np.repeat(np.repeat(found, 8, 0), 8, 1)
        assert covered[nuclei].mean() > 0.97
        assert covered[~nuclei].mean() < 0.4
    assert not T.fluorescence_tissue(np.full((1, 20, 20), 7.0), 8).any()  # nothing in a constant image


def test_fluorescence_mosaic_with_black_gaps(shared_data):
    """A 3 x 3 mosaic of BBBC039 fields with every other field missing (zeros, as stitching leaves
    them): the gaps are not tissue, every acquired field is, background and all."""
    fields = [tifffile.imread(p) for p in sorted((shared_data / "bbbc039" / "train" / "images").glob("*.tif"))[:9]]
    mosaic = np.zeros((3 * 520, 3 * 696), np.uint16)
    acquired = np.zeros(mosaic.shape, bool)
    for k, field in enumerate(fields):
        r, c = divmod(k, 3)
        if (r + c) % 2 == 0:
            mosaic[r * 520:(r + 1) * 520, c * 696:(c + 1) * 696] = field
            acquired[r * 520:(r + 1) * 520, c * 696:(c + 1) * 696] = True
    found = T.fluorescence_tissue(pooled(mosaic, 8), 8)
    share = pooled(acquired.astype(float), 8)[0]
    assert found[share == 1].all() and not found[share == 0].any()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), margin=st.integers(1, 200), factor=st.sampled_from([1, 4, 8, 16]))
def test_the_dilation_covers_the_networks_context(seed, margin, factor):
    """Every slide pixel within `margin` (the tile margin, any direction) of a tissue pixel lies in
    a predicted thumbnail pixel."""
    rng = np.random.default_rng(seed)
    mask = rng.random((24, 30)) > 0.97
    grown = T.dilate(mask, T.context_radius(margin, factor))
    slide = np.repeat(np.repeat(mask, factor, 0), factor, 1)
    from scipy import ndimage as ndi

    context = ndi.maximum_filter(slide.astype(np.uint8), size=2 * margin + 1, mode="constant") > 0
    predicted = np.repeat(np.repeat(grown, factor, 0), factor, 1)
    assert predicted[context].all()


def test_dilation_is_a_square_and_the_layer_tells_tissue_from_context():
    mask = np.zeros((9, 9), bool)
    mask[4, 4] = True
    grown = T.dilate(mask, 2)
    assert grown.sum() == 25 and grown[2:7, 2:7].all()
    assert np.array_equal(T.dilate(mask, 0), mask)
    layer = T.mask_layer(mask, grown)
    assert layer[4, 4] == T.TISSUE and (layer == T.CONTEXT).sum() == 24 and layer[0, 0] == T.GLASS


def test_blocks_on_and_ranges():
    predicted = np.zeros((8, 12), bool)  # factor 8: a 64 x 96 slide
    predicted[1, 5] = True  # slide rows 8-16, columns 40-48
    blocks = plan_blocks((), 64, 96, 32, 16)  # 2 x 3 blocks of 32 px
    assert T.blocks_on(predicted, 8, blocks) == [1]
    predicted[7, 11] = True  # the last pixel: the last block
    kept = T.blocks_on(predicted, 8, blocks)
    assert kept == [1, 5]
    ranges = T.skipped_ranges(kept, 6)
    assert ranges == [[0, 1], [2, 5]]
    assert T.from_ranges(ranges) == {0, 2, 3, 4}


def test_clean_fills_holes_removes_specks_keeps_edges():
    mask = np.zeros((40, 40), bool)
    mask[5:30, 0:30] = True  # a piece at the slide's left edge
    mask[15:18, 10:13] = False  # a small hole
    mask[36, 36] = True  # a speck
    cleaned = T.clean(mask, 8, T.MIN_PIECE)
    assert cleaned[15:18, 10:13].all() and not cleaned[36, 36]
    assert cleaned[5:30, 0].all()  # closing does not eat the piece at the edge
    assert not cleaned[:5].any()


def test_factor_depends_on_the_slide_size_only():
    assert T.mask_factor(520, 696) == T.MIN_FACTOR
    assert T.mask_factor(20480, 20480) == 16
    assert T.mask_factor(100_000, 40_000) == 64
    for size in (1000, 20480, 100_000):
        h, w = T.thumbnail_shape(size, size, T.mask_factor(size, size))
        assert max(h, w) <= T.MAX_THUMBNAIL
