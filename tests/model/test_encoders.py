"""Encoder U-Nets: architectures as torchvision/timm define them, their checkpoints, model files."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from biounet.model.config import DEFAULT_CONTEXT, UNetConfig
from biounet.model.encoders import ENCODERS, build_encoder
from biounet.model.file import build_network, load_model, save_model
from biounet.model.flops import forward_flops
from biounet.model.pretrained import EncoderWeightsError, load_encoder_weights, read_safetensors
from biounet.model.spec import ModelSpec
from biounet.model.unet import UNet, count_parameters
from tests.conftest import invoke

HEADS = {"3class": (3, "classification"), "binary": (2, "classification"), "distance": (1, "regression")}
# Parameters of torchvision's resnets and timm's efficientnet_bN, less their classifiers
# (fc; conv_head, bn2 and classifier), for 3 input channels.
PARAMETERS = {"resnet18": 11_689_512 - 513_000, "resnet34": 21_797_672 - 513_000,
              "resnet50": 25_557_032 - 2_049_000, "efficientnet_b0": 5_288_548 - 1_693_160,
              "efficientnet_b1": 7_794_184 - 1_693_160, "efficientnet_b2": 9_109_994 - 1_907_432,
              "efficientnet_b3": 12_233_232 - 2_129_896}


def encoder_config(name: str, in_channels: int = 1, target: str = "3class", width: int = 2) -> UNetConfig:
    out, head = HEADS[target]
    return UNetConfig(in_channels=in_channels, out_channels=out, depth=6, width=width, padding="same",
                      batch_norm=True, head=head, encoder=name)


@pytest.mark.parametrize("name", ENCODERS)
def test_every_encoder_builds_for_any_channels_and_head(name):
    for in_channels in (1, 3):
        for target, (out, head) in HEADS.items():
            net = build_network(encoder_config(name, in_channels, target)).eval()
            x = torch.rand(2, in_channels, 64, 96)
            y = net.predict(x)
            assert y.shape == (2, out, 64, 96), (in_channels, target)
            if head == "classification":
                assert torch.allclose(y.sum(1), torch.ones(2, 64, 96), atol=1e-5)
    assert count_parameters(build_encoder(name, 3)) == PARAMETERS[name]


def test_encoder_geometry_and_config_checks():
    config = encoder_config("resnet34")
    g = config.geometry()
    assert (g.align, g.margin, config.context) == (32, DEFAULT_CONTEXT, 192)
    assert g.min_input == 416 and g.input_size(1024) == 1024 + 2 * 192  # 2 x 192 + 1 rounded up to 32
    assert g.is_valid(448) and not g.is_valid(450) and g.output_size(448) == 448 - 2 * 192
    assert UNetConfig(width=16).to_dict() == UNetConfig(width=16).to_dict() and "encoder" not in UNetConfig().to_dict()
    with pytest.raises(ValueError, match="unknown encoder 'resnet99'; choose from resnet18"):
        UNetConfig(depth=6, padding="same", encoder="resnet99")
    with pytest.raises(ValueError, match="same padding and depth 6"):
        UNetConfig(encoder="resnet18")
    with pytest.raises(ValueError, match="build_network"):
        UNet(config)


def test_model_file_records_the_encoder(tmp_path):
    config = encoder_config("efficientnet_b0", width=4)
    torch.manual_seed(0)
    net = build_network(config)
    save_model(tmp_path / "m.pt", net, ModelSpec(unet=config, target="3class",
                                                  classes=["background", "interior", "boundary"]))
    loaded, spec = load_model(tmp_path / "m.pt")
    assert spec.unet == config and spec.unet.encoder == "efficientnet_b0" and spec.unet.context == config.context
    x = torch.rand(1, 1, 96, 96)
    assert torch.equal(net.eval()(x), loaded(x))
    r = invoke("info", tmp_path / "m.pt")
    assert r.returncode == 0
    assert "architecture: U-Net with a efficientnet_b0 encoder (decoder width 4, same padding, tiles on " \
           f"multiples of 32 px, context {config.context} px)" in r.output
    assert "  encoder: efficientnet_b0" in r.output


@pytest.mark.parametrize("name, tile", [("resnet18", 96), ("efficientnet_b1", 64)])
def test_flops_are_torch_counted(name, tile):
    config = encoder_config(name, width=4)
    net = build_network(config).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(2, 1, tile, tile))
    assert forward_flops(config, tile, batch=2) == counter.get_total_flops() > 0


# ---------------------------------------------------------------- checkpoints in torchvision's and timm's names


def _bn(prefix: str) -> list[str]:
    return [f"{prefix}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]


def torchvision_resnet_keys(layers: tuple[int, ...], bottleneck: bool) -> list[str]:
    """The state dict keys of torchvision's ResNet (models/resnet.py), classifier included."""
    keys = ["conv1.weight", *_bn("bn1")]
    convs = 3 if bottleneck else 2
    for i, count in enumerate(layers, start=1):
        for j in range(count):
            for c in range(1, convs + 1):
                keys += [f"layer{i}.{j}.conv{c}.weight", *_bn(f"layer{i}.{j}.bn{c}")]
            if j == 0 and (i > 1 or bottleneck):
                keys += [f"layer{i}.{j}.downsample.0.weight", *_bn(f"layer{i}.{j}.downsample.1")]
    return keys + ["fc.weight", "fc.bias"]


