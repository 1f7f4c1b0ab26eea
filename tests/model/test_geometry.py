import pytest
import torch

from biounet.model.geometry import Geometry, TileSizeError
from biounet.model.unet import UNet


def test_original_tile_sizes():
    g = Geometry()
    assert g.output_size(572) == 388
    assert g.margin == 92
    assert g.min_input == 188
    assert g.align == 16
    assert g.valid_sizes(500, 1100) == list(range(508, 1101, 16))
    assert g.output_size(1068) == 884


def test_invalid_size_names_nearest_valid():
    with pytest.raises(TileSizeError, match="1068 or 1084"):
        Geometry().check(1076)
    with pytest.raises(TileSizeError, match="188"):
        Geometry().check(100)


def test_nearest_valid():
    g = Geometry()
    assert g.nearest_valid(1076) in (1068, 1084)
    assert g.nearest_valid(1070) == 1068
    assert g.nearest_valid(1080, "up") == 1084
    assert g.nearest_valid(1080, "down") == 1068
    assert g.input_size(1024) == 1212


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_formulas_match_forward_passes(depth):
    g = Geometry(depth)
    net = UNet(depth=depth, width=2).eval()
    sizes = g.valid_sizes(g.min_input, g.min_input + 3 * g.align)[:3]
    for size in sizes:
        with torch.no_grad():
            out = net(torch.zeros(1, 1, size, size + g.align))
        assert out.shape[-2:] == (g.output_size(size), g.output_size(size + g.align))
    # One more pixel is not a valid size, and torch gives a misaligned output.
    if g.align > 1:
        assert not g.is_valid(sizes[0] + 1)


def test_same_padding_keeps_size():
    g = Geometry(5, "same")
    net = UNet(width=2, padding="same").eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 1, 256, 320)).shape[-2:] == (256, 320)
    assert g.output_size(512) == 512 - 2 * 92
    with pytest.raises(TileSizeError):
        g.check(500)
