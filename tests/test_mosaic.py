"""The sample-slide builder: a pyramidal OME-TIFF mosaic with matching labels."""

from pathlib import Path

import numpy as np
import tifffile

from biounet.demo.mosaic import make_mosaic
from biounet.read.image import open_image

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "bbbc039"


def test_shipped_sample_fields_are_real_bbbc039_pairs(shared_data):
    names = sorted(p.name for p in (SAMPLE / "images").glob("*.tif"))
    assert len(names) >= 4
    for name in names:
        assert (SAMPLE / "labels" / name).exists()
        assert np.array_equal(tifffile.imread(SAMPLE / "images" / name),
                              tifffile.imread(shared_data / "bbbc039" / "train" / "images" / name))


def test_mosaic_is_pyramidal_ome_tiff_with_labels(tmp_path):
    image, labels = make_mosaic(SAMPLE, tmp_path / "m.ome.tif", rows=2, cols=3)
    img = open_image(image)
    assert img.shape == (2 * 520 + 8, 3 * 696 + 16)
    assert len(img.levels) >= 2 and img.levels[1].shape == (524, 1052)
    assert img.pixel_size["x"] == (0.65, "micrometer")
    lab = tifffile.imread(labels)
    fields = sorted((SAMPLE / "labels").glob("*.tif"))[:6]
    expected = sum(len(np.unique(tifffile.imread(f))) - 1 for f in fields)
    assert len(np.unique(lab)) - 1 == expected
