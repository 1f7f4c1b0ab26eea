"""Training: a short real run whose loss decreases, and exact resume from a checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from biounet.evaluate.run import evaluate
from biounet.model.file import load_model, read_model_payload
from biounet.train.loop import (
    CheckpointError,
    TrainConfig,
    checkpoint_path,
    config_from_checkpoint,
    log_paths,
    read_checkpoint,
    train,
)
from tests.conftest import invoke as cli
from tests.conftest import run_biounet as biounet


@pytest.fixture(scope="module")
def crops(shared_data: Path, tmp_path_factory) -> Path:
    """256 x 256 crops of real BBBC039 images: 4 from the training split, 2 from validation."""
    root = tmp_path_factory.mktemp("bbbc039")
    for split, n in (("train", 4), ("val", 2)):
        src = shared_data / "bbbc039" / split
        for sub in ("images", "labels"):
            (root / split / sub).mkdir(parents=True)
        for path in sorted((src / "images").glob("*.tif"))[:n]:
            tifffile.imwrite(root / split / "images" / path.name, tifffile.imread(path)[:256, :256])
            tifffile.imwrite(root / split / "labels" / path.name, tifffile.imread(src / "labels" / path.name)[:256, :256])
    return root


def test_short_run_learns(crops, tmp_path):
    out = tmp_path / "nuclei.pt"
    r = biounet(
        "train", "--images", crops / "train/images", "--labels", crops / "train/labels",
        "--val-images", crops / "val/images", "--val-labels", crops / "val/labels", "--out", out,
        "--width", "4", "--iterations", "40", "--batch-size", "2", "--tile", "252", "--val-every", "20",
        "--workers", "1", "--seed", "2",
    )
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "best average_f1" in r.stdout
    csv_path, png = log_paths(out)
    rows = list(csv.DictReader(open(csv_path)))
    assert [int(r["iteration"]) for r in rows] == list(range(1, 41))
    loss = np.array([float(r["loss"]) for r in rows])
    assert loss[-10:].mean() < 0.8 * loss[:10].mean(), loss
    assert rows[19]["val_average_f1"] and rows[39]["val_average_f1"] and not rows[20]["val_average_f1"]
    assert "val_rand_error" not in rows[0]  # instance labels: no membrane scores
    assert png.stat().st_size > 10_000 and checkpoint_path(out).is_file()

    net, spec = load_model(out)
    prov = spec.provenance
    assert spec.target == "binary" and spec.unet.width == 4 and spec.unet.depth == 5 and spec.unet.padding == "valid"
    assert spec.postprocess["name"] == "components" and spec.normalization["method"] == "percentile"
    assert prov["metric"] == "average_f1" and prov["best_iteration"] in (20, 40) and prov["train_tile"] == 252
    assert prov["biounet_version"] and prov["images"].endswith("train/images") and prov["iterations"] == prov["best_iteration"]
    best = max(float(rows[i]["val_average_f1"]) for i in (19, 39))
    assert prov["validation"]["average_f1"] == pytest.approx(best)
    assert best > 0.15  # it learned something in 40 iterations

    # validation went through the same engine as `biounet evaluate --model`
    table = evaluate(crops / "val/labels", model=out, images_dir=crops / "val/images", device="cpu")
    assert table.summary["average_f1"] == pytest.approx(prov["validation"]["average_f1"], abs=1e-9)
    info = cli("info", out)
    assert info.returncode == 0 and "provenance" in info.stdout and "best_iteration" in info.stdout


def _config(crops: Path, out: Path, iterations: int, workers: int) -> TrainConfig:
    return TrainConfig(
        images=crops / "train/images", labels=crops / "train/labels", out=out, width=4, iterations=iterations,
        batch_size=2, tile=220, val_every=3, workers=workers, seed=7, progress=False, device="cpu",
    )


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_is_exact(crops, tmp_path, workers):
    straight = _config(crops, tmp_path / "a.pt", 6, workers)
    train(straight)
    first_half = _config(crops, tmp_path / "b.pt", 3, workers)
    train(first_half)
    assert read_checkpoint(checkpoint_path(tmp_path / "b.pt"))["iteration"] == 3
    if workers:  # through the command line: settings from the checkpoint, iterations extended
        r = cli("train", "--resume", checkpoint_path(tmp_path / "b.pt"), "--iterations", "6", "--quiet")
        assert r.returncode == 0, r.stderr
    else:
        train(config_from_checkpoint(checkpoint_path(tmp_path / "b.pt"), iterations=6, progress=False))
    a = read_checkpoint(checkpoint_path(tmp_path / "a.pt"))
    b = read_checkpoint(checkpoint_path(tmp_path / "b.pt"))
    assert a["iteration"] == b["iteration"] == 6
    assert [r["loss"] for r in a["history"]] == [r["loss"] for r in b["history"]]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for k, state in a["optimizer"]["state"].items():
        assert all(torch.equal(v, b["optimizer"]["state"][k][n]) for n, v in state.items() if torch.is_tensor(v))
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


def test_resume_refuses_another_run(crops, tmp_path):
    train(_config(crops, tmp_path / "c.pt", 3, 0))
    changed = _config(crops, tmp_path / "c.pt", 6, 0)
    changed.width = 8
    changed.resume = str(checkpoint_path(tmp_path / "c.pt"))
    with pytest.raises(CheckpointError, match="width"):
        train(changed)
    r = cli("train", "--resume", tmp_path / "missing.ckpt")
    assert r.returncode == 2 and "checkpoint not found" in r.stderr
    r = cli("train", "--images", crops / "train/images")
    assert r.returncode == 2 and "--labels" in r.stderr


def test_other_targets_run(crops, tmp_path):
    for target in ("3class", "distance"):
        config = _config(crops, tmp_path / f"{target}.pt", 2, 0)
        config.target, config.val_images, config.val_labels = target, str(crops / "val/images"), str(crops / "val/labels")
        config.val_every = 2
        path = train(config)
        payload = read_model_payload(path)
        spec = payload["spec"]
        assert spec["target"] == target
        assert spec["postprocess"]["name"] == {"3class": "watershed_3class", "distance": "watershed_distance"}[target]
        assert spec["unet"]["out_channels"] == {"3class": 3, "distance": 1}[target]
        assert spec["provenance"]["validation"] is not None


def test_learning_rate_schedule():
    from biounet.train.loop import learning_rate_at

    assert learning_rate_at(1e-3, "constant", 50, 100) == 1e-3
    cosine = [learning_rate_at(1e-3, "cosine", i, 100) for i in range(101)]
    assert cosine[0] == 1e-3 and cosine[100] == pytest.approx(0.0, abs=1e-12)
    assert cosine[50] == pytest.approx(5e-4)
    assert all(a >= b for a, b in zip(cosine, cosine[1:]))


def test_fine_tuning_starts_from_the_model_with_a_cosine_schedule(crops, tmp_path):
    from biounet.train.loop import learning_rate_at

    base = train(_config(crops, tmp_path / "base.pt", 3, 0))
    start = _config(crops, tmp_path / "zero.pt", 0, 0)
    start.init = str(base)
    zero, _ = load_model(train(start))  # no iteration: the model is the one it started from
    for (k, a), b in zip(zero.state_dict().items(), load_model(base)[0].state_dict().values()):
        assert torch.equal(a, b), k

    def tuned(name: str, iterations: int) -> TrainConfig:
        config = _config(crops, tmp_path / name, iterations, 0)
        config.init, config.schedule = str(base), "cosine"
        return config

    train(tuned("d.pt", 6))
    d = read_checkpoint(checkpoint_path(tmp_path / "d.pt"))
    # the rate is a function of the iteration alone, so a resumed run follows the same schedule
    assert [r["lr"] for r in d["history"]] == pytest.approx([learning_rate_at(1e-3, "cosine", i, 6) for i in range(6)])

    other = _config(crops, tmp_path / "f.pt", 1, 0)
    other.init, other.width = str(base), 8
    with pytest.raises(Exception, match="another shape"):
        train(other)


def test_intensity_scale_option(crops, tmp_path):
    out = tmp_path / "g.pt"
    r = cli("train", "--images", crops / "train/images", "--labels", crops / "train/labels", "--out", out,
            "--width", "4", "--iterations", "1", "--tile", "220", "--workers", "0", "--intensity-scale", "0.3", "1.2",
            "--quiet")
    assert r.returncode == 0, r.stderr
    assert read_checkpoint(checkpoint_path(out))["config"]["augment"]["scale_range"] == [0.3, 1.2]
    r = cli("train", "--images", crops / "train/images", "--labels", crops / "train/labels", "--out", out,
            "--intensity-scale", "1.2", "0.3")
    assert r.returncode == 2 and "--intensity-scale" in r.stderr
    r = cli("train", "--resume", checkpoint_path(out), "--intensity-scale", "0.5", "1.0", "--quiet")
    assert r.returncode == 2 and "another run" in r.stderr and "augment" in r.stderr


def test_normalize_over_option(crops, tmp_path):
    out = tmp_path / "f.pt"
    r = cli("train", "--images", crops / "train/images", "--labels", crops / "train/labels", "--val-images",
            crops / "val/images", "--val-labels", crops / "val/labels", "--out", out, "--width", "4",
            "--iterations", "1", "--val-every", "1", "--tile", "220", "--workers", "0", "--normalize-over", "folder",
            "--quiet")
    assert r.returncode == 0, r.output
    assert load_model(out)[1].normalization["over"] == "folder"  # so `evaluate` normalises as in training
    r = cli("train", "--resume", checkpoint_path(out), "--normalize-over", "image", "--quiet")
    assert r.returncode == 2 and "another run" in r.output and "normalization" in r.output


@pytest.fixture(scope="module")
def he_crops(shared_data: Path, tmp_path_factory) -> Path:
    """256 x 256 crops of 3 real MoNuSeg H&E tiles (RGB uint8) and their labels."""
    root = tmp_path_factory.mktemp("monuseg")
    src = shared_data / "monuseg" / "train"
    for sub in ("images", "labels"):
        (root / sub).mkdir()
    for path in sorted((src / "images").glob("*.tif"))[:3]:
        tifffile.imwrite(root / "images" / path.name, tifffile.imread(path)[:256, :256], photometric="rgb")
        tifffile.imwrite(root / "labels" / path.name, tifffile.imread(src / "labels" / path.name)[:256, :256])
    return root


def test_he_options_record_scale_range_and_colour(he_crops, tmp_path):
    out = tmp_path / "he.pt"
    r = cli("train", "--images", he_crops / "images", "--labels", he_crops / "labels", "--out", out, "--width", "4",
            "--iterations", "2", "--tile", "220", "--workers", "0", "--value-range", "0", "255", "--color-augment",
            "he", "--zoom", "0.8", "1.25", "--pixel-size", "0.25", "--target", "3class", "--quiet")
    assert r.returncode == 0, r.output
    net, spec = load_model(out)
    assert spec.unet.in_channels == 3
    assert spec.normalization["method"] == "fixed" and (spec.normalization["low"], spec.normalization["high"]) == (0, 255)
    assert spec.pixel_size == 0.25
    # the median equivalent diameter of the crops' labelled nuclei, measured independently
    labels = [tifffile.imread(p) for p in sorted((he_crops / "labels").glob("*.tif"))]
    areas = np.concatenate([np.bincount(lab.ravel())[1:] for lab in labels])
    assert spec.diameter == pytest.approx(np.median(2 * np.sqrt(areas[areas > 0] / np.pi)), abs=0.01)
    assert 10 < spec.diameter < 40  # 40x H&E nuclei
    augment = read_checkpoint(checkpoint_path(out))["config"]["augment"]
    assert augment["color"]["stain_scale"] > 0 and augment["zoom_range"] == [0.8, 1.25]
    r = cli("train", "--images", he_crops / "images", "--labels", he_crops / "labels", "--out", tmp_path / "x.pt",
            "--value-range", "255", "0")
    assert r.returncode == 2 and "--value-range" in r.output
    r = cli("train", "--images", he_crops / "images", "--labels", he_crops / "labels", "--out", tmp_path / "x.pt",
            "--pixel-size", "0")
    assert r.returncode == 2 and "--pixel-size" in r.output


def test_targets_after_warp_is_recorded_and_resumed(crops, tmp_path):
    out = tmp_path / "w.pt"
    common = ("--images", crops / "train/images", "--labels", crops / "train/labels", "--width", "4", "--tile", "220",
              "--workers", "0", "--target", "3class", "--zoom", "0.5", "2", "--val-every", "2", "--quiet")
    r = cli("train", *common, "--out", out, "--iterations", "2", "--targets-after-warp")
    assert r.returncode == 0, r.output
    assert read_checkpoint(checkpoint_path(out))["config"]["augment"]["targets_after_warp"] is True
    r = cli("train", "--resume", checkpoint_path(out), "--iterations", "3", "--quiet")
    assert r.returncode == 0, r.output
    saved = read_checkpoint(checkpoint_path(out))
    assert saved["iteration"] == 3 and saved["config"]["augment"]["targets_after_warp"] is True
    r = cli("train", *common, "--out", tmp_path / "d.pt", "--iterations", "1", "--targets-after-warp", "--target",
            "distance")
    assert r.returncode != 0 and "distance" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_colour_augmentation_needs_rgb(crops, tmp_path):
    r = cli("train", "--images", crops / "train/images", "--labels", crops / "train/labels", "--out",
            tmp_path / "g.pt", "--width", "4", "--iterations", "1", "--tile", "220", "--workers", "0",
            "--color-augment", "he", "--quiet")
    assert r.returncode != 0 and "RGB" in r.output and "Traceback" not in r.output


def _encoder_config(crops: Path, out: Path, iterations: int, **options) -> TrainConfig:
    return TrainConfig(
        images=crops / "train/images", labels=crops / "train/labels", out=out, target="3class", encoder="resnet18",
        width=4, iterations=iterations, batch_size=2, tile=128, val_every=2, workers=0, seed=3, progress=False,
        device="cpu", **options,
    )


def test_encoder_starts_from_local_weights(crops, tmp_path):
    from biounet.model.encoders import build_encoder
    from tests.model.test_encoders import checkpoint_like, torchvision_resnet_keys

    state = checkpoint_like(torchvision_resnet_keys((2, 2, 2, 2), False), build_encoder("resnet18", 3))
    torch.save(state, tmp_path / "resnet18.pth")
    path = train(_encoder_config(crops, tmp_path / "e.pt", 0, encoder_weights=tmp_path / "resnet18.pth"))
    net, spec = load_model(path)
    assert (spec.unet.encoder, spec.unet.depth, spec.unet.padding, spec.unet.batch_norm) == ("resnet18", 6, "same", True)
    assert torch.equal(net.encoder.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))  # RGB -> 1 channel
    assert torch.equal(net.encoder.layer3[1].bn2.running_mean, state["layer3.1.bn2.running_mean"])
    assert spec.provenance["encoder_weights"]["path"].endswith("resnet18.pth")
    assert len(spec.provenance["encoder_weights"]["sha256"]) == 64
    torch.manual_seed(0)
    random_init = train(_encoder_config(crops, tmp_path / "r.pt", 0))
    assert not torch.equal(load_model(random_init)[0].encoder.conv1.weight, net.encoder.conv1.weight)


def test_encoder_resume_is_exact_and_learns_on_whole_patches(crops, tmp_path):
    train(_encoder_config(crops, tmp_path / "a.pt", 4))
    train(_encoder_config(crops, tmp_path / "b.pt", 2))
    train(config_from_checkpoint(checkpoint_path(tmp_path / "b.pt"), iterations=4, progress=False))
    a = read_checkpoint(checkpoint_path(tmp_path / "a.pt"))
    b = read_checkpoint(checkpoint_path(tmp_path / "b.pt"))
    assert a["iteration"] == b["iteration"] == 4
    assert [r["loss"] for r in a["history"]] == [r["loss"] for r in b["history"]]
    for key, value in a["model"].items():  # batch-norm statistics included
        assert torch.equal(value, b["model"][key]), key
    _, spec = load_model(tmp_path / "a.pt")
    assert spec.provenance["train_tile"] == 128 and spec.unet.context == spec.unet.geometry().margin


def test_time_budget_stops_and_keeps_the_best(crops, tmp_path):
    config = _encoder_config(crops, tmp_path / "t.pt", 10_000, time_budget=1.0, val_images=crops / "val/images",
                             val_labels=crops / "val/labels")
    config.val_every = 1000
    path = train(config)
    rows = list(csv.DictReader(open(log_paths(path)[0])))
    assert 1 <= len(rows) < 100
    assert float(rows[-1]["cpu_seconds"]) >= 1.0 > float(rows[-2]["cpu_seconds"]) if len(rows) > 1 else True
    assert rows[-1]["val_average_f1"]  # validated where it stopped
    _, spec = load_model(path)
    assert spec.provenance["iterations"] == len(rows) and spec.provenance["time_budget"] == 1.0
    assert read_checkpoint(checkpoint_path(path))["iteration"] == len(rows)
    r = cli("train", "--resume", checkpoint_path(path), "--quiet")  # the budget is spent: nothing more
    assert r.returncode == 0 and read_checkpoint(checkpoint_path(path))["iteration"] == len(rows)
