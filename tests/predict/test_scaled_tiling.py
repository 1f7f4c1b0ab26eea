"""Tiling invariance at the model's scale: a slide at another pixel size than the model's,
predicted in model space block by block, tile by tile and on several threads, equals one
pass of the network over the whole slide resampled to model space, resampled back."""

import numpy as np
import pytest
import tifffile
import zarr

from biounet.model.file import load_model
from biounet.model.geometry import Geometry
from biounet.pipeline import stages
from biounet.pipeline.segment import segment
from biounet.plan.blocks import tile_window
from biounet.plan.mirror import mirror_window
from biounet.plan.run import make_run
from biounet.plan.scale import model_block
from biounet.predict.normalize import normalize
from tests.conftest import make_model
from tests.predict.test_tiling import assert_same_classes, tiled
from tests.reference import forward_scaled

MODEL_UM = 0.25
SLIDES = {2.0: 0.5, 1.3: 0.325}  # scale factor: the slide's um/px (0.25 -> 0.325 is not a whole factor)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("models") / "at25.pt", pixel_size=MODEL_UM, diameter=20.0)


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    d = tmp_path_factory.mktemp("scaled")
    rng = np.random.default_rng(5)
    paths = {}
    for factor, um in SLIDES.items():
        for shape in [(200, 263), (100, 90)]:
            path = d / f"{factor}-{shape[0]}x{shape[1]}.ome.tif"
            tifffile.imwrite(path, rng.random(shape).astype(np.float32), tile=(128, 128), ome=True,
                             metadata={"axes": "YX", "PhysicalSizeX": um, "PhysicalSizeY": um})
            paths[factor, shape] = path
    return paths


@pytest.mark.parametrize("factor", sorted(SLIDES))
@pytest.mark.parametrize("shape", [(200, 263), (100, 90)])
def test_tiles_and_blocks_match_one_pass_at_the_models_scale(model, slides, factor, shape, tmp_path, one_thread):
    net, _ = load_model(model)
    image = tifffile.imread(slides[factor, shape])[None]
    reference = forward_scaled(net, image, Geometry(), factor)
    assert make_run(slides[factor, shape], tmp_path / "o.ome.zarr", model=model).scale.factor == pytest.approx(factor)
    for tile, block in [(572, 1024), (252, 64), (380, 96), (1068, 256)]:
        out = tiled(model, slides[factor, shape], tile, block, tmp_path)
        assert out.shape[1:] == shape
        assert np.abs(out - reference).max() <= 1e-4, (tile, block)
        assert_same_classes(out.argmax(0), reference)


@pytest.mark.parametrize("factor", sorted(SLIDES))
@pytest.mark.parametrize("workers", [1, 2])
def test_segment_at_the_models_scale_matches_one_pass(model, slides, factor, workers, tmp_path, one_thread):
    net, _ = load_model(model)
    path = slides[factor, (200, 263)]
    reference = forward_scaled(net, tifffile.imread(path)[None], Geometry(), factor)
    out = tmp_path / "o.ome.zarr"
    result = segment(path, out, model=model, tile=380, block=128, workers=workers, save_probabilities="float16",
                     progress=False, device="cpu")
    classes = zarr.open_array(str(out), path="labels/classes/0")[:]
    probs = zarr.open_array(str(out), path="probabilities/0")[:].astype(np.float32)
    assert classes.shape == (200, 263) and zarr.open_array(str(out), path="labels/instances/0").shape == (200, 263)
    assert_same_classes(classes, reference)
    assert np.abs(probs - reference).max() <= 1e-3  # float16 storage
    assert result.extra["scale"].startswith(f"scale {factor:.2f} (slide {SLIDES[factor]:.2f} um/px from the file")


def test_the_input_is_read_from_the_pyramid_level_at_the_models_scale(tmp_path, one_thread):
    """An Aperio slide at 0.252 um/px with a level 4x coarser (1.008 um/px): a 1 um/px model
    reads that level as it is (within 5 %), a 0.5 um/px one shrinks level 0; labels lie on level 0."""
    from tests.read.wsi_files import he_mosaic, pyramid, write_svs

    levels = pyramid(he_mosaic(1024, 1280), (4,))
    slide = tmp_path / "s.svs"
    write_svs(slide, levels, compression="zlib")
    fixed = {"method": "fixed", "low": 0.0, "high": 255.0}
    coarse = make_model(tmp_path / "at1.pt", in_channels=3, normalization=fixed, pixel_size=1.0)
    run = make_run(slide, tmp_path / "o.ome.zarr", model=coarse, tile=380, block=512, device="cpu")
    assert run.scale.level == 1 and run.scale.read_steps == (1.0, 1.0) and run.scale.steps == (0.25, 0.25)
    res = stages.Resources(run.with_stats([[0.0, 255.0]] * 3))
    block = run.blocks[1]  # y 0-512, x 512-1024
    window = stages.read_input(res, block).window
    y0, y1, x0, x1, _, _ = tile_window(model_block(block, run.scale.steps, 16), 380, run.geometry)
    level1 = np.moveaxis(levels[1], -1, 0)
    expected = normalize(mirror_window(lambda ys, xs: level1[:, ys, xs], level1.shape[1:], y0, y1, x0, x1), res.stats)
    assert np.array_equal(window, expected)  # level 1's pixels, not level 0 resampled

    fine = make_model(tmp_path / "at05.pt", in_channels=3, normalization=fixed, pixel_size=0.5)
    run = make_run(slide, tmp_path / "o.ome.zarr", model=fine, device="cpu")
    assert run.scale.level == 0 and run.scale.read_steps == pytest.approx((0.504, 0.504))

    result = segment(slide, tmp_path / "s.ome.zarr", model=coarse, block=512, device="cpu", progress=False)
    assert result.extra["scale"] == "scale 0.25 (slide 0.25 um/px from the file, model 1.00 um/px; input from level 1)"
    assert zarr.open_array(str(tmp_path / "s.ome.zarr"), path="labels/instances/0").shape == (1024, 1280)
