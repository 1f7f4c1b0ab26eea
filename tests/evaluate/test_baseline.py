import numpy as np
import tifffile

from biounet.evaluate.baseline import classical_nuclei
from biounet.evaluate.metrics import instance_scores


def test_classical_baseline_finds_real_nuclei(shared_data):
    folder = shared_data / "bbbc039" / "val"
    name = sorted((folder / "images").glob("*.tif"))[1].name
    pred = classical_nuclei(tifffile.imread(folder / "images" / name))
    scores = instance_scores(tifffile.imread(folder / "labels" / name), pred)
    assert pred.dtype == np.int32 and pred.max() > 10
    assert 0.5 < scores.f1[0] < 1.0  # a fair baseline, not a perfect one
