"""The accuracy check of scale-aware inference (issue 26, part 2): the same H&E field given at
0.25 um/px and downsampled to 0.5 um/px gives the same nuclei, compared at level 0.

The model is the shipped `he-nuclei` (trained at 0.25 um/px on MoNuSeg's MONU-TRAIN22 tiles,
MODEL_CARD.md); the field below is one of the selection tiles (MONU-SEL8), which trained nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from biounet.evaluate.metrics import instance_scores
from biounet.pipeline.segment import segment
from tests.read.wsi_files import area_down

MODEL = "he-nuclei"
FIELD = "TCGA-AR-A1AS-01Z-00-DX1"  # a MoNuSeg training tile, 1000 x 1000, 40x


def f1_at_half(a: np.ndarray, b: np.ndarray) -> float:
    return instance_scores(a, b, thresholds=(0.5,)).f1[0]


@pytest.fixture(scope="module")
def outputs(shared_data, tmp_path_factory):
    """Instances of the field at 0.25 um/px, and of it 2x smaller (area mean) at 0.5 um/px with and
    without rescaling, the latter two upsampled to the 0.25 grid by nearest neighbour."""
    d = tmp_path_factory.mktemp("accuracy")
    field = tifffile.imread(shared_data / "monuseg" / "train" / "images" / f"{FIELD}.tif")
    paths = {}
    for name, pixels, um in (("fine", field, 0.25), ("coarse", area_down(field, 2), 0.5)):
        paths[name] = d / f"{name}.ome.tif"
        tifffile.imwrite(paths[name], pixels, photometric="rgb", ome=True,
                         metadata={"axes": "YXS", "PhysicalSizeX": um, "PhysicalSizeY": um})
    out = {}
    for name, path, rescale in (("fine", paths["fine"], True), ("coarse", paths["coarse"], True),
                                ("native", paths["coarse"], False)):
        result = segment(path, d / f"{name}.ome.zarr", model=MODEL, device="cpu", rescale=rescale, progress=False)
        labels = zarr.open_array(str(d / f"{name}.ome.zarr"), path="labels/instances/0")[:]
        out[name] = (labels if name == "fine" else np.repeat(np.repeat(labels, 2, 0), 2, 1), result.extra["scale"])
    return out


def test_a_field_at_half_the_resolution_gives_the_same_nuclei(outputs):
    (fine, fine_scale), (coarse, coarse_scale) = outputs["fine"], outputs["coarse"]
    assert fine_scale.startswith("scale 1 (none: slide 0.25 um/px from the file, model 0.25 um/px")
    assert coarse_scale == "scale 2.00 (slide 0.50 um/px from the file, model 0.25 um/px)"
    assert fine.shape == coarse.shape == (1000, 1000) and fine.max() > 300
    assert f1_at_half(fine, coarse) >= 0.9


def test_without_rescaling_the_nuclei_differ(outputs):
    """The scale matters: the network run at the coarse field's own pixels finds other nuclei."""
    (fine, _), (coarse, _), (native, native_scale) = outputs["fine"], outputs["coarse"], outputs["native"]
    assert native_scale == "scale 1 (none: --no-rescale)"
    assert f1_at_half(fine, native) < f1_at_half(fine, coarse) - 0.1
