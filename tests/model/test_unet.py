import math

import pytest
import torch

from biounet.model.config import UNetConfig
from biounet.model.unet import UNet, count_parameters


def expected_parameters(in_ch: int, classes: int, width: int, depth: int) -> int:
    """Parameter count from the paper's layer list."""
    conv = lambda cin, cout, k: cin * cout * k * k + cout  # noqa: E731
    total, cin = 0, in_ch
    widths = [width * 2**i for i in range(depth)]
    for w in widths:  # contracting path and bottom: two 3x3 convs per level
        total += conv(cin, w, 3) + conv(w, w, 3)
        cin = w
    for w in reversed(widths[:-1]):  # 2x2 up-conv halving channels, then two 3x3 convs
        total += conv(2 * w, w, 2) + conv(2 * w, w, 3) + conv(w, w, 3)
    return total + conv(width, classes, 1)


def test_original_parameter_count():
    assert expected_parameters(1, 2, 64, 5) == 31_030_658
    assert count_parameters(UNet()) == 31_030_658


def test_parameter_count_other_configs():
    net = UNet(in_channels=3, out_channels=3, width=16, depth=4)
    assert count_parameters(net) == expected_parameters(3, 3, 16, 4)


def test_he_initialisation():
    torch.manual_seed(0)
    net = UNet(width=16)
    conv = net.down[2][0]  # 3x3 conv with 32 input channels
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (32 * 9)), rel=0.05)
    assert torch.all(conv.bias == 0)


def test_heads_and_options():
    x = torch.randn(2, 1, 188, 188)
    cls = UNet(width=2, out_channels=3).eval()
    p = cls.predict(x)
    assert torch.allclose(p.sum(1), torch.ones(2, 4, 4), atol=1e-5)
    reg = UNet(width=2, out_channels=1, head="regression").eval()
    assert torch.equal(reg.predict(x), reg(x))
    bn = UNet(width=2, batch_norm=True, dropout=0.5)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in bn.modules())
    assert any(isinstance(m, torch.nn.Dropout2d) for m in bn.modules())
    with pytest.raises(ValueError):
        UNetConfig(head="softmax")
