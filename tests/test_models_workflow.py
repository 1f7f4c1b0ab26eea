"""workflows/models.sh: the membranes run on the real ISBI 2012 slices, tiny, started, parked and resumed;
the nuclei splits and the nuclei ship step."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from biounet.model.file import load_model
from tests.conftest import SHARED_DATA, make_model

SCRIPT = Path(__file__).resolve().parents[1] / "workflows" / "models.sh"
TINY = ["--width", "4", "--tile", "252"]  # after the run's own options: these win


def models_sh(runs: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "RUNS": str(runs), "DATA": str(SHARED_DATA), "BIOUNET": f"{sys.executable} -m biounet",
                   "NICE": "0", **env}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=environment)


def test_list_names_every_run(tmp_path):
    r = models_sh(tmp_path, "list")
    assert r.returncode == 0, r.stderr
    assert [line.split()[0] for line in r.stdout.splitlines()][:2] == ["membranes", "membranes-w32"]
    assert "nuclei-binary-w16" in r.stdout and "nuclei-distance-w16" in r.stdout and "he-w16-dsb" in r.stdout
    r = models_sh(tmp_path, "nuclei-w64")
    assert r.returncode == 2 and "unknown run 'nuclei-w64'" in r.stderr


def test_he_splits_hold_every_organ_group_in_each_half(shared_data, tmp_path):
    """MoNuSeg's 30 tiles: 8 choose (2 of each large organ group), cross-fitting's halves (names sorted,
    alternate) hold one of each group; 22 train; DSB2018's colour tiles by its own split."""
    from biounet.evaluate.tune import halves

    r = models_sh(tmp_path, "splits")
    assert r.returncode == 0, r.stderr
    names = lambda folder: sorted(p.stem for p in (tmp_path / "data" / folder / "images").iterdir())  # noqa: E731
    sel, train = names("MONU-SEL8"), names("MONU-TRAIN22")
    assert len(sel) == 8 and len(train) == 22 and not set(sel) & set(train)
    assert set(sel) | set(train) == {p.stem for p in (shared_data / "monuseg/train/images").iterdir()}
    assert names("MONU-SEL8") == sorted(p.stem for p in (tmp_path / "data" / "MONU-SEL8" / "labels").iterdir())
    # tissue source sites of the TCGA ids: lung (21, 49), breast (A7, AR, E2), kidney (B0, HE), prostate (CH, G9)
    organ = {"21": "lung", "49": "lung", "A7": "breast", "AR": "breast", "E2": "breast", "B0": "kidney",
             "HE": "kidney", "CH": "prostate", "G9": "prostate"}
    for half in halves(sel):
        assert sorted(organ[n.split("-")[1]] for n in half) == ["breast", "kidney", "lung", "prostate"]
    manifest = [line.split(",") for line in (shared_data / "dsb2018/manifest.csv").read_text().splitlines()[1:]]
    for split, folder in (("train", "DSB-BRIGHT-TRAIN"), ("val", "DSB-BRIGHT-VAL")):
        assert names(folder) == sorted(row[0] for row in manifest if row[1] == "bright" and row[6] == split)
    assert len(names("HE-TRAIN-DSB")) == 22 + len(names("DSB-BRIGHT-TRAIN"))


def test_membranes_run_starts_parks_and_resumes(shared_data, tmp_path):
    r = models_sh(tmp_path, "membranes", *TINY, ITERATIONS="2", VAL_EVERY="2", SNAPSHOT_EVERY="1")
    assert r.returncode == 0, r.stderr
    assert "--target binary --w0 10 --sigma 5 --depth 5" in r.stderr and "--metric rand_error" in r.stderr
    assert sorted(p.name for p in (tmp_path / "data" / "isbi-train" / "labels").iterdir())[-1] == "slice15.tif"
    assert sorted(p.name for p in (tmp_path / "data" / "isbi-val" / "images").iterdir()) == [
        f"slice{i}.tif" for i in range(16, 20)]
    _, spec = load_model(tmp_path / "membranes.pt")
    prov = spec.provenance
    assert spec.target == "binary" and spec.unet.padding == "valid" and prov["w0"] == 10 and prov["sigma"] == 5
    assert prov["metric"] == "rand_error" and prov["images_count"] == 16 and prov["augment"]
    assert {"rand_error", "pixel_error", "v_rand", "v_info"} <= set(prov["validation"])
    assert [p.name for p in sorted(tmp_path.glob("membranes.it*.pt"))] == ["membranes.it000001.pt",
                                                                          "membranes.it000002.pt"]

    ckpt = tmp_path / "membranes.pt.ckpt"
    r = models_sh(tmp_path, "park", "membranes")
    assert r.returncode == 0 and not ckpt.exists() and (tmp_path / "membranes.pt.ckpt.part-00").is_file()
    r = models_sh(tmp_path, "membranes", ITERATIONS="3", VAL_EVERY="2")
    assert r.returncode == 0, r.stderr
    assert "joined 1 parts" in r.stderr and f"--resume {ckpt}" in r.stderr
    rows = list(csv.DictReader(open(tmp_path / "membranes.log.csv")))
    assert [int(row["iteration"]) for row in rows] == [1, 2, 3] and rows[-1]["val_rand_error"]
    r = models_sh(tmp_path, "evaluate", "membranes", TTA="flips")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "membranes.isbi-val.flips.csv").is_file() and "rand_error" in r.stdout
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    r = models_sh(tmp_path, "ship", "membranes", SHIP_TO=str(shipped), PYTHON=sys.executable)
    assert r.returncode == 0, r.stderr
    _, spec = load_model(shipped / "membranes.pt")
    threshold = spec.postprocess["params"]["threshold"]
    tuned = spec.provenance["postprocess_tuned_on"]
    assert tuned["metric"] == "rand_error" and tuned["count"] == 4 and f"threshold {threshold}" in r.stdout
    assert threshold in [round(t / 10, 2) for t in range(11)]
    r = models_sh(tmp_path, "clean", "membranes")
    assert r.returncode == 0 and not list(tmp_path.glob("membranes.pt.ckpt*"))
    assert (tmp_path / "membranes.pt").is_file()


