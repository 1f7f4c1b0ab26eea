"""Training's CUDA code paths on CPU tensors: precision choice, autocast with a gradient
scaler, the scaler in checkpoints (exact resume), pinned memory, augmentation on the
device and the progress bar. Nothing here needs a GPU or skips without one."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from biounet.model.file import read_model_payload
from biounet.plan.gpu import choose_precision
from biounet.plan.options import PRECISIONS
from biounet.read.files import DataError
from biounet.train import loop
from biounet.train.augment import AugmentParams
from biounet.train.data import PatchDataset, TargetSpec, array_source, loader_options, make_loader
from biounet.train.loop import (
    TrainConfig,
    autocast,
    checkpoint_path,
    config_from_checkpoint,
    make_scaler,
    read_checkpoint,
    run_precision,
    train,
)
from tests.conftest import invoke as cli


def _blobs(rng: np.random.Generator, side: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A grey image of bright disks on a noisy background and its instance labels."""
    yy, xx = np.mgrid[:side, :side]
    labels = np.zeros((side, side), np.uint16)
    for k in range(1, 9):
        cy, cx = rng.integers(10, side - 10, 2)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < rng.integers(5, 10) ** 2] = k
    image = np.clip((labels > 0) * 150 + rng.normal(40, 10, labels.shape), 0, 255).astype(np.uint8)
    return image, labels


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("blobs")
    rng = np.random.default_rng(0)
    for sub in ("images", "labels"):
        (root / sub).mkdir()
    for i in range(2):
        image, labels = _blobs(rng)
        tifffile.imwrite(root / "images" / f"{i}.tif", image)
        tifffile.imwrite(root / "labels" / f"{i}.tif", labels)
    return root


def _config(blobs: Path, out: Path, iterations: int, **options) -> TrainConfig:
    """A tiny run: width 2, depth 2, tile 60 (output 44), on the CPU."""
    settings = dict(width=2, depth=2, tile=60, batch_size=2, val_every=2, workers=0, seed=1, progress=False,
                    device="cpu")
    return TrainConfig(images=blobs / "images", labels=blobs / "labels", out=out, iterations=iterations,
                       **{**settings, **options})


def _assert_same_run(a: dict, b: dict) -> None:
    """Two checkpoints of the same run: the same losses, weights, optimizer and scaler state."""
    assert a["iteration"] == b["iteration"]
    assert [r["loss"] for r in a["history"]] == [r["loss"] for r in b["history"]]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for k, state in a["optimizer"]["state"].items():
        assert all(torch.equal(v, b["optimizer"]["state"][k][n]) for n, v in state.items() if torch.is_tensor(v))
    assert a["scaler"] == b["scaler"]


@pytest.mark.parametrize("requested, device_type, capability, chosen", [
    ("auto", "cpu", None, "fp32"),
    ("fp32", "cpu", None, "fp32"),
    ("bf16", "cpu", None, "bf16"),
    ("fp16", "cpu", None, "fp16"),
    ("auto", "cuda", (7, 5), "fp16"),  # T4, RTX 20xx: no native bfloat16
    ("auto", "cuda", (8, 0), "bf16"),  # A100
    ("auto", "cuda", (9, 0), "bf16"),  # H100, H200
    ("auto", "cuda", None, "fp16"),
    ("fp32", "cuda", (9, 0), "fp32"),
    ("fp16", "cuda", (9, 0), "fp16"),
    ("bf16", "cuda", (7, 5), "bf16"),
])
def test_precision_per_device(requested, device_type, capability, chosen):
    assert choose_precision(requested, device_type, capability) == chosen


