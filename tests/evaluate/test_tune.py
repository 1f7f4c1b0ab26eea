"""`biounet tune`: post-processing chosen on real validation images, consistent with `evaluate`."""

from __future__ import annotations

import numpy as np
import pytest

from biounet.evaluate.run import evaluate, score, summarize
from biounet.evaluate.tune import GRIDS, _examples, candidates, choose, cross_fit, halves, headline
from biounet.label.instances import postprocess
from biounet.model.file import default_model_path, load_model
from biounet.read.files import DataError
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


def test_halves_alternate_by_sorted_name():
    names = ["d", "b", "e", "a", "c"]
    assert halves(names) == (["a", "c", "e"], ["b", "d"])
    assert halves(list(reversed(names))) == halves(names)


def test_cross_fit_scores_each_half_with_the_other_halfs_choice(fields):
    """Real fields: each fold's setting is what tuning on its half alone chooses, its figure what that
    setting scores on the other half alone; the reported figure is the mean of the two."""
    _, _, name, base, examples = _examples(default_model_path(), fields / "images", fields / "labels",
                                           device="cpu", channels=None, tile=None, normalize_over=None)
    result = cross_fit(name, base, examples)
    by_name = {example[0]: example for example in examples}
    assert sorted(result.halves["A"] + result.halves["B"]) == sorted(by_name)
    assert [len(result.halves[h]) for h in "AB"] == [2, 1]
    for fold in result.folds:
        tuning = [by_name[n] for n in result.halves[fold["tuned_on"]]]
        held_out = [by_name[n] for n in result.halves[fold["scored_on"]]]
        assert fold["params"] == choose(name, base, tuning)[0]
        scores = [score(n, lab, postprocess(name, out, **fold["params"])) for n, lab, out in held_out]
        assert fold["held_out"] == headline(summarize(scores))
    for key in ("average_f1", "f1_0.50", "f1_0.90", "aji", "pq"):
        assert result.held_out[key] == pytest.approx(np.mean([f["held_out"][key] for f in result.folds]))
    assert result.held_out["merges"] == sum(f["held_out"]["merges"] for f in result.folds)
    assert result.in_sample["average_f1"] >= result.as_is["average_f1"]
    assert result.as_is_params == base
    with pytest.raises(DataError, match="at least 2"):
        cross_fit(name, base, examples[:1])


def test_choosing_by_aji(fields):
    """--select-by aji: every choice (each half, all images) is the setting of highest mean AJI."""
    _, _, name, base, examples = _examples(default_model_path(), fields / "images", fields / "labels",
                                           device="cpu", channels=None, tile=None, normalize_over=None)
    result = cross_fit(name, base, examples, select_by="aji")
    by_name = {example[0]: example for example in examples}
    for fold in result.folds:
        params, rows = choose(name, base, [by_name[n] for n in result.halves[fold["tuned_on"]]], select_by="aji")
        assert fold["params"] == params and fold["tuned"]["aji"] == max(row["aji"] for row in rows)
    params, rows = choose(name, base, examples, select_by="aji")
    assert result.in_sample_params == params and result.in_sample["aji"] == max(row["aji"] for row in rows)
    by_f1 = choose(name, base, examples)[1]
    assert [row["aji"] for row in rows] == [row["aji"] for row in by_f1]  # the same rows, another choice
    assert len({row["aji"] for row in rows}) > 1  # the choice is a real one


def test_cross_fit_chooses_the_checkpoint_too(fields, tiny_model, tmp_path):
    """Two candidate models: an untrained one and the shipped one. Each half chooses the shipped network
    (with its post-processing); --out writes the choice made on all images."""
    out = tmp_path / "chosen.pt"
    r = cli("tune", "--model", tiny_model, "--model", "nuclei", "--images", fields / "images", "--labels",
            fields / "labels", "--cross-fit", "--out", out, "--device", "cpu")
    assert r.returncode == 0, r.output
    rows = r.output.splitlines()
    assert rows[0].startswith("cross-fit on 3 images") and "A: 2 images, B: 1 images" in rows[0]
    assert rows[2].startswith("B (1)") and rows[3].startswith("A (2)") and rows[4].startswith("held out")
    assert "model=nuclei.pt" in rows[2] and "model=nuclei.pt" in rows[3]  # both folds
    assert "model=tiny.pt" in rows[5]  # "as is": the first candidate, the untrained one
    held_out = dict(zip(rows[1].split()[-9:], rows[4].split()[-9:]))  # the figures, by column
    assert float(held_out["average_f1"]) > 0.8 and float(held_out["aji"]) > 0.6 and rows[-1].endswith("(tuned on all)")
    _, spec = load_model(out)
    assert spec.unet.width == 16 and spec.postprocess["name"] == "watershed_3class"
    r = cli("tune", "--model", tiny_model, "--model", "nuclei", "--images", fields / "images", "--labels",
            fields / "labels", "--out", out, "--overwrite")
    assert r.returncode == 2 and "--cross-fit" in r.output
    r = cli("tune", "--model", "nuclei", "--images", fields / "images", "--labels", fields / "labels")
    assert r.returncode == 2 and "--out" in r.output and "--cross-fit" in r.output


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


def test_progress_counts_every_setting_scored_on_every_image(fields, tiny_model, capsys):
    """Long tuning runs (a run's snapshots on a hundred images) show how far they are: the bar counts
    settings x images over all the models, and says which model it is on."""
    from biounet.evaluate.tune import tune_cross_fit

    tune_cross_fit([tiny_model, tiny_model], fields / "images", fields / "labels", device="cpu", progress=True)
    err = capsys.readouterr().err
    total = 2 * len(candidates("components", {"threshold": 0.5, "min_size": 10})) * 3
    assert f"{total}/{total}" in err and "model 2/2: scoring" in err and "scores/s" in err
    tune_cross_fit(tiny_model, fields / "images", fields / "labels", device="cpu")
    assert capsys.readouterr().err == ""  # off unless asked
