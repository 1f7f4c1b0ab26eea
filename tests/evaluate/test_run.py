"""`biounet evaluate` on folders: perfect predictions, a classical baseline, a model, membranes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from biounet.evaluate.membranes import THRESHOLDS, membrane_summary
from biounet.evaluate.run import evaluate
from biounet.model.file import default_model_path
from biounet.read.files import DataError
from tests.conftest import invoke as cli
from tests.conftest import run_biounet as biounet


@pytest.fixture(scope="module")
def val(shared_data: Path, tmp_path_factory) -> Path:
    """Three BBBC039 validation images with labels, and an Otsu + components baseline."""
    root = tmp_path_factory.mktemp("val")
    src = shared_data / "bbbc039" / "val"
    for sub in ("images", "labels", "otsu"):
        (root / sub).mkdir()
    for path in sorted((src / "images").glob("*.tif"))[:3]:
        image = tifffile.imread(path)
        tifffile.imwrite(root / "images" / path.name, image)
        tifffile.imwrite(root / "labels" / path.name, tifffile.imread(src / "labels" / path.name))
        baseline = ndi.label(image > threshold_otsu(image))[0].astype(np.uint16)
        tifffile.imwrite(root / "otsu" / path.name, baseline)
    return root


def test_labels_against_themselves_score_perfectly(val, tmp_path):
    out = tmp_path / "scores.csv"
    r = biounet("evaluate", "--labels", val / "labels", "--pred", val / "labels", "--csv", out)
    assert r.returncode == 0, r.stderr
    assert "average_f1" in r.stdout and "ALL (3)" in r.stdout
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 4 and rows[-1]["image"] == "ALL (3)"
    for row in rows:
        assert float(row["average_f1"]) == 1.0 and float(row["f1_0.90"]) == 1.0
        assert row["missed"] == row["extra"] == row["splits"] == row["merges"] == "0"
        assert float(row["pixel_iou"]) == float(row["pixel_dice"]) == 1.0
    assert "pixel_error" not in rows[0]  # instance labels: no membrane columns
    assert int(rows[-1]["n_true"]) == sum(int(r["n_true"]) for r in rows[:3]) > 100


def test_classical_baseline(val):
    table = evaluate(val / "labels", pred_dir=val / "otsu")
    s = table.summary
    assert 0.2 < s["average_f1"] < 0.95 and s["f1_0.50"] >= s["f1_0.90"]
    assert s["merges"] > 0  # touching nuclei merge under a global threshold
    assert 0.6 < s["pixel_iou"] < 1
    text = table.format()
    assert len(text.splitlines()) == 3 + 3 + 1


def test_model_on_images(val, tiny_model, tmp_path):
    two = tmp_path / "labels"
    two.mkdir()
    for path in sorted((val / "labels").glob("*.tif"))[:2]:
        (two / path.name).write_bytes(path.read_bytes())
    r = cli("evaluate", "--labels", two, "--model", tiny_model, "--images", val / "images", "--device", "cpu",
                "--csv", tmp_path / "m.csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert len(rows) == 3 and all(0 <= float(r["average_f1"]) <= 1 for r in rows)


def test_membrane_scores(shared_data, tmp_path):
    labels = shared_data / "isbi2012" / "train" / "labels"
    subset = tmp_path / "labels"
    subset.mkdir()
    for name in ("slice16.tif", "slice17.tif"):
        (subset / name).write_bytes((labels / name).read_bytes())
    table = evaluate(subset, pred_dir=subset)
    assert table.membrane
    assert table.summary["pixel_error"] == 0 and table.summary["rand_error"] == pytest.approx(0, abs=1e-12)
    eroded = tmp_path / "eroded"
    eroded.mkdir()
    for name in ("slice16.tif", "slice17.tif"):
        mask = tifffile.imread(subset / name)
        tifffile.imwrite(eroded / name, ndi.binary_erosion(mask, iterations=2).astype(np.uint8))
    worse = evaluate(subset, pred_dir=eroded).summary
    assert 0 < worse["pixel_error"] < 0.3 and worse["rand_error"] < 0.2  # thicker membranes, same cells
    assert worse["v_rand"] > 0.99 and worse["v_info"] > 0.99  # thinned away


def test_membrane_model_takes_the_data_sets_best_threshold(shared_data, tiny_model, tmp_path):
    """A model's interior probability is scored at every challenge threshold; the summary row takes the best
    one for both slices together, each slice's row its own."""
    src = shared_data / "isbi2012" / "train"
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
        for name in ("slice18.tif", "slice19.tif"):
            tifffile.imwrite(tmp_path / sub / name, tifffile.imread(src / sub / name)[:200, :200])
    table = evaluate(tmp_path / "labels", model=tiny_model, images_dir=tmp_path / "images", device="cpu")
    assert all(len(s.curves.thresholds) == len(THRESHOLDS) for s in table.scores)
    assert table.summary["rand_error"] == membrane_summary([s.curves for s in table.scores]).rand_error
    assert table.summary["rand_threshold"] in THRESHOLDS
    for row, s in zip(table.rows, table.scores):
        assert row["rand_error"] == membrane_summary([s.curves]).rand_error
    r = cli("evaluate", "--labels", tmp_path / "labels", "--images", tmp_path / "images", "--model", tiny_model,
            "--device", "cpu", "--csv", tmp_path / "s.csv")
    assert r.returncode == 0 and "v_rand" in r.output.splitlines()[0], r.output
    columns = next(csv.DictReader(open(tmp_path / "s.csv")))
    assert {"pixel_error", "rand_error", "rand_threshold", "v_rand", "v_info"} <= set(columns)


def test_errors(val, tmp_path):
    (tmp_path / "few").mkdir()
    first = sorted((val / "labels").glob("*.tif"))[0]
    (tmp_path / "few" / first.name).write_bytes(first.read_bytes())
    with pytest.raises(DataError, match="no prediction for 2"):
        evaluate(val / "labels", pred_dir=tmp_path / "few")
    r = cli("evaluate", "--labels", val / "labels", "--pred", tmp_path / "few")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "no prediction" in r.stderr
    r = cli("evaluate", "--labels", val / "labels")
    assert r.returncode == 2 and "--pred" in r.stderr


def test_folder_normalisation_on_fields_with_debris(shared_data, tmp_path):
    """A bright clump takes the top percentile of its own field; the folder's statistics are not thrown off."""
    src = shared_data / "bbbc039" / "val"
    wells = ("L11_s4", "G22_s3", "G22_s5", "H11_s6", "D02_s8", "N12_s7")  # one field with debris, five without
    names = [next((src / "images").glob(f"IXMtest_{well}_*.tif")).name for well in wells]
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
        for name in names:
            (tmp_path / sub / name).symlink_to(src / sub / name)
    by_scope = {
        over: {row["image"]: row for row in evaluate(tmp_path / "labels", model=default_model_path(),
                                                     images_dir=tmp_path / "images", normalize_over=over).rows}
        for over in ("image", "folder")
    }
    debris = names[0][: -len(".tif")]
    assert by_scope["folder"][debris]["f1_0.50"] >= 0.85, by_scope["folder"][debris]
    assert by_scope["folder"][debris]["f1_0.50"] > by_scope["image"][debris]["f1_0.50"]
    r = cli("evaluate", "--labels", tmp_path / "labels", "--images", tmp_path / "images", "--model",
            default_model_path(), "--normalize-over", "slide")
    assert r.exit_code == 2 and "slide" in r.output