def test_run_precision_asks_the_gpu_its_capability(monkeypatch):
    asked = []

    def capability(device):
        asked.append(device)
        return fake

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    for fake, chosen in (((7, 5), "fp16"), ((8, 6), "bf16"), ((9, 0), "bf16")):
        assert run_precision("auto", torch.device("cuda:1")) == chosen
        assert run_precision("fp32", torch.device("cuda:1")) == "fp32"
    assert asked[0] == torch.device("cuda:1")
    asked.clear()
    assert run_precision("auto", torch.device("cpu")) == "fp32" and not asked
    with pytest.raises(ValueError, match="unknown precision"):
        choose_precision("fp8", "cuda", (9, 0))
    with pytest.raises(DataError, match="unknown precision"):
        TrainConfig(images="i", labels="l", out="o", precision="fp8")
    with pytest.raises(DataError, match="augment_on"):
        TrainConfig(images="i", labels="l", out="o", augment_on="gpu")


def test_scaler_and_autocast():
    assert make_scaler("cpu", "fp16").is_enabled()
    assert not make_scaler("cpu", "bf16").is_enabled() and not make_scaler("cpu", "fp32").is_enabled()
    conv = torch.nn.Conv2d(1, 2, 3)
    x = torch.rand(1, 1, 8, 8)
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        with autocast("cpu", precision):
            assert conv(x).dtype == dtype, precision


def test_pinned_memory_only_for_cuda():
    assert loader_options(2, "cuda")["pin_memory"] is True
    assert loader_options(0, "cuda")["pin_memory"] is True
    assert loader_options(2, "cpu")["pin_memory"] is False
    options = loader_options(2, "cuda")
    assert options["num_workers"] == 2 and options["persistent_workers"] and options["prefetch_factor"] == 2
    assert options["batch_size"] is None
    assert loader_options(0)["num_workers"] == 0 and loader_options(0)["prefetch_factor"] is None


def test_raw_batches_finish_to_the_same_batch():
    image, labels = _blobs(np.random.default_rng(3))
    for target in ("binary", "distance"):
        src = array_source("a", image[None], labels, TargetSpec(target), {"method": "percentile", "low": 1, "high": 99})
        ds = PatchDataset([src], tile=60, out=44, batch_size=2, seed=4, target=target, raw_batches=True, stop=2)
        raws = list(make_loader(ds, 0))
        assert len(raws) == 2 and isinstance(raws[1][-1], int)
        assert raws[1][0].shape == (2, 1, 60, 60) and raws[1][1].shape == (2, 60, 60)
        for i, raw in enumerate(raws):
            for a, b in zip(ds.finish(*raw), ds.batch(i)):
                assert a.dtype == b.dtype and torch.equal(a, b), target
    # targets computed after the warp: the raw batch carries ids, border term and class weights
    src = array_source("a", image[None], labels, TargetSpec("3class", instances=True),
                       {"method": "percentile", "low": 1, "high": 99})
    ds = PatchDataset([src], tile=60, out=44, batch_size=2, seed=4, target="3class", raw_batches=True, stop=2,
                      augment=AugmentParams(zoom_range=(0.5, 2.0), targets_after_warp=True))
    for i, raw in enumerate(make_loader(ds, 0)):
        assert raw[1].dtype == torch.int64 and raw[5].shape == (2, 3)
        for a, b in zip(ds.finish(*raw), ds.batch(i)):
            assert a.dtype == b.dtype and torch.equal(a, b)


def test_bf16_run(blobs, tmp_path):
    out = train(_config(blobs, tmp_path / "bf16.pt", 2, precision="bf16"))
    ckpt = read_checkpoint(checkpoint_path(out))
    losses = [r["loss"] for r in ckpt["history"]]
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert ckpt["precision"] == ckpt["config"]["precision"] == "bf16"
    assert ckpt["scaler"] == {}  # bfloat16 has float32's range: no scaler
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert all(v.dtype == torch.float32 for v in ckpt["model"].values())  # float32 weights, autocast compute
    assert read_model_payload(out)["spec"]["provenance"]["precision"] == "bf16"