def test_nuclei_ship_scores_the_images_that_chose_nothing(shared_data, tmp_path):
    """VAL40 chooses, GUARD10 (the other 10 of bbbc039/val) only reports: the shipped file carries its
    scores there."""
    make_model(tmp_path / "cand.selected.pt", target="3class", normalization={"method": "percentile", "low": 1.0,
                                                                             "high": 99.8, "over": "folder"})
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    r = models_sh(tmp_path, "ship", "nuclei", "cand", SHIP_TO=str(shipped), PYTHON=sys.executable)
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in (shared_data / "bbbc039" / "val" / "images").iterdir())
    for split, expected in (("VAL10", names[:10]), ("VAL40", names[:40]), ("GUARD10", names[40:])):
        for sub in ("images", "labels"):
            assert sorted(p.name for p in (tmp_path / "data" / split / sub).iterdir()) == expected
    _, spec = load_model(shipped / "nuclei.pt")
    held_out = spec.provenance["held_out"]
    assert held_out["count"] == 10 and "GUARD10" in held_out["images"] and 0 <= held_out["average_f1"] <= 1
    assert f"average_f1 {held_out['average_f1']:.4f}" in r.stdout
    assert spec.target == "3class" and spec.unet.width == 4  # the candidate itself


def test_generalist_ships_with_both_data_sets_terms_and_its_own_diameter(shared_data, tmp_path):
    """A generalist run ships as nuclei-general.pt with BBBC039 + DSB2018's facts (CC0, both Caicedo
    papers), the diameter its training measured, and its GUARD10 scores."""
    make_model(tmp_path / "nuclei-general-cand.selected.pt", target="3class", diameter=25.83,
               normalization={"method": "percentile", "low": 1.0, "high": 99.8})
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    r = models_sh(tmp_path, "ship", "nuclei-general", "nuclei-general-cand", SHIP_TO=str(shipped),
                  PYTHON=sys.executable)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in shipped.iterdir()) == ["nuclei-general.pt"]
    _, spec = load_model(shipped / "nuclei-general.pt")
    data = spec.training_data
    assert "BBBC039" in data.name and "DSB2018" in data.name and data.license == "CC0-1.0"
    assert {c.doi for c in data.cite} >= {"10.1002/cyto.a.23863", "10.1038/s41592-019-0612-7"}
    assert spec.diameter == 25.83 and spec.pixel_size is None
    assert spec.provenance["held_out"]["count"] == 10
    assert "dsb2018/val" in spec.provenance["postprocess_tuned_on"]["images"]
    r = models_sh(tmp_path, "ship", "nuclei-general")
    assert r.returncode == 2 and "usage: models.sh ship" in r.stderr


def test_he_ship_carries_monuseg_terms_scale_and_the_training_tiles_diameter(shared_data, tmp_path):
    """he-nuclei ships with MoNuSeg's terms, 0.25 um/px, and the median nucleus diameter of the 22 training
    tiles (the 8 selection tiles left out, as training left them out)."""
    import numpy as np
    import tifffile

    make_model(tmp_path / "he-cand.selected.pt", target="3class", in_channels=3,
               normalization={"method": "fixed", "low": 0, "high": 255})
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    r = models_sh(tmp_path, "ship", "he-nuclei", "he-cand", SHIP_TO=str(shipped), PYTHON=sys.executable)
    assert r.returncode == 0, r.stderr
    _, spec = load_model(shipped / "he-nuclei.pt")
    assert spec.training_data.name.startswith("MoNuSeg") and "NC-SA" in spec.training_data.license
    assert spec.pixel_size == 0.25
    train = sorted((tmp_path / "data" / "MONU-TRAIN22" / "labels").iterdir())
    areas = np.concatenate([np.bincount(tifffile.imread(f).ravel())[1:] for f in train])
    assert len(train) == 22 and spec.diameter == pytest.approx(np.median(2 * np.sqrt(areas[areas > 0] / np.pi)), abs=0.01)
    assert "MONU-SEL8" in spec.provenance["postprocess_tuned_on"]["images"]


@pytest.mark.parametrize("command", [["park", "membranes"], ["select", "nuclei-w32"], ["ship", "nuclei", "nope"],
                                     ["ship", "nuclei"]])
def test_missing_inputs_fail_in_one_line(tmp_path, command):
    r = models_sh(tmp_path, *command)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "models.sh:" in r.stderr
