"""`biounet tune`: post-processing chosen on real validation images, consistent with `evaluate`."""

from __future__ import annotations

import pytest

from biounet.evaluate.run import evaluate
from biounet.evaluate.tune import GRIDS, candidates
from biounet.model.file import default_model_path, load_model
from tests.conftest import invoke as cli


def test_candidates_start_with_the_current_setting():
    base = {"expand": 4, "min_size": 10}
    grid = candidates("watershed_3class", base)
    assert grid[0] == base and grid.count(base) == 1
    assert len(grid) == len(GRIDS["watershed_3class"]["expand"]) * len(GRIDS["watershed_3class"]["min_size"])


@pytest.fixture(scope="module")
def fields(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("fields")
    src = shared_data / "bbbc039" / "val"
    for sub in ("images", "labels"):
        (root / sub).mkdir()
        for path in sorted((src / sub).glob("*.tif"))[12:15]:
            (root / sub / path.name).symlink_to(path)
    return root


def test_tuned_model_scores_what_tune_reported(fields, tmp_path):
    out = tmp_path / "tuned.pt"
    r = cli("tune", "--model", default_model_path(), "--images", fields / "images", "--labels", fields / "labels",
            "--out", out)
    assert r.returncode == 0, r.output
    lines = r.output.splitlines()
    assert lines[-1].startswith("chose {") and str(out) in lines[-1]
    _, spec = load_model(out)
    params = spec.postprocess["params"]
    assert spec.postprocess["name"] == load_model(default_model_path())[1].postprocess["name"]
    assert spec.provenance["postprocess_tuned_on"]["count"] == 3
    before = evaluate(fields / "labels", model=default_model_path(), images_dir=fields / "images").summary
    after = evaluate(fields / "labels", model=out, images_dir=fields / "images").summary
    assert after["average_f1"] >= before["average_f1"]
    assert after["average_f1"] == pytest.approx(spec.provenance["postprocess_tuned_on"]["average_f1"])
    assert f"{after['average_f1']:.4f}" in lines[-1] and set(params) == {"expand", "min_size"}


def test_refuses_to_replace_its_input(fields, tmp_path):
    model = tmp_path / "m.pt"
    model.write_bytes(default_model_path().read_bytes())
    r = cli("tune", "--model", model, "--images", fields / "images", "--labels", fields / "labels", "--out", model,
            "--overwrite")
    assert r.returncode == 2 and "choose another --out" in r.output
    assert model.read_bytes() == default_model_path().read_bytes()


def test_encoder_model_is_tuned_and_evaluated(fields, tiny_encoder_model, tmp_path):
    out = tmp_path / "tuned.pt"
    r = cli("tune", "--model", tiny_encoder_model, "--images", fields / "images", "--labels", fields / "labels",
            "--out", out, "--device", "cpu")
    assert r.returncode == 0, r.output
    net, spec = load_model(out)
    assert spec.unet == load_model(tiny_encoder_model)[1].unet and spec.unet.encoder == "resnet18"
    r = cli("evaluate", "--labels", fields / "labels", "--images", fields / "images", "--model", out,
            "--device", "cpu", "--csv", tmp_path / "scores.csv")
    assert r.returncode == 0, r.output
    summary = evaluate(fields / "labels", model=out, images_dir=fields / "images", device="cpu").summary
    assert summary["average_f1"] == pytest.approx(spec.provenance["postprocess_tuned_on"]["average_f1"])
    assert "ALL (3)" in r.output
