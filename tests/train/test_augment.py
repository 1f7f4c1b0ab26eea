import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from biounet.train.augment import (
    HE_COLOR,
    RGB_FROM_HED,
    RGB_TO_YIQ,
    AugmentParams,
    apply_warp,
    augment_batch,
    color_matrices,
    gaussian_blur,
    random_color,
    random_intensity,
    random_warp_grid,
    upsample_displacement,
)


@pytest.fixture(scope="module")
def pair(shared_data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A real 192 x 192 BBBC039 image in [0, 1] and its instance labels."""
    root = shared_data / "bbbc039" / "train"
    name = sorted((root / "labels").glob("*.tif"))[9].name
    image = tifffile.imread(root / "images" / name)[100:292, 200:392].astype(np.float32)
    labels = tifffile.imread(root / "labels" / name)[100:292, 200:392].astype(np.int32)
    low, high = np.percentile(image, [1, 99.8])
    image = np.clip((image - low) / (high - low), 0, 1).astype(np.float32)
    return torch.from_numpy(image)[None, None], torch.from_numpy(labels)[None]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def to_pixels(grid: torch.Tensor) -> torch.Tensor:
    """Grid (N,H,W,2) normalised -> sampled positions in pixels (x, y)."""
    h, w = grid.shape[1:3]
    return (grid.double() + 1) / 2 * torch.tensor([w - 1, h - 1], dtype=torch.float64)


def identity_pixels(h: int, w: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    return torch.stack([xx, yy], -1)


@pytest.mark.parametrize("sigma", [10.0, 4.0])
def test_control_point_displacements_have_std_sigma(sigma):
    n, size = 1000, 41  # control points land on pixels 0, 20 and 40
    grid = random_warp_grid(n, size, size, gen(1), sigma=sigma, points=3, dtype=torch.float64)
    shift = to_pixels(grid) - identity_pixels(size, size)
    nodes = shift[:, ::20, ::20]  # (n, 3, 3, 2)
    assert nodes.std().item() == pytest.approx(sigma, rel=0.03)
    assert abs(nodes.mean().item()) < 0.05 * sigma
    # between the nodes the field is interpolated, so it varies less
    assert shift[:, 10, 10].std().item() < 0.9 * sigma


def test_dense_field_is_bicubic_interpolation_of_the_nodes():
    coarse = torch.randn(4, 2, 3, 3, generator=gen(), dtype=torch.float64)
    for h, w in [(300, 300), (101, 64)]:
        expected = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
        torch.testing.assert_close(upsample_displacement(coarse, h, w), expected)


def test_sigma_zero_without_rotation_is_the_identity(pair):
    image, labels = pair
    weights = image[:, 0] * 3
    h, w = labels.shape[1:]
    for dtype, tol in [(torch.float64, 1e-10), (torch.float32, 1e-5)]:
        grid = random_warp_grid(1, h, w, gen(), sigma=0.0, dtype=dtype)
        out, lab, wt = apply_warp(image.to(dtype), labels, weights.to(dtype), grid)
        assert (out - image.to(dtype)).abs().max().item() < tol
        assert (wt - weights.to(dtype)).abs().max().item() < 3 * tol
        assert torch.equal(lab, labels)


def test_rot90_and_flips_are_exact_dihedral_transforms(pair):
    image, labels = pair
    n = 64
    grid = random_warp_grid(n, 192, 192, gen(3), sigma=0.0, flips=True, rot90=True)
    out, lab, _ = apply_warp(image.expand(n, -1, -1, -1), labels.expand(n, -1, -1), None, grid)
    base = labels[0].numpy()
    candidates = [np.rot90(m, k) for m in (base, base[:, ::-1]) for k in range(4)]
    seen = set()
    for i in range(n):
        hits = [k for k, c in enumerate(candidates) if np.array_equal(lab[i].numpy(), c)]
        assert len(hits) == 1
        seen.add(hits[0])
        img = np.ascontiguousarray(np.rot90(
            (image[0, 0].numpy(), image[0, 0].numpy()[:, ::-1])[hits[0] // 4], hits[0] % 4
        ))
        np.testing.assert_allclose(out[i, 0].numpy(), img, atol=1e-5)
    assert seen == set(range(8))


def test_small_rotation_angle_is_bounded_and_about_the_centre():
    n, size, limit = 400, 65, 10.0
    grid = random_warp_grid(n, size, size, gen(4), sigma=0.0, max_rotation_deg=limit)
    pos = to_pixels(grid) - (size - 1) / 2
    centre = pos[:, size // 2, size // 2]
    assert centre.abs().max().item() < 1e-4
    corner = pos[:, 0, -1]  # output corner (x=+32, y=-32)
    angle = torch.rad2deg(torch.atan2(corner[:, 1], corner[:, 0]) - math.atan2(-32, 32))
    assert angle.abs().max().item() <= limit + 1e-3
    assert angle.min().item() < -0.8 * limit and angle.max().item() > 0.8 * limit
    assert corner.norm(dim=-1).sub(32 * math.sqrt(2)).abs().max().item() < 1e-3


def test_warping_never_invents_label_values(pair):
    _, labels = pair
    n = 8
    params = AugmentParams(sigma=15.0, max_rotation_deg=30.0)
    many = labels.expand(n, -1, -1)
    image = many[:, None].float()
    _, out, _ = augment_batch(image, many, None, gen(5), params)
    assert out.dtype == labels.dtype
    assert set(out.unique().tolist()) <= set(labels.unique().tolist())
    target = torch.where(labels > 0, 1, 0).to(torch.uint8)
    target[:, :20] = 255  # ignore index survives nearest sampling
    _, out, _ = augment_batch(image, target.expand(n, -1, -1), None, gen(6), params)
    assert set(out.unique().tolist()) == {0, 1, 255}


def test_image_and_labels_stay_aligned(pair):
    _, labels = pair
    n = 6
    many = labels.expand(n, -1, -1)
    coded = many[:, None].double()  # the image's values are the labels
    grid = random_warp_grid(
        n, 192, 192, gen(7), sigma=10.0, max_rotation_deg=20.0, flips=True, rot90=True
    )
    img, lab, wt = apply_warp(coded, many, coded[:, 0], grid)
    lab = lab.numpy()
    footprint = np.ones((1, 3, 3), dtype=bool)
    high = ndi.grey_dilation(lab, footprint=footprint)
    flat = high == ndi.grey_erosion(lab, footprint=footprint)
    agree = np.abs(img[:, 0].numpy() - lab) < 1e-6
    assert flat.mean() > 0.6
    assert agree[flat].mean() > 0.995
    assert np.array_equal(agree, np.abs(wt.numpy() - lab) < 1e-6)  # weights share the grid


def test_same_seed_same_batch(pair):
    image, labels = pair
    batch = (image.expand(3, -1, -1, -1), labels.expand(3, -1, -1), image[:, 0].expand(3, -1, -1))
    first = augment_batch(*batch, gen(11), AugmentParams())
    again = augment_batch(*batch, gen(11), AugmentParams())
    other = augment_batch(*batch, gen(12), AugmentParams())
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], other[0])
    assert not torch.equal(first[0][0], first[0][1])  # one warp per sample


def test_shapes_dtypes_and_non_negative_weights(pair):
    image, labels = pair
    weights = torch.rand(2, 192, 192, generator=gen())
    out, lab, wt = augment_batch(
        image.expand(2, -1, -1, -1), labels.expand(2, -1, -1), weights, gen(), AugmentParams()
    )
    assert out.shape == (2, 1, 192, 192) and out.dtype == torch.float32
    assert lab.shape == (2, 192, 192) and lab.dtype == torch.int32
    assert wt.shape == (2, 192, 192) and wt.min() >= 0


def test_intensity_changes(pair):
    image, _ = pair
    batch = image.expand(4, 2, -1, -1) * 5 - 1  # any range, two channels
    same = random_intensity(
        batch, gen(), scale_range=(1, 1), shift_range=(0, 0), gamma_range=(1, 1)
    )
    torch.testing.assert_close(same, batch, atol=1e-5, rtol=0)
    changed = random_intensity(batch, gen(), gamma_range=(0.5, 2.0))
    assert changed.shape == batch.shape
    low, high = batch.amin(), batch.amax()
    # gamma, scale and shift keep the order of grey values within a sample
    flat_in, flat_out = batch[0, 0].flatten(), changed[0, 0].flatten()
    order = torch.argsort(flat_in)
    assert torch.all(torch.diff(flat_out[order]) >= -1e-5)
    assert changed.amin() >= low * 1.1 - 0.1 - 1e-4 and changed.amax() <= high * 1.1 + 0.1 + 1e-4


def _he_batch(shared_data, n: int = 4) -> torch.Tensor:
    image = tifffile.imread(next(iter(sorted((shared_data / "monuseg/train/images").glob("*.tif")))))[:128, :128]
    return torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None].repeat(n, 1, 1, 1)


def test_random_color_identity_and_reproducible(shared_data):
    x = _he_batch(shared_data)
    assert torch.allclose(random_color(x, gen(1)), x, atol=1e-5)  # every change off
    first = random_color(x, gen(5), **HE_COLOR)
    assert torch.equal(first, random_color(x, gen(5), **HE_COLOR))
    assert not torch.equal(first, random_color(x, gen(6), **HE_COLOR))
    assert first.min() >= 0 and first.max() <= 1
    changed = (first - x).abs().mean(dim=(1, 2, 3))
    assert (changed > 1e-3).all() and (changed < 0.2).all()  # visible but still H&E
    with pytest.raises(ValueError, match="RGB"):
        random_color(x[:, :1], gen(), **HE_COLOR)


def test_stain_jitter_keeps_white_and_scales_haematoxylin():
    white = torch.ones(2, 3, 8, 8)
    assert torch.allclose(random_color(white, gen(3), stain_scale=0.3), white)  # no stain stays no stain
    # a pure haematoxylin colour: scaling the stain amount by a moves the optical density by a
    od = RGB_FROM_HED[0] * 0.8
    pixel = torch.exp(-od).float().view(1, 3, 1, 1).expand(1, 3, 4, 4).contiguous()
    out = random_color(pixel, gen(4), stain_scale=0.3)
    ratio = (-torch.log(out[0, :, 0, 0].double())) / od
    assert torch.allclose(ratio, ratio[0].expand(3), atol=1e-4) and 0.7 <= ratio[0] <= 1.3 and abs(ratio[0] - 1) > 1e-3


def test_color_matrices_keep_luma_and_remove_chroma_at_zero_saturation():
    rgb = torch.rand(3, 50, dtype=torch.float64)
    grey = color_matrices(torch.tensor([0.4]), torch.tensor([0.0]))[0] @ rgb
    luma = RGB_TO_YIQ[0] @ rgb
    assert torch.allclose(grey, luma.expand(3, -1), atol=1e-6)
    turned = color_matrices(torch.tensor([0.4]), torch.tensor([1.0]))[0] @ rgb
    assert torch.allclose(RGB_TO_YIQ[0] @ turned, luma, atol=1e-6) and not torch.allclose(turned, rgb)


def test_gaussian_blur_keeps_the_mean_and_smooths():
    x = torch.rand(3, 64, 64)
    y = gaussian_blur(x, 1.5)
    assert y.shape == x.shape and torch.allclose(gaussian_blur(torch.full((3, 16, 16), 0.3), 2.0), torch.tensor(0.3))
    assert y.std() < 0.5 * x.std() and abs(float(y.mean() - x.mean())) < 0.01


def test_zoom_scales_the_sampling_grid_about_the_centre():
    plain = random_warp_grid(2, 33, 33, gen(9), sigma=0.0)
    zoomed = random_warp_grid(2, 33, 33, gen(9), sigma=0.0, zoom_range=(2.0, 2.0))
    assert torch.allclose(zoomed, plain / 2, atol=1e-6)  # magnified 2x: half the reach
    # off, the draws are those of earlier versions; on, the factor is log-uniform in the range
    assert torch.equal(random_warp_grid(2, 33, 33, gen(9), sigma=0.0, zoom_range=(1.0, 1.0)), plain)
    ranged = random_warp_grid(64, 33, 33, gen(9), sigma=0.0, zoom_range=(0.5, 2.0))
    factor = plain[:1, 0, 0, 0].abs() / ranged[:, 0, 0, 0].abs()
    assert factor.min() >= 0.5 - 1e-4 and factor.max() <= 2.0 + 1e-4 and (factor < 1).any() and (factor > 1).any()
