"""Tiling of a same-padded encoder U-Net on real nuclei: tiles on multiples of 32, the centre
kept, the context margin cropped; stitched equals one pass over the whole mirror-padded image
once the margin covers the network's receptive field."""

import dataclasses

import numpy as np
import pytest
import tifffile
import torch
import zarr

from biounet.model.config import UNetConfig
from biounet.model.file import build_network, load_model
from biounet.model.spec import ModelSpec
from biounet.pipeline.segment import segment
from biounet.predict.array import predict_array
from biounet.predict.device import prepare
from tests.conftest import make_model
from tests.reference import forward_whole

pytestmark = pytest.mark.usefixtures("one_thread")
# ResNet-18's output at a pixel depends on at most 281 px of input on either side (its
# receptive field, measured by back-propagation; up to 31 px more at other phases of 32):
# with 320 px of context, tiles see all of it.
COVERING = 320


@pytest.fixture(scope="module")
def nuclei(shared_data):
    """A 256 x 320 px crop of a real BBBC039 val image, normalised to about 0..1."""
    image = tifffile.imread(sorted((shared_data / "bbbc039" / "val" / "images").glob("*.tif"))[12])[:256, :320]
    low, high = np.percentile(image, (1, 99.8))
    return ((image - low) / (high - low)).astype(np.float32)


def resnet18(context: int) -> tuple[torch.nn.Module, ModelSpec]:
    torch.manual_seed(4)
    config = UNetConfig(out_channels=3, depth=6, width=2, padding="same", batch_norm=True, encoder="resnet18",
                        context=context)
    return build_network(config).eval(), ModelSpec(unet=config, normalization={"method": "none"})


def test_tiled_equals_one_pass_when_the_margin_covers_the_receptive_field(nuclei):
    net, spec = resnet18(COVERING)
    whole = forward_whole(net, nuclei[None], spec.unet.geometry())
    tiled = predict_array(net, spec, nuclei, tile=128 + 2 * COVERING, block=128, batch=2)  # 2 x 3 tiles
    assert np.abs(tiled - whole).max() <= 1e-4
    assert np.array_equal(tiled.argmax(0), whole.argmax(0))
    # Without context the seams show: the test can fail.
    spec0 = dataclasses.replace(spec, unet=dataclasses.replace(spec.unet, context=0))
    seams = predict_array(net, spec0, nuclei, tile=64, block=128)
    assert np.abs(seams - forward_whole(net, nuclei[None], spec0.unet.geometry())).max() > 1e-2


def test_segment_class_map_matches_one_pass(shared_data, tmp_path):
    """`segment` of a real nuclei image (2 x 3 blocks of 192 px, one tile each) against one pass."""
    model = make_model(tmp_path / "covering.pt", seed=5, target="3class", out_channels=3, encoder="resnet18",
                       context=COVERING)  # no normalisation: the image is normalised here
    net, spec = load_model(model)
    net = prepare(net, torch.device("cpu"))  # channels_last as in `segment`: the same rounding
    image = tifffile.imread(sorted((shared_data / "bbbc039" / "val" / "images").glob("*.tif"))[13])[:384, :576]
    low, high = np.percentile(image, (1, 99.8))
    image = ((image - low) / (high - low)).astype(np.float32)
    path = tmp_path / "nuclei.tif"
    tifffile.imwrite(path, image)
    out = tmp_path / "o.ome.zarr"
    segment(path, out, model=model, block=192, device="cpu", progress=False, save_probabilities="float16")
    whole = forward_whole(net, image[None], spec.unet.geometry())
    classes = zarr.open_array(str(out), path="labels/classes/0")[:]
    probs = zarr.open_array(str(out), path="probabilities/0")[:].astype(np.float32)
    assert np.array_equal(classes, whole.argmax(0))
    assert np.abs(probs - whole).max() <= 5e-4  # float16 storage
