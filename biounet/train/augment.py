"""Batched data augmentation in torch (CPU or GPU), one resampling per batch.

The geometric part follows the U-Net paper: random displacement vectors on a
coarse ``points`` x ``points`` grid, each component Gaussian with ``sigma`` px
standard deviation, interpolated bicubically to a dense field. Random
90-degree rotations, flips and a small arbitrary rotation are composed into
the same sampling grid, so image, labels and weights are resampled once:
images bilinear (or bicubic), labels nearest (never inventing values),
weights bilinear, all mirrored at the edges (``padding_mode='reflection'``).

Randomness comes only from the ``torch.Generator`` passed in: the same seed
gives the same batch. Random numbers are drawn on the generator's device and
moved to the data's device, so a CPU generator drives GPU augmentation too.

Coordinates: a grid holds, for every output pixel, the input position to
sample, normalised as ``torch.nn.functional.grid_sample`` expects with
``align_corners=True`` (-1 and 1 are the centres of the edge pixels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentParams:
    """Augmentation settings; the defaults are the paper's deformation plus mild extras."""

    sigma: float = 10.0
    """Std of each control-point displacement component, px."""
    points: int = 3
    """Control points per axis of the coarse displacement grid."""
    max_rotation_deg: float = 15.0
    """Arbitrary rotation drawn uniformly from +-this, degrees."""
    flips: bool = True
    rot90: bool = True
    image_mode: str = "bilinear"
    """``grid_sample`` mode for images: 'bilinear' or 'bicubic'."""
    scale_range: tuple[float, float] = (0.9, 1.1)
    """Grey-value factor, uniform."""
    shift_range: tuple[float, float] = (-0.1, 0.1)
    """Grey-value offset, uniform, in units of the (normalised) image values."""
    gamma_range: tuple[float, float] = (0.8, 1.25)
    """Gamma, log-uniform, applied to each image rescaled to [0, 1]."""
    zoom_range: tuple[float, float] = (1.0, 1.0)
    """Scale factor, log-uniform (> 1 magnifies): objects of other sizes; (1, 1) = off."""
    color: dict | None = None
    """Colour changes of RGB brightfield images in [0, 1] (`random_color`'s keywords); None = off."""
    targets_after_warp: bool = False
    """Warp the instance ids and compute the class target from them (boundaries and separation
    lines stay 1 px at any zoom), instead of warping the class target (earlier runs)."""


HE_COLOR = {"stain_scale": 0.2, "stain_shift": 0.05, "hue_deg": 10.0, "saturation": 0.25, "blur_sigma": 1.5,
            "blur_p": 0.3}
"""Colour augmentation for H&E: HED stain jitter (Tellez et al. 2018), hue, saturation and focus blur."""


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(n, generator=generator, device=generator.device, dtype=torch.float64)
    return low + (high - low) * u