def test_fp16_scaler_resumes_exactly(blobs, tmp_path):
    train(_config(blobs, tmp_path / "a.pt", 4, precision="fp16"))
    train(_config(blobs, tmp_path / "b.pt", 2, precision="fp16"))
    half = read_checkpoint(checkpoint_path(tmp_path / "b.pt"))
    assert half["precision"] == "fp16" and half["scaler"]["scale"] > 1 and half["scaler"]["_growth_tracker"] > 0

    # The scaler's state is restored and acts: a scale that overflows float16 skips the step
    # (weights unchanged) and is halved.
    huge = dict(half, scaler={**half["scaler"], "scale": 2.0**100}, config={**half["config"], "out": str(tmp_path / "c.pt")})
    torch.save(huge, tmp_path / "c.ckpt")
    train(config_from_checkpoint(tmp_path / "c.ckpt", iterations=3, progress=False))
    skipped = read_checkpoint(checkpoint_path(tmp_path / "c.pt"))
    assert skipped["scaler"]["scale"] == 2.0**99
    assert all(torch.equal(v, half["model"][k]) for k, v in skipped["model"].items())

    train(config_from_checkpoint(checkpoint_path(tmp_path / "b.pt"), iterations=4, progress=False))
    a, b = read_checkpoint(checkpoint_path(tmp_path / "a.pt")), read_checkpoint(checkpoint_path(tmp_path / "b.pt"))
    assert a["iteration"] == 4 and a["scaler"]["_growth_tracker"] == 4  # 4 unskipped steps, none of them lost
    _assert_same_run(a, b)
    assert any(not torch.equal(v, half["model"][k]) for k, v in a["model"].items())


def test_augmentation_on_the_device(blobs, tmp_path):
    # In one process, on the CPU, the device path makes the same batches as the workers.
    train(_config(blobs, tmp_path / "w.pt", 2))
    train(_config(blobs, tmp_path / "d.pt", 2, augment_on="device"))
    _assert_same_run(read_checkpoint(checkpoint_path(tmp_path / "w.pt")),
                     read_checkpoint(checkpoint_path(tmp_path / "d.pt")))
    # Raw batches from a worker process, augmented here: resume is exact.
    train(_config(blobs, tmp_path / "e.pt", 4, augment_on="device", workers=1))
    train(_config(blobs, tmp_path / "f.pt", 2, augment_on="device", workers=1))
    train(config_from_checkpoint(checkpoint_path(tmp_path / "f.pt"), iterations=4, progress=False))
    e, f = read_checkpoint(checkpoint_path(tmp_path / "e.pt")), read_checkpoint(checkpoint_path(tmp_path / "f.pt"))
    assert e["config"]["augment_on"] == "device" and e["iteration"] == 4
    _assert_same_run(e, f)


def test_progress_bar_shows_rate_and_loss(blobs, tmp_path, capsys):
    train(_config(blobs, tmp_path / "p.pt", 2, progress=True))
    err = capsys.readouterr().err
    assert re.search(r"2/2 \[[^\]]*,\s+\d+(\.\d+)?(it/s|s/it), loss \d+\.\d{4}\]", err), err


def test_command_line_options(blobs, tmp_path):
    from biounet import cli as cli_module

    assert cli_module.PRECISIONS == PRECISIONS and cli_module.AUGMENT_ON == loop.AUGMENT_ON
    out = tmp_path / "m.pt"
    r = cli("train", "--images", blobs / "images", "--labels", blobs / "labels", "--out", out, "--width", "2",
            "--depth", "2", "--tile", "60", "--iterations", "1", "--workers", "0", "--device", "cpu",
            "--precision", "bf16", "--augment-on", "device", "--quiet")
    assert r.returncode == 0, r.output
    ckpt = read_checkpoint(checkpoint_path(out))
    assert ckpt["config"]["precision"] == ckpt["precision"] == "bf16" and ckpt["config"]["augment_on"] == "device"
    r = cli("train", "--resume", checkpoint_path(out), "--iterations", "2", "--precision", "fp32", "--quiet")
    assert r.returncode == 0, r.output  # how a run computes is not what it computes: resumable on another setting
    assert read_checkpoint(checkpoint_path(out))["precision"] == "fp32"
    r = cli("train", "--images", blobs / "images", "--labels", blobs / "labels", "--out", out, "--precision", "fp8")
    assert r.returncode == 2 and "--precision" in r.output
