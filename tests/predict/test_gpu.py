"""The GPU worker's decisions and device-side steps, tested on the CPU: every function
takes what a GPU would report as numbers, and the device-side class maps are torch
functions that run on CPU tensors (bit for bit the numpy rules)."""

import numpy as np
import pytest
import torch

from biounet.model.config import UNetConfig
from biounet.model.unet import UNet
from biounet.plan.gpu import GPU_RESERVE, assign_devices, choose_gpu_batch, choose_precision
from biounet.plan.memory import tile_bytes
from biounet.predict.classes import encode_probabilities, output_classes
from biounet.predict.device import prepare, run
from biounet.runtime.devices import DeviceListError, parse_devices


def outputs(channels: int, seed: int = 0) -> np.ndarray:
    """Network-like float32 outputs with exact ties between classes and at thresholds."""
    rng = np.random.default_rng(seed)
    out = rng.random((channels, 70, 90)).astype(np.float32)
    if channels > 1:
        out /= out.sum(0)
        out[:, :6, :6] = np.float32(1.0 / channels)  # every class equal
        out[1, 10:14, :] = out[0, 10:14, :]  # two classes equal
    out[0, 20:22, :] = np.float32(0.5)  # on the threshold
    out[0, 22:24, :] = np.float32(0.05)
    return out


@pytest.mark.parametrize("name, channels, params", [
    ("components", 2, {}), ("components", 1, {"threshold": 0.3}), ("components", 2, {"threshold": 0.5}),
    ("watershed_3class", 3, {}), ("watershed_distance", 1, {}),
    ("watershed_distance", 1, {"foreground_threshold": 0.05, "seed_threshold": 0.5}),
])
def test_device_class_map_equals_the_numpy_rule(name, channels, params):
    for seed in range(3):
        out = outputs(channels, seed)
        expected = output_classes(name, out, **params)
        got = output_classes(name, torch.from_numpy(out), **params)
        assert got.dtype == torch.uint8 and np.array_equal(got.numpy(), expected), (name, seed)


@pytest.mark.parametrize("dtype", ["float16", "uint8"])
def test_device_probability_encoding_equals_numpy(dtype):
    out = outputs(3)
    out[0, 30, :5] = [0.0, 1.0, 0.5 / 255, 1.5 / 255, 254.5 / 255]  # exact halves round to even
    got = encode_probabilities(torch.from_numpy(out), dtype).numpy()
    assert np.array_equal(got, encode_probabilities(out, dtype)) and got.dtype == np.dtype(dtype)


@pytest.mark.parametrize("requested, device, capability, expected", [
    ("auto", "cpu", None, "fp32"), ("bf16", "cpu", None, "bf16"),
    ("auto", "cuda", (7, 5), "fp16"), ("auto", "cuda", (8, 0), "bf16"), ("auto", "cuda", (9, 0), "bf16"),
    ("fp32", "cuda", (9, 0), "fp32"), ("fp16", "cuda", (9, 0), "fp16"), ("bf16", "cuda", (7, 0), "bf16"),
])
def test_precision_choice_per_device(requested, device, capability, expected):
    assert choose_precision(requested, device, capability) == expected


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="unknown precision"):
        choose_precision("int8", "cuda", (9, 0))


def test_gpu_batch_from_free_memory():
    config = UNetConfig(width=64)
    per_tile = tile_bytes(config, 572)
    free = GPU_RESERVE + 10 * per_tile
    assert choose_gpu_batch(config, 572, free, None, 16, "fp32", workers=1) == 10
    assert choose_gpu_batch(config, 572, free, None, 16, "fp32", workers=2) == 5  # two threads share the GPU
    assert choose_gpu_batch(config, 572, free, None, 4, "fp32", workers=1) == 4  # at most a block's tiles
    assert choose_gpu_batch(config, 572, free, None, 16, "bf16", workers=1) == 16  # half-size activations
    assert choose_gpu_batch(config, 572, free, 3 * per_tile, 16, "fp32", workers=1) == 3  # --memory-limit
    assert choose_gpu_batch(config, 572, GPU_RESERVE // 2, None, 16, "fp32") == 1  # at least one


def test_devices_of_a_run_with_a_fake_gpu_count():
    assert parse_devices("auto", 0) == ["cpu"]
    assert parse_devices("auto", 2) == ["cuda:0", "cuda:1"]
    assert parse_devices("cuda", 4) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert parse_devices("cuda:0,2", 4) == ["cuda:0", "cuda:2"]
    assert parse_devices("cuda:1", 2) == ["cuda:1"]
    assert parse_devices("cpu", 8) == ["cpu"]
    for bad, count, message in [("cuda", 0, "no CUDA GPU"), ("cuda:2", 2, "does not exist"),
                                ("cuda:x", 2, "unknown device"), ("tpu", 2, "unknown device")]:
        with pytest.raises(DeviceListError, match=message):
            parse_devices(bad, count)


def test_network_threads_per_device():
    from biounet.pipeline.local import network_threads

    assert assign_devices(["cuda:0", "cuda:1"], 2) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]
    assert assign_devices(["cpu"], 2) == ["cpu"]
    cpu = torch.device("cpu")
    assert network_threads([cpu], 1) == [cpu] and network_threads([cpu], 3) == [cpu] * 3
    gpus = [torch.device("cuda:0"), torch.device("cuda:1"), torch.device("cuda:2")]
    threads = network_threads(gpus, 1)  # at least two per GPU
    assert [str(d) for d in threads] == ["cuda:0", "cuda:0", "cuda:1", "cuda:1", "cuda:2", "cuda:2"]
    assert len(network_threads(gpus, 3)) == 9


def test_run_in_reduced_precision_on_cpu_tensors():
    """`run` autocasts in the precision `prepare` set, on any device; float32 out."""
    import copy

    torch.manual_seed(0)
    net = UNet(UNetConfig(width=4, depth=2))
    twin = copy.deepcopy(net)
    x = torch.rand(1, 1, 60, 60)
    full = run(prepare(net, torch.device("cpu"), threads=1), x)
    low = run(prepare(twin, torch.device("cpu"), threads=1, precision="bf16"), x)
    assert full.dtype == low.dtype == torch.float32 and full.shape == low.shape
    assert 0 < (full - low).abs().max() < 0.05  # bfloat16 arithmetic: close, not equal