def bicubic_weights(size: int, points: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(size, points) matrix M with ``M @ v`` = ``v`` upsampled like F.interpolate.

    PyTorch's bicubic interpolation is separable, so a dense field is
    ``M_h @ coarse @ M_w.T``: two thin matrix products instead of a 2-D
    interpolation over every output pixel.
    """
    eye = torch.eye(points, dtype=torch.float64)[None, None]
    m = F.interpolate(eye, size=(size, points), mode="bicubic", align_corners=True)
    return m[0, 0].to(dtype)


def upsample_displacement(coarse: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Coarse control-point displacements (N,2,P,P) -> dense field (N,2,h,w), bicubic.

    Equal (up to rounding) to ``F.interpolate(coarse, (h, w), mode='bicubic',
    align_corners=True)``: control points sit on the corners and, spread
    evenly, across the image.
    """
    p_h, p_w = coarse.shape[-2:]
    m_h = bicubic_weights(h, p_h, coarse.dtype).to(coarse.device)
    m_w = bicubic_weights(w, p_w, coarse.dtype).to(coarse.device)
    return m_h @ coarse @ m_w.T


def random_warp_grid(
    n: int,
    h: int,
    w: int,
    generator: torch.Generator,
    *,
    sigma: float = 10.0,
    points: int = 3,
    max_rotation_deg: float = 0.0,
    flips: bool = False,
    rot90: bool = False,
    zoom_range: tuple[float, float] = (1.0, 1.0),
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Draw ``n`` random sampling grids of shape (n, h, w, 2) for ``apply_warp``.

    Sample position of output pixel p (pixel units, x = column, y = row):
    ``c + R(angle) R90(k) Flip (p - c) + D(p)``, with c the image centre and D
    the bicubically upsampled control-point displacements (each component
    N(0, sigma^2) px). Rotations by 90 degrees of a non-square image reach
    outside it and are filled by mirroring. All random numbers are drawn
    whatever the switches, so turning one feature off leaves the others' draws
    unchanged; only a zoom (factor z, log-uniform in `zoom_range`: the matrix
    is divided by z, so z > 1 magnifies) draws after them, and only when on,
    so grids without it are those of earlier versions.
    """
    if h < 2 or w < 2:
        raise ValueError(f"grid needs h, w >= 2, got {h}x{w}")
    gen_device = generator.device
    device = torch.device(device) if device is not None else gen_device
    f64 = torch.float64
    coarse = torch.randn(n, 2, points, points, generator=generator, device=gen_device, dtype=f64)
    angle = _uniform(n, -1.0, 1.0, generator) * math.radians(max_rotation_deg)
    quarter = torch.randint(0, 4, (n,), generator=generator, device=gen_device)
    mirror = torch.rand(n, generator=generator, device=gen_device) < 0.5
    # The per-sample numbers are few: combine them on the CPU, move only the grid factors.
    coarse, angle, quarter, mirror = (t.cpu() for t in (coarse, angle, quarter, mirror))
    zoom = torch.ones(n, dtype=f64)
    if tuple(zoom_range) != (1.0, 1.0):
        low, high = (math.log(z) for z in zoom_range)
        zoom = torch.exp(_uniform(n, low, high, generator)).cpu()
    if not rot90:
        quarter = torch.zeros_like(quarter)
    if not flips:
        mirror = torch.zeros_like(mirror)

    # Per-sample 2x2 matrix R(angle + k*90) @ diag(flip, 1) on (x, y), with exact
    # cos/sin for the multiples of 90 degrees so pure rot90/flip grids hit pixel centres.
    cos_q = torch.tensor([1.0, 0.0, -1.0, 0.0], dtype=f64)[quarter]
    sin_q = torch.tensor([0.0, 1.0, 0.0, -1.0], dtype=f64)[quarter]
    cos_t = torch.cos(angle) * cos_q - torch.sin(angle) * sin_q
    sin_t = torch.sin(angle) * cos_q + torch.cos(angle) * sin_q
    flip = torch.where(mirror, -1.0, 1.0).to(f64)
    cos_t, sin_t = cos_t / zoom, sin_t / zoom
    half_x, half_y = (w - 1) / 2, (h - 1) / 2
    # The same matrix acting on normalised coordinates (x / half_x, y / half_y):
    # rows (x, y), columns (coefficient of x, coefficient of y).
    a = torch.stack(
        [
            torch.stack([cos_t * flip, -sin_t * half_y / half_x], -1),
            torch.stack([sin_t * flip * half_x / half_y, cos_t], -1),
        ],
        -2,
    )
    coarse = coarse * torch.tensor([sigma / half_x, sigma / half_y], dtype=f64)[:, None, None]

    # grid[n, i, j, c] = sum_k rows[i, k] * cols[n, k, j, c], with rows = [bicubic weights
    # of the control-point rows, y_i, 1]: one thin batched matrix product writes the
    # grid in grid_sample's layout (displacement, then y and x terms of the matrix).
    xn = torch.linspace(-1.0, 1.0, w, dtype=f64)
    yn = torch.linspace(-1.0, 1.0, h, dtype=f64)
    along_x = torch.einsum("ncpq,jq->npjc", coarse, bicubic_weights(w, points))
    y_term = a[:, None, None, :, 1].expand(n, 1, w, 2)
    x_term = (a[:, None, None, :, 0] * xn[None, None, :, None]).reshape(n, 1, w, 2)
    cols = torch.cat([along_x, y_term, x_term], 1).reshape(n, points + 2, 2 * w)
    rows = torch.cat([bicubic_weights(h, points), yn[:, None], torch.ones(h, 1, dtype=f64)], 1)
    cols = cols.to(device=device, dtype=dtype)
    rows = rows.to(device=device, dtype=dtype)
    return torch.matmul(rows, cols).view(n, h, w, 2)


def apply_warp(
    images: torch.Tensor | None,
    labels: torch.Tensor | None,
    weights: torch.Tensor | None,
    grid: torch.Tensor,
    *,
    image_mode: str = "bilinear",
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Resample images (N,C,H,W), labels (N,H,W) int and weights (N,H,W) on ``grid``.

    Any of the three may be None. Labels are sampled nearest through a float
    copy (float64 when ids exceed 2^24), so every output value is an input value.
    """

    def sample(x: torch.Tensor, mode: str) -> torch.Tensor:
        return F.grid_sample(
            x, grid.to(x.dtype), mode=mode, padding_mode="reflection", align_corners=True
        )

    out_images = sample(images, image_mode) if images is not None else None
    out_labels = None
    if labels is not None:
        wide = labels.numel() > 0 and labels.dtype.itemsize > 2
        if wide:
            low, high = torch.aminmax(labels)
            wide = max(-int(low), int(high)) >= 2**24
        values = labels[:, None].to(torch.float64 if wide else torch.float32)
        out_labels = sample(values, "nearest")[:, 0].to(labels.dtype)
    out_weights = sample(weights[:, None], "bilinear")[:, 0] if weights is not None else None
    return out_images, out_labels, out_weights


def random_intensity(
    images: torch.Tensor,
    generator: torch.Generator,
    *,
    scale_range: tuple[float, float] = (0.9, 1.1),
    shift_range: tuple[float, float] = (-0.1, 0.1),
    gamma_range: tuple[float, float] = (0.8, 1.25),
) -> torch.Tensor:
    """Per-sample grey-value change of (N,C,H,W) images: gamma, then scale and shift.

    Gamma acts on each sample rescaled to [0, 1] by its own min and max (and is
    mapped back), so it works for any normalisation, including negative values.
    """
    n = images.shape[0]
    scale = _uniform(n, *scale_range, generator)
    shift = _uniform(n, *shift_range, generator)
    gamma = torch.exp(_uniform(n, math.log(gamma_range[0]), math.log(gamma_range[1]), generator))
    shape = (n,) + (1,) * (images.ndim - 1)
    scale, shift, gamma = (
        t.to(images.device, images.dtype).reshape(shape) for t in (scale, shift, gamma)
    )
    if gamma_range[0] == gamma_range[1] == 1:
        return images * scale + shift
    dims = tuple(range(1, images.ndim))
    low = images.amin(dim=dims, keepdim=True)
    span = (images.amax(dim=dims, keepdim=True) - low).clamp_min(1e-12)
    unit = ((images - low) / span).clamp(0, 1)
    return (unit**gamma * span + low) * scale + shift


# Stain vectors (rows: haematoxylin, eosin, DAB) in optical density, Ruifrok & Johnston 2001, as
# scikit-image's rgb_from_hed: od = hed @ RGB_FROM_HED.
RGB_FROM_HED = torch.nn.functional.normalize(
    torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float64), dim=1)
HED_FROM_RGB = torch.linalg.inv(RGB_FROM_HED)
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          dtype=torch.float64)
MIN_LIGHT = 1.0 / 512
"""Transmitted light below this (black pixels) is clipped before taking optical densities."""


