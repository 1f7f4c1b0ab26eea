"""Test-time augmentation: symmetries undone exactly, the average independent of the
tiling, and `none` the plain network bit for bit."""

import numpy as np
import pytest
import tifffile
import torch

from biounet.model.file import load_model
from biounet.model.geometry import Geometry
from biounet.plan.options import check_tta
from biounet.plan.run import UsageError, make_run
from biounet.predict.tta import SYMMETRIES, averaged, forward, inverse, runs_of
from tests.predict.test_tiling import tiled
from tests.reference import forward_whole


@pytest.mark.parametrize("mode", ["none", "flips", "d4"])
def test_every_symmetry_is_undone(mode):
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)
    seen = set()
    for transpose, flips in SYMMETRIES[mode]:
        y = forward(x, transpose, flips)
        assert y.shape == ((2, 3, 7, 5) if transpose else x.shape)
        assert torch.equal(inverse(y, transpose, flips), x)
        seen.add(y.numpy().tobytes())
    assert len(seen) == runs_of(mode)  # all distinct


def test_average_turns_each_output_back():
    # f adds the column index: not equivariant, so the average shows which way each output was turned.
    x = torch.rand(1, 1, 5, 7)

    def f(t):
        return t + torch.arange(t.shape[-1], dtype=t.dtype)

    assert torch.equal(averaged(f, x, "none"), f(x))
    assert torch.allclose(averaged(f, x, "flips"), x + 3.0)  # columns 0..6 and 6..0: (7 - 1) / 2 on average
    # d4: half the runs see columns (mean 3), half see rows turned into columns (mean (5 - 1) / 2 = 2).
    assert torch.allclose(averaged(f, x, "d4"), x + 2.5)


def test_unknown_mode_is_named():
    with pytest.raises(ValueError, match="use none, flips, d4"):
        check_tta("rot7")


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    path = tmp_path_factory.mktemp("tta") / "slide.tif"
    tifffile.imwrite(path, np.random.default_rng(3).random((300, 413)).astype(np.float32))
    return path


@pytest.mark.parametrize("mode", ["flips", "d4"])
def test_tta_output_does_not_depend_on_tiles_or_blocks(tiny_model, slide, tmp_path, mode):
    outputs = [tiled(tiny_model, slide, tile, block, tmp_path, tta=mode) for tile, block in
               [(572, 1024), (1068, 512), (204, 64)]]
    plain = tiled(tiny_model, slide, 572, 1024, tmp_path)
    assert np.abs(outputs[0] - plain).max() > 1e-3  # it does average something
    for out in outputs[1:]:
        assert np.abs(out - outputs[0]).max() <= 1e-4
        assert np.array_equal(out.argmax(0), outputs[0].argmax(0))


def test_tta_equals_the_average_of_flipped_whole_images(tiny_model, tmp_path):
    # 388 px: one 572 px tile is the whole image, so flipping the image is flipping the tile.
    image = np.random.default_rng(4).random((388, 388)).astype(np.float32)
    path = tmp_path / "one-tile.tif"
    tifffile.imwrite(path, image)
    net, _ = load_model(tiny_model)
    turned = [(t, f) for t, f in SYMMETRIES["d4"]]
    reference = np.mean([
        inverse(torch.from_numpy(forward_whole(net, forward(torch.from_numpy(image), t, f).numpy()[None], Geometry())),
                t, f).numpy() for t, f in turned], axis=0)
    out = tiled(tiny_model, path, 572, 1024, tmp_path, tta="d4")
    assert np.abs(out - reference).max() <= 1e-5


def test_plain_run_is_unchanged_and_tta_is_recorded(tiny_model, slide, tmp_path):
    none = make_run(slide, tmp_path / "a.ome.zarr", model=tiny_model, device="cpu")
    flips = make_run(slide, tmp_path / "a.ome.zarr", model=tiny_model, device="cpu", tta="flips")
    assert "tta" not in none.params and flips.params["tta"] == "flips"  # a resume with another tta is refused
    with pytest.raises(UsageError, match="--tta 'rot7': use none, flips, d4"):
        make_run(slide, tmp_path / "a.ome.zarr", model=tiny_model, device="cpu", tta="rot7")


def test_resume_with_another_tta_is_refused():
    from biounet.pipeline.segment import _compare

    # Recorded only when used: a plain rerun of a --tta flips output must still see the difference.
    assert _compare({"params": {"tile": 572, "tta": "flips"}}, {"tile": 572}) == ["tta"]
    assert _compare({"params": {"tile": 572}}, {"tile": 572, "tta": "d4"}) == ["tta"]
    assert _compare({"params": {"tile": 572, "tta": "d4"}}, {"tile": 572, "tta": "d4"}) == []