# EfficientNet-B0's stages: (repeats, expansion) as both libraries define it.
B0_STAGES = ((1, 1), (2, 6), (2, 6), (3, 6), (3, 6), (4, 6), (1, 6))


def timm_efficientnet_b0_keys() -> list[str]:
    """timm's efficientnet_b0 state dict keys (efficientnet.py / _efficientnet_blocks.py)."""
    keys = ["conv_stem.weight", *_bn("bn1")]
    for s, (repeats, expansion) in enumerate(B0_STAGES):
        for j in range(repeats):
            p = f"blocks.{s}.{j}"
            se = [f"{p}.se.conv_reduce.weight", f"{p}.se.conv_reduce.bias", f"{p}.se.conv_expand.weight",
                  f"{p}.se.conv_expand.bias"]
            if expansion == 1:
                keys += [f"{p}.conv_dw.weight", *_bn(f"{p}.bn1"), *se, f"{p}.conv_pw.weight", *_bn(f"{p}.bn2")]
            else:
                keys += [f"{p}.conv_pw.weight", *_bn(f"{p}.bn1"), f"{p}.conv_dw.weight", *_bn(f"{p}.bn2"), *se,
                         f"{p}.conv_pwl.weight", *_bn(f"{p}.bn3")]
    return keys + ["conv_head.weight", *_bn("bn2"), "classifier.weight", "classifier.bias"]


def torchvision_efficientnet_b0_keys() -> list[str]:
    """torchvision's efficientnet_b0 state dict keys (models/efficientnet.py: features.*, classifier.1)."""
    keys = ["features.0.0.weight", *_bn("features.0.1")]
    for s, (repeats, expansion) in enumerate(B0_STAGES, start=1):
        for j in range(repeats):
            p = f"features.{s}.{j}.block"
            k = 0
            if expansion != 1:
                keys += [f"{p}.0.0.weight", *_bn(f"{p}.0.1")]
                k = 1
            keys += [f"{p}.{k}.0.weight", *_bn(f"{p}.{k}.1")]
            keys += [f"{p}.{k + 1}.fc1.weight", f"{p}.{k + 1}.fc1.bias", f"{p}.{k + 1}.fc2.weight",
                     f"{p}.{k + 1}.fc2.bias"]
            keys += [f"{p}.{k + 2}.0.weight", *_bn(f"{p}.{k + 2}.1")]
    return keys + ["features.8.0.weight", *_bn("features.8.1"), "classifier.1.weight", "classifier.1.bias"]