def color_matrices(hue: torch.Tensor, saturation: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) matrices acting on RGB column vectors: hue rotated by `hue` radians and chroma
    scaled by `saturation` in YIQ space (luma kept)."""
    n = len(hue)
    rot = torch.zeros(n, 3, 3, dtype=torch.float64)
    rot[:, 0, 0] = 1.0
    rot[:, 1, 1] = rot[:, 2, 2] = torch.cos(hue) * saturation
    rot[:, 1, 2] = -torch.sin(hue) * saturation
    rot[:, 2, 1] = torch.sin(hue) * saturation
    return torch.linalg.inv(RGB_TO_YIQ) @ rot @ RGB_TO_YIQ


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """(C, H, W) images blurred by a Gaussian of `sigma` px, mirrored at the edges."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = (k / k.sum()).to(images.device, images.dtype)
    c = images.shape[0]
    out = F.pad(images[None], (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)[0]


def random_color(
    images: torch.Tensor,
    generator: torch.Generator,
    *,
    stain_scale: float = 0.0,
    stain_shift: float = 0.0,
    hue_deg: float = 0.0,
    saturation: float = 0.0,
    blur_sigma: float = 0.0,
    blur_p: float = 0.0,
) -> torch.Tensor:
    """Per-sample colour change of (N, 3, H, W) RGB brightfield images in [0, 1], as H&E varies between labs.

    In order: stain jitter in haematoxylin-eosin-DAB optical density (each stain's amount times
    U(1 +- stain_scale) plus U(+-stain_shift), Tellez et al. 2018), hue turned by U(+-hue_deg) and
    chroma scaled by U(1 +- saturation), and with probability blur_p a Gaussian blur of sigma
    U(0, blur_sigma) px (focus). The result is clipped to [0, 1].
    """
    n, c = images.shape[:2]
    if c != 3:
        raise ValueError(f"colour augmentation needs RGB images (3 channels), got {c}")
    alpha = _uniform(3 * n, 1 - stain_scale, 1 + stain_scale, generator).reshape(n, 3).cpu()
    beta = _uniform(3 * n, -stain_shift, stain_shift, generator).reshape(n, 3).cpu()
    hue = (_uniform(n, -1.0, 1.0, generator) * math.radians(hue_deg)).cpu()
    sat = _uniform(n, 1 - saturation, 1 + saturation, generator).cpu()
    sigma = _uniform(n, 0.0, blur_sigma, generator).cpu()
    blur = (torch.rand(n, generator=generator, device=generator.device) < blur_p).cpu()
    # od (N, H, W, 3) -> stains -> od: one matrix per sample, diag(alpha) folded in.
    stain = HED_FROM_RGB[None] * alpha[:, None, :] @ RGB_FROM_HED
    offset = beta @ RGB_FROM_HED
    dt, dev = images.dtype, images.device
    od = -torch.log(images.clamp(MIN_LIGHT, 1.0)).permute(0, 2, 3, 1)
    od = torch.einsum("nhwc,ncd->nhwd", od, stain.to(dev, dt)) + offset.to(dev, dt)[:, None, None]
    rgb = torch.exp(-od)
    rgb = torch.einsum("nhwc,ndc->ndhw", rgb, color_matrices(hue, sat).to(dev, dt))
    out = []
    for i in range(n):
        sample = rgb[i]
        if blur[i] and sigma[i] >= 0.3:
            sample = gaussian_blur(sample, float(sigma[i]))
        out.append(sample)
    return torch.stack(out).clamp(0.0, 1.0)


def augment_images(images: torch.Tensor, generator: torch.Generator, params: AugmentParams) -> torch.Tensor:
    """The value changes of a warped batch: colour (when `params.color` is set), then grey values."""
    if params.color:
        images = random_color(images, generator, **params.color)
    return random_intensity(images, generator, scale_range=params.scale_range, shift_range=params.shift_range,
                            gamma_range=params.gamma_range)


def augment_batch(
    images: torch.Tensor,
    labels: torch.Tensor | None,
    weights: torch.Tensor | None,
    generator: torch.Generator,
    params: AugmentParams = AugmentParams(),
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Warp a batch (one grid per sample) and change its grey values.

    images (N,C,H,W) float, labels (N,H,W) int (class targets or instance ids),
    weights (N,H,W) float; returns the same shapes and dtypes.
    """
    n, _, h, w = images.shape
    grid = random_warp_grid(
        n,
        h,
        w,
        generator,
        sigma=params.sigma,
        points=params.points,
        max_rotation_deg=params.max_rotation_deg,
        flips=params.flips,
        rot90=params.rot90,
        zoom_range=params.zoom_range,
        device=images.device,
        dtype=images.dtype,
    )
    out_images, out_labels, out_weights = apply_warp(
        images, labels, weights, grid, image_mode=params.image_mode
    )
    return augment_images(out_images, generator, params), out_labels, out_weights
