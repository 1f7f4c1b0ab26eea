"""Named models: `--model nuclei|membranes|PATH` wherever a model is taken."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile

import biounet.model.names as models
from biounet.model.file import default_model_path, load_model
from biounet.model.names import ModelNameError, resolve_model
from biounet.plan.run import file_digest
from biounet.write.runfolder import RunFolder
from tests.conftest import invoke, run_biounet


@pytest.fixture
def weights(tmp_path, monkeypatch):
    """An empty weights folder for this test: what a build ships is what is put in it."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr(models, "WEIGHTS", folder)
    return folder


def test_names_resolve_to_the_shipped_files():
    assert resolve_model(None) == resolve_model("nuclei") == default_model_path()
    assert default_model_path().is_file() and default_model_path().parent.name == "weights"
    if "membranes" not in models.shipped():
        with pytest.raises(ModelNameError, match="'membranes' is not shipped in this build"):
            resolve_model("membranes")


def test_a_file_wins_over_a_name(tmp_path, monkeypatch, tiny_model):
    monkeypatch.chdir(tmp_path)
    shutil.copy(tiny_model, tmp_path / "nuclei")
    assert resolve_model("nuclei").resolve() == (tmp_path / "nuclei").resolve()
    assert load_model("nuclei")[1].unet.width == 4  # the file here, not the shipped width-16 model


def test_dropping_a_file_into_weights_ships_it(weights, tiny_model):
    with pytest.raises(ModelNameError, match="membranes.pt is not in"):
        resolve_model("membranes")
    shutil.copy(tiny_model, weights / "membranes.pt")
    assert resolve_model("membranes") == weights / "membranes.pt"
    assert models.shipped() == ["membranes"]
    r = invoke("info", "--model", "membranes", "--json")
    assert r.returncode == 0, r.output
    assert '"shipped_as": "membranes"' in r.output and '"width": 4' in r.output


def test_cli_errors_are_one_line(tmp_path):
    slide = tmp_path / "field.tif"
    tifffile.imwrite(slide, np.zeros((64, 64), np.uint16))
    if "membranes" not in models.shipped():
        for args in (("info", "--model", "membranes"), ("segment", slide, "--model", "membranes")):
            r = run_biounet(*args)
            assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
            assert "'membranes' is not shipped in this build" in r.stderr and "Traceback" not in r.stderr
    r = run_biounet("evaluate", "--labels", tmp_path, "--images", tmp_path, "--model", "mebranes")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "model file not found: mebranes" in r.stderr and "nuclei" in r.stderr and "membranes" in r.stderr
    r = run_biounet("info")
    assert r.returncode == 2 and "--model" in r.stderr


def test_info_names_the_shipped_model():
    r = invoke("info", "--model", "nuclei")
    assert r.returncode == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "shipped_as: nuclei" and lines[1] == f"file: {default_model_path()}"
    assert "target: 3class" in lines
    assert invoke("info", "nuclei").output == r.output  # a bare name, when no such file is here


def test_segment_evaluate_tune_and_train_take_names(tmp_path, weights, tiny_model, shared_data):
    """Every command that takes a model takes a name (here a tiny model shipped as 'membranes')."""
    shutil.copy(tiny_model, weights / "membranes.pt")
    src = shared_data / "isbi2012" / "train"
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
        image = tifffile.imread(src / sub / "slice16.tif")[:96, :96]
        tifffile.imwrite(tmp_path / sub / "slice16.tif", image)
    out = tmp_path / "s.ome.zarr"
    r = invoke("segment", tmp_path / "images" / "slice16.tif", "-o", out, "--model", "membranes", "--device", "cpu",
               "--quiet")
    assert r.returncode == 0, r.output
    assert RunFolder(out, 2).read_record()["params"]["model_sha256"] == file_digest(tiny_model)
    r = invoke("evaluate", "--labels", tmp_path / "labels", "--images", tmp_path / "images", "--model", "membranes",
               "--device", "cpu")
    assert r.returncode == 0 and "ALL (1)" in r.output and "v_rand" in r.output, r.output
    r = invoke("tune", "--model", "membranes", "--images", tmp_path / "images", "--labels", tmp_path / "labels",
               "--out", tmp_path / "tuned.pt", "--device", "cpu")
    assert r.returncode == 0 and load_model(tmp_path / "tuned.pt")[1].unet.width == 4, r.output
