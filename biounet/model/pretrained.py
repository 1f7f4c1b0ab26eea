"""Load pretrained encoder weights from a local file (nothing is downloaded).

Accepted: a state dict saved with `torch.save` (.pth/.pt/.bin; also wrapped in
{"state_dict": ...} or {"model": ...}, with or without DDP's "module."
prefix), or a .safetensors file (read here: the format is a JSON header and
raw little-endian tensors, so no extra package is needed). Names may be
torchvision's or timm's: ResNets are named alike in both; torchvision's
EfficientNets (`features.*`) are renamed to timm's. Classifier weights (`fc`,
`conv_head`, `bn2`, `classifier`) are dropped. With other than 3 input
channels, the first convolution's RGB weights are summed (1 channel) or
repeated and rescaled, as timm's `adapt_input_conv` does.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
WRAPPERS = ("state_dict", "model", "state_dict_ema", "model_ema")
CLASSIFIER = re.compile(r"^(fc|classifier|conv_head|bn2|head)\.")
# torchvision EfficientNet block parts -> timm names: (stage without expansion, stage with expansion)
TV_PARTS = (
    {"0.0": "conv_dw", "0.1": "bn1", "1.fc1": "se.conv_reduce", "1.fc2": "se.conv_expand", "2.0": "conv_pw",
     "2.1": "bn2"},
    {"0.0": "conv_pw", "0.1": "bn1", "1.0": "conv_dw", "1.1": "bn2", "2.fc1": "se.conv_reduce",
     "2.fc2": "se.conv_expand", "3.0": "conv_pwl", "3.1": "bn3"},
)


class EncoderWeightsError(ValueError):
    """A weights file that cannot be read or does not fit the encoder."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (torch.save or safetensors), unwrapped and without "module."."""
    path = Path(path)
    if not path.is_file():
        raise EncoderWeightsError(f"encoder weights not found: {path}; pass a local .pth or .safetensors file")
    try:
        if path.suffix == ".safetensors":
            state = read_safetensors(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, ValueError,
            KeyError, TypeError) as err:
        raise EncoderWeightsError(f"{path} is not a readable weights file ({type(err).__name__}); pass a state "
                                  "dict saved with torch.save (.pth) or a .safetensors file") from None
    while isinstance(state, dict) and not _is_tensor_dict(state):
        inner = next((state[k] for k in WRAPPERS if isinstance(state.get(k), dict)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, dict) or not _is_tensor_dict(state):
        raise EncoderWeightsError(f"{path} holds no state dict of tensors; pass the encoder's weights "
                                  "(a torchvision or timm state dict)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _is_tensor_dict(state: dict) -> bool:
    return bool(state) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file: 8-byte little-endian header length, JSON header, raw data."""
    data = Path(path).read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    body = memoryview(data)[8 + length :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = SAFETENSORS_DTYPES[info["dtype"]]
        start, end = info["data_offsets"]
        shape = info["shape"]
        if end == start:
            out[name] = torch.empty(shape, dtype=dtype)
        else:
            out[name] = torch.frombuffer(bytearray(body[start:end]), dtype=dtype).reshape(shape)
    return out


def to_timm_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's EfficientNet names (`features.*`) as timm's; other names unchanged."""
    if not any(k.startswith("features.") for k in state):
        return dict(state)
    out = {}
    for key, value in state.items():
        m = re.match(r"features\.(\d+)\.(.*)$", key)
        if m is None:
            out[key] = value  # classifier.*: dropped later
            continue
        stage, rest = int(m.group(1)), m.group(2)
        if stage == 0:
            out[re.sub(r"^0\.", "conv_stem.", re.sub(r"^1\.", "bn1.", rest))] = value
            continue
        b = re.match(r"(\d+)\.block\.(\d+\.(?:fc\d|\d))\.(.*)$", rest)
        if b is None:  # the last stage (head convolution): a classifier part
            out[f"conv_head.{rest}"] = value
            continue
        part = TV_PARTS[stage > 1].get(b.group(2))
        if part is None:
            raise EncoderWeightsError(f"unexpected torchvision EfficientNet key {key!r}")
        out[f"blocks.{stage - 1}.{b.group(1)}.{part}.{b.group(3)}"] = value
    return out


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """First-convolution weights for `in_channels` inputs from RGB ones (timm's rule):
    summed over RGB for 1 channel, else repeated and scaled by 3 / in_channels."""
    if weight.shape[1] == in_channels:
        return weight
    if weight.shape[1] != 3:
        raise EncoderWeightsError(f"the first convolution has {weight.shape[1]} input channels; only RGB (3) "
                                  f"weights can be adapted to {in_channels}")
    w = weight.float()
    if in_channels == 1:
        w = w.sum(dim=1, keepdim=True)
    else:
        w = w.repeat(1, math.ceil(in_channels / 3), 1, 1)[:, :in_channels] * (3 / in_channels)
    return w.to(weight.dtype)


def load_encoder_weights(encoder: nn.Module, name: str, path: str | Path) -> None:
    """Load a local torchvision/timm checkpoint of encoder `name` into `encoder` (every weight must fit)."""
    state = {k: v for k, v in to_timm_names(read_state_dict(path)).items() if not CLASSIFIER.match(k)}
    first = f"{encoder.first_conv}.weight"
    if first in state:
        state[first] = adapt_input_conv(state[first], encoder.state_dict()[first].shape[1])
    own = encoder.state_dict()
    for key, value in own.items():  # old checkpoints lack BN's counter
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    hint = f"pass weights of {name} in torchvision or timm format"
    if missing:
        raise EncoderWeightsError(f"{path} does not fit encoder {name}: {len(missing)} of its {len(own)} weights "
                                  f"are missing (first {missing[0]!r}); {hint}")
    if extra:
        raise EncoderWeightsError(f"{path} does not fit encoder {name}: {len(extra)} unexpected weights "
                                  f"(first {extra[0]!r}); {hint}")
    if wrong:
        k = wrong[0]
        raise EncoderWeightsError(f"{path} does not fit encoder {name}: {k!r} has shape {tuple(state[k].shape)}, "
                                  f"the encoder {tuple(own[k].shape)}; {hint}")
    encoder.load_state_dict(state)
