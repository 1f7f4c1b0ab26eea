"""`biounet evaluate` and `biounet tune` on folders of RGB images (MoNuSeg H&E, DSB2018 brightfield):
AJI and PQ in the table and the CSV, predictions from a folder or from a model."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests.conftest import eroded_labels, make_model
from tests.conftest import invoke as cli
from tests.evaluate.test_aji_pq import reference

MONUSEG = ("TCGA-21-5784-01Z-00-DX1", "TCGA-HE-7129-01Z-00-DX1")
DSB_BRIGHT = "0d3640c1f1b80f24e94cc9a5f3e1d9e8db7bf6af7d4aba920265f46cadc25e37"  # 256 x 320 RGB, val


@pytest.fixture(scope="module")
def rgb(shared_data: Path, tmp_path_factory) -> Path:
    """images/ (uint8 RGB): two 256 px MoNuSeg crops and a DSB2018 brightfield image; labels/; eroded/: the
    labels shrunk by 1 px, as predictions."""
    root = tmp_path_factory.mktemp("rgb")
    for sub in ("images", "labels", "eroded"):
        (root / sub).mkdir()
    sources = [(shared_data / "monuseg" / "train", name, np.s_[300:556, 400:656]) for name in MONUSEG]
    sources.append((shared_data / "dsb2018" / "val", DSB_BRIGHT, np.s_[:, :]))
    for folder, name, crop in sources:
        image = tifffile.imread(folder / "images" / f"{name}.tif")[crop]
        labels = tifffile.imread(folder / "labels" / f"{name}.tif")[crop]
        assert image.ndim == 3 and image.shape[-1] == 3 and image.dtype == np.uint8
        tifffile.imwrite(root / "images" / f"{name}.tif", image)
        tifffile.imwrite(root / "labels" / f"{name}.tif", labels)
        tifffile.imwrite(root / "eroded" / f"{name}.tif", eroded_labels(labels))
    return root


def rows_of(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path)))


def test_predicted_label_folder(rgb, tmp_path):
    out = tmp_path / "scores.csv"
    r = cli("evaluate", "--labels", rgb / "labels", "--pred", rgb / "eroded", "--csv", out)
    assert r.returncode == 0, r.output
    header = r.output.splitlines()[0].split()
    assert header[header.index("average_f1") + 1 : header.index("average_f1") + 5] == ["aji", "pq", "sq", "rq"]
    rows = rows_of(out)
    assert [row["image"] for row in rows] == [*sorted([*MONUSEG, DSB_BRIGHT]), "ALL (3)"]
    refs = []
    for row in rows[:-1]:
        labels = tifffile.imread(rgb / "labels" / f"{row['image']}.tif")
        refs.append(reference(labels, tifffile.imread(rgb / "eroded" / f"{row['image']}.tif")))
        for key in ("aji", "pq", "sq", "rq"):
            assert float(row[key]) == pytest.approx(refs[-1][key], abs=1e-12), (row["image"], key)
        assert float(row["rq"]) == pytest.approx(float(row["f1_0.50"]), abs=1e-15)
        assert 0.6 < float(row["aji"]) < 0.95  # 1 px off costs small nuclei a lot
        # each predicted object lies inside its own true one: C is the predicted foreground, U the true one
        assert float(row["aji"]) == pytest.approx(float(row["pixel_iou"]), abs=1e-12)
    summary = rows[-1]
    assert float(summary["aji"]) == pytest.approx(np.mean([ref["aji"] for ref in refs]), abs=1e-12)
    pooled = sum(ref["aji_intersection"] for ref in refs) / sum(ref["aji_union"] for ref in refs)
    assert float(summary["aji_pooled"]) == pytest.approx(pooled, abs=1e-12)
    assert float(summary["pq"]) == pytest.approx(np.mean([ref["pq"] for ref in refs]), abs=1e-12)
    assert {"pq_pooled", "sq_pooled", "rq_pooled"} <= set(summary) and rows[0]["pq_pooled"] == ""


def test_model_on_rgb_images(rgb, tiny_model, tmp_path):
    rgb_model = make_model(tmp_path / "rgb.pt", in_channels=3, target="3class",
                           normalization={"method": "percentile", "low": 1.0, "high": 99.8})
    r = cli("evaluate", "--labels", rgb / "labels", "--images", rgb / "images", "--model", rgb_model,
            "--device", "cpu", "--csv", tmp_path / "m.csv")
    assert r.returncode == 0, r.output
    rows = rows_of(tmp_path / "m.csv")
    assert len(rows) == 4 and all(0 <= float(row[k]) <= 1 for row in rows for k in ("aji", "pq", "sq", "rq"))
    # a one-channel model: a one-line error that says what to do, and --channel picks one
    r = cli("evaluate", "--labels", rgb / "labels", "--images", rgb / "images", "--model", tiny_model,
            "--device", "cpu")
    assert r.returncode == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert "has 3 channel(s) and the model takes 1" in r.output and "--channel" in r.output
    r = cli("evaluate", "--labels", rgb / "labels", "--images", rgb / "images", "--model", tiny_model,
            "--channel", "2", "--device", "cpu")
    assert r.returncode == 0 and "ALL (3)" in r.output, r.output
    # the images given as predictions
    r = cli("evaluate", "--labels", rgb / "labels", "--pred", rgb / "images")
    assert r.returncode == 2 and len(r.output.strip().splitlines()) == 1 and "not the images" in r.output


def test_tune_reports_aji_and_pq(rgb, tmp_path):
    rgb_model = make_model(tmp_path / "rgb.pt", in_channels=3, target="3class")
    r = cli("tune", "--model", rgb_model, "--images", rgb / "images", "--labels", rgb / "labels", "--cross-fit",
            "--select-by", "aji", "--device", "cpu")
    assert r.returncode == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].endswith("chosen by aji") and {"aji", "pq"} <= set(lines[1].split())
    assert lines[-1].startswith("cross-fitted AJI ")
    r = cli("tune", "--model", rgb_model, "--images", rgb / "images", "--labels", rgb / "labels", "--cross-fit",
            "--select-by", "dice")
    assert r.returncode == 2 and "dice" in r.output
