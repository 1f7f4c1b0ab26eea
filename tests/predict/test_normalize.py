"""Normalisation statistics: per image, pooled over a folder of fields."""

from __future__ import annotations

import numpy as np
import pytest

from biounet.predict import normalize as norm
from biounet.read import sample as sampling
from biounet.predict.normalize import normalization_stats, over_folder
from biounet.read.sample import pooled_sample

PERCENTILE = {"method": "percentile", "low": 1.0, "high": 99.8}


def test_pooled_stats_are_those_of_the_images_taken_together():
    rng = np.random.default_rng(0)
    dim = rng.normal(100, 10, (1, 5000))
    bright = rng.normal(1000, 50, (1, 3000))
    pooled = normalization_stats(pooled_sample([dim, bright]), PERCENTILE)
    expected = np.percentile(np.concatenate([dim, bright], axis=1), [1.0, 99.8])
    np.testing.assert_allclose(pooled[0], expected)
    assert pooled[0, 1] > normalization_stats(dim, PERCENTILE)[0, 1] * 5


def test_pooled_sample_is_bounded_and_fair(monkeypatch):
    monkeypatch.setattr(sampling, "SAMPLE_PIXELS", 1000)
    big, small = np.zeros((2, 9000)), np.ones((2, 3000))
    sample = pooled_sample([big, small])
    assert sample.shape[0] == 2 and sample.shape[1] <= 1000 + 2
    assert abs(sample.mean() - 0.25) < 0.01  # each image in proportion to its size


def test_scope():
    assert not over_folder(PERCENTILE)
    assert over_folder({**PERCENTILE, "over": "folder"})
    with pytest.raises(ValueError, match="image or folder"):
        over_folder({**PERCENTILE, "over": "plate"})
    with pytest.raises(ValueError, match="no images"):
        pooled_sample([])


def test_cli_offers_the_scopes_the_code_knows():
    from biounet.cli import NORMALIZE_SCOPES

    assert NORMALIZE_SCOPES == norm.NORMALIZE_OVER
    assert norm.with_scope(PERCENTILE, None) == PERCENTILE
    assert norm.with_scope({**PERCENTILE, "over": "folder"}, "image")["over"] == "image"


def test_slide_sample_is_spread_over_the_chosen_channel(tmp_path):
    """A slide larger than the sample: evenly spread chunks of the chosen channel only,
    read straight from the file, the same every time, with the slide's percentiles."""
    import tifffile

    from biounet.read.image import open_image

    rng = np.random.default_rng(3)
    ramp = np.linspace(0, 3000, 2304, dtype=np.float64)
    plane = (ramp[:, None] + ramp[None, :] + rng.normal(0, 50, (2304, 2304))).clip(0)
    data = np.stack([plane, plane + 20000]).astype(np.uint16)  # channel 1 lies above 20000
    tifffile.imwrite(tmp_path / "s.tif", data, tile=(256, 256), metadata={"axes": "CYX"})
    image = open_image(tmp_path / "s.tif")
    sample = sampling.sample_for_stats(image, [1])
    assert sample.shape[0] == 1 and sample.dtype == np.uint16  # the slide's own type: exact, and faster percentiles
    assert sampling.SAMPLE_PIXELS <= sample.shape[1] < sampling.SAMPLE_PIXELS + 256 * 256 < data[1].size
    assert sample.min() >= 20000
    np.testing.assert_array_equal(sample, sampling.sample_for_stats(image, [1]))
    np.testing.assert_allclose(normalization_stats(sample, PERCENTILE)[0],
                               np.percentile(data[1], [1.0, 99.8]), rtol=0.02)
    whole = sampling.sample_for_stats(open_image(tmp_path / "s.tif"), None)
    assert whole.shape[0] == 2


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, bool])
def test_integer_samples_give_the_percentiles_of_their_float_copy(dtype):
    """Percentiles of an integer sample (partitioned in its own type) equal those of its
    float64 copy, as earlier versions computed them."""
    rng = np.random.default_rng(9)
    values = rng.integers(0, 2 if dtype is bool else 200, (2, 100_003)).astype(dtype)
    for spec in (PERCENTILE, {"method": "percentile", "low": 0.3, "high": 97.1}, {"method": "minmax"}):
        assert np.array_equal(normalization_stats(values, spec), normalization_stats(values.astype(np.float64), spec))