def checkpoint_like(keys: list[str], encoder: torch.nn.Module, rename=lambda k: k, seed: int = 0) -> dict:
    """A state dict with `keys` whose tensors have the encoder's shapes (under `rename`) and random values;
    classifier keys get arbitrary shapes."""
    own = encoder.state_dict()
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key in keys:
        shape = own[rename(key)].shape if rename(key) in own else (7, 5)
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(100)
        else:
            out[key] = torch.randn(shape, generator=gen)
    return out


def test_torchvision_resnet_checkpoints_load(tmp_path):
    for name, layers, bottleneck in (("resnet18", (2, 2, 2, 2), False), ("resnet50", (3, 4, 6, 3), True)):
        keys = torchvision_resnet_keys(layers, bottleneck)
        encoder = build_encoder(name, 3)
        assert len(keys) == {"resnet18": 122, "resnet50": 320}[name]
        assert sorted(k for k in keys if not k.startswith("fc.")) == sorted(encoder.state_dict())
        state = checkpoint_like(keys, encoder)
        torch.save(state, tmp_path / f"{name}.pth")
        load_encoder_weights(encoder, name, tmp_path / f"{name}.pth")
        for key, value in encoder.state_dict().items():
            assert torch.equal(value, state[key]), key


def test_efficientnet_checkpoints_load_in_timm_and_torchvision_names(tmp_path):
    timm_keys, tv_keys = timm_efficientnet_b0_keys(), torchvision_efficientnet_b0_keys()
    assert len(timm_keys) == len(tv_keys) == 360
    encoder = build_encoder("efficientnet_b0", 3)
    assert sorted(timm_keys[:-8]) == sorted(encoder.state_dict())  # less conv_head, bn2, classifier
    rename = dict(zip(tv_keys, timm_keys))  # both lists follow the network's order
    timm_state = checkpoint_like(timm_keys, encoder)
    tv_state = {tv: timm_state[rename[tv]] for tv in tv_keys}
    torch.save({"state_dict": {f"module.{k}": v for k, v in timm_state.items()}}, tmp_path / "timm.pth")
    torch.save(tv_state, tmp_path / "tv.pth")
    for path in (tmp_path / "timm.pth", tmp_path / "tv.pth"):
        loaded = build_encoder("efficientnet_b0", 3)
        load_encoder_weights(loaded, "efficientnet_b0", path)
        for key, value in loaded.state_dict().items():
            assert torch.equal(value, timm_state[key]), (path.name, key)


