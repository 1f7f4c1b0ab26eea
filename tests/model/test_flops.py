import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from biounet.model.config import UNetConfig
from biounet.model.flops import forward_flops
from biounet.model.unet import UNet


@pytest.mark.parametrize("config, tile", [
    (UNetConfig(width=4, depth=5), 188),
    (UNetConfig(width=4, depth=5), 204),
    (UNetConfig(width=2, depth=3, in_channels=3, out_channels=3), 92),
    (UNetConfig(width=4, depth=4, padding="same"), 96),
])
def test_forward_flops_match_torch_counter(config, tile):
    net = UNet(config).eval()
    x = torch.zeros(2, config.in_channels, tile, tile)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x)
    assert forward_flops(config, tile, batch=2) == counter.get_total_flops()

