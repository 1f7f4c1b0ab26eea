"""Losses: weighted cross-entropy (paper eq. 1), Dice, MSE/MAE; ignored pixels never count."""

import math

import pytest
import torch
import torch.nn.functional as F

from biounet.train.loss import Loss, regression_loss, soft_dice, weighted_cross_entropy
from biounet.train.targets import IGNORE_INDEX


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=g)
    target = torch.randint(0, 3, (2, 8, 8), generator=g)
    weight = torch.rand(2, 8, 8, generator=g) * 5 + 1
    return logits, target, weight


def test_cross_entropy_is_the_weighted_mean(batch):
    logits, target, weight = batch
    assert torch.allclose(weighted_cross_entropy(logits, target), F.cross_entropy(logits, target))
    log_p = torch.log_softmax(logits, 1).gather(1, target[:, None])[:, 0]
    assert torch.allclose(weighted_cross_entropy(logits, target, weight), -(weight * log_p).mean())
    assert torch.allclose(weighted_cross_entropy(logits, target, 2 * weight), 2 * weighted_cross_entropy(logits, target, weight))
    one = weighted_cross_entropy(logits[:, :, :1, :1], target[:, :1, :1])
    manual = -sum(math.log(torch.softmax(logits[i, :, 0, 0], 0)[target[i, 0, 0]]) for i in range(2)) / 2
    assert abs(one.item() - manual) < 1e-6


def test_ignored_pixels_do_not_count(batch):
    logits, target, weight = batch
    target = target.clone()
    target[:, :4] = IGNORE_INDEX
    logits = logits.clone().requires_grad_(True)
    loss = weighted_cross_entropy(logits, target, weight)
    expected = weighted_cross_entropy(logits[:, :, 4:], target[:, 4:], weight[:, 4:])
    assert torch.allclose(loss, expected)  # mean over annotated pixels only
    loss.backward()
    assert (logits.grad[:, :, :4] == 0).all() and (logits.grad[:, :, 4:] != 0).any()
    mask = torch.ones_like(target, dtype=torch.bool)
    mask[:, :, :2] = False
    assert torch.allclose(
        weighted_cross_entropy(logits, target, weight, mask),
        weighted_cross_entropy(logits[..., 2:], target[..., 2:], weight[..., 2:]),
    )
    everything = torch.full_like(target, IGNORE_INDEX)
    assert weighted_cross_entropy(logits, everything, weight).item() == 0.0


def test_dice():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 2:6, 2:6] = 1
    perfect = F.one_hot(target, 2).permute(0, 3, 1, 2).float() * 40 - 20
    assert soft_dice(perfect, target).item() < 1e-6
    assert soft_dice(-perfect, target).item() > 0.9
    ignored = target.clone()
    ignored[0, :, :4] = IGNORE_INDEX
    wrong_left = perfect.clone()
    wrong_left[:, :, :, :4] *= -1  # wrong only where ignored
    assert soft_dice(wrong_left, ignored).item() < 1e-6
    combined = Loss("binary", dice=0.5)(perfect, target, torch.ones(1, 8, 8), torch.ones(1, 8, 8, dtype=torch.bool))
    assert combined.item() < 1e-6


def test_regression():
    out = torch.zeros(2, 1, 4, 4)
    target = torch.full((2, 4, 4), 0.5)
    mask = torch.ones(2, 4, 4, dtype=torch.bool)
    assert regression_loss(out, target, mask, "mse").item() == pytest.approx(0.25)
    assert regression_loss(out, target, mask, "mae").item() == pytest.approx(0.5)
    target[:, :2] = 9.0
    mask[:, :2] = False
    assert regression_loss(out, target, mask, "mse").item() == pytest.approx(0.25)
    assert Loss("distance", regression="mae")(out, target, mask.float(), mask).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="mse or mae"):
        regression_loss(out, target, mask, "huber")