def write_safetensors(path, state: dict) -> None:
    """The safetensors layout: header length (u64 little-endian), JSON header, raw tensors."""
    names = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for key, value in state.items():
        blob = value.contiguous().numpy().tobytes()
        header[key] = {"dtype": names[value.dtype], "shape": list(value.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def test_safetensors_and_other_input_channels(tmp_path):
    rgb = build_encoder("resnet34", 3)
    state = checkpoint_like(torchvision_resnet_keys((3, 4, 6, 3), False), rgb, seed=3)
    state["layer1.0.bn1.weight"] = state["layer1.0.bn1.weight"].half()  # converted on load
    write_safetensors(tmp_path / "r34.safetensors", state)
    assert torch.equal(read_safetensors(tmp_path / "r34.safetensors")["conv1.weight"], state["conv1.weight"])
    for in_channels in (1, 3, 4):
        encoder = build_encoder("resnet34", in_channels)
        load_encoder_weights(encoder, "resnet34", tmp_path / "r34.safetensors")
        w = encoder.conv1.weight.detach()
        rgb_w = state["conv1.weight"]
        expected = {1: rgb_w.sum(1, keepdim=True), 3: rgb_w,
                    4: torch.cat([rgb_w, rgb_w[:, :1]], 1) * (3 / 4)}[in_channels]
        assert torch.allclose(w, expected), in_channels
        assert torch.equal(encoder.layer4[2].bn2.running_var, state["layer4.2.bn2.running_var"])
        assert torch.equal(encoder.layer1[0].bn1.weight, state["layer1.0.bn1.weight"].float())


def test_weights_that_do_not_fit_are_refused(tmp_path):
    r18 = build_encoder("resnet18", 3)
    torch.save(checkpoint_like(torchvision_resnet_keys((2, 2, 2, 2), False), r18), tmp_path / "r18.pth")
    with pytest.raises(EncoderWeightsError, match=r"does not fit encoder resnet34: .* missing \(first 'layer1.2"):
        load_encoder_weights(build_encoder("resnet34", 1), "resnet34", tmp_path / "r18.pth")
    state = torch.load(tmp_path / "r18.pth")
    state["layer3.1.conv2.weight"] = torch.zeros(256, 256, 1, 1)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(EncoderWeightsError, match=r"'layer3.1.conv2.weight' has shape \(256, 256, 1, 1\), the "
                       r"encoder \(256, 256, 3, 3\)"):
        load_encoder_weights(r18, "resnet18", tmp_path / "shape.pth")
    del state["layer3.1.conv2.weight"]
    state["layer5.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(EncoderWeightsError, match=r"missing \(first 'layer3.1.conv2.weight'\)"):
        load_encoder_weights(r18, "resnet18", tmp_path / "extra.pth")
    state["layer3.1.conv2.weight"] = r18.layer3[1].conv2.weight.detach().clone()
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(EncoderWeightsError, match=r"1 unexpected weights \(first 'layer5.weight'\)"):
        load_encoder_weights(r18, "resnet18", tmp_path / "extra.pth")
    (tmp_path / "junk.pth").write_bytes(b"no checkpoint")
    with pytest.raises(EncoderWeightsError, match="not a readable weights file"):
        load_encoder_weights(r18, "resnet18", tmp_path / "junk.pth")
    torch.save({"epoch": 3}, tmp_path / "nostate.pth")
    with pytest.raises(EncoderWeightsError, match="holds no state dict"):
        load_encoder_weights(r18, "resnet18", tmp_path / "nostate.pth")


def test_train_cli_errors_are_one_line(tmp_path, shared_data):
    images, labels = tmp_path / "images", tmp_path / "labels"  # one real training pair
    for folder, sub in ((images, "images"), (labels, "labels")):
        folder.mkdir()
        first = sorted((shared_data / "bbbc039" / "train" / sub).glob("*.tif"))[0]
        (folder / first.name).symlink_to(first)
    base = ["train", "--images", images, "--labels", labels, "--out", tmp_path / "m.pt", "--iterations", 0]
    r = invoke(*base, "--encoder", "resnet99")
    assert r.returncode == 2
    assert r.output.strip() == ("biounet: error: unknown encoder 'resnet99'; choose from resnet18, resnet34, "
                                "resnet50, efficientnet_b0, efficientnet_b1, efficientnet_b2, efficientnet_b3 "
                                "(--encoder)")
    torch.save(checkpoint_like(torchvision_resnet_keys((2, 2, 2, 2), False), build_encoder("resnet18")),
               tmp_path / "r18.pth")
    r = invoke(*base, "--encoder", "resnet34", "--encoder-weights", tmp_path / "r18.pth")
    assert r.returncode == 2 and len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert "does not fit encoder resnet34" in r.output and "pass weights of resnet34" in r.output
    r = invoke(*base, "--encoder", "resnet18", "--padding", "valid")
    assert r.returncode == 2 and "drop --padding: an --encoder U-Net has depth 6" in r.output
    r = invoke(*base, "--encoder-weights", tmp_path / "r18.pth")
    assert r.returncode == 2 and "--encoder-weights needs --encoder NAME" in r.output
