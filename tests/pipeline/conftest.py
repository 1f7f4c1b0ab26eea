"""Fixtures of the pipeline tests."""

import pytest
import tifffile


@pytest.fixture(scope="module")
def slide(tmp_path_factory, shared_data):
    """A real nuclei image: 520 x 696 px, 5 x 6 blocks of 128 px (modules may define their own)."""
    image = tifffile.imread(sorted((shared_data / "bbbc039" / "train" / "images").glob("*.tif"))[0])
    path = tmp_path_factory.mktemp("resume") / "nuclei.tif"
    tifffile.imwrite(path, image, tile=(128, 128))
    return path
