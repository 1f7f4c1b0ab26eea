"""A bioimage.io model package as biounet's network and spec, for the tiled engine.

`load_package` reads the description (a .zip, an rdf.yaml or a folder; format
0.4 descriptions are converted to 0.5), checks that biounet can run it, and
maps it to what `segment`, `evaluate` and `info` use:

- the input axes (batch, channel, y, x in any order) -> biounet's NCHW tiles;
- the preprocessing (scale_range, zero_mean_unit_variance,
  fixed_zero_mean_unit_variance, scale_linear) -> a normalisation spec, its
  statistics taken from the whole slide as for any model;
- the valid input sizes (min + step k, or one fixed size) -> a `SizeRule`;
  the output's offset and halo -> the margin each tile loses;
- the output channels -> probabilities (after the package's softmax or sigmoid);
  the class map by the post-processing in `config.biounet` (a biounet export),
  else by argmax;
- the `pytorch_state_dict` (its architecture rebuilt by bioimageio.core) or
  `torchscript` weights -> an nn.Module with biounet's `predict`.

Anything else (3D or time axes, several inputs, TensorFlow/ONNX/Keras weights
only, files behind URLs, other processing) is refused with one line saying
what. Nothing is downloaded: the description is read without I/O checks and
every file biounet uses must be in the package.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from biounet.model.config import UNetConfig
from biounet.model.geometry import geometry_of
from biounet.model.postprocess import method_params
from biounet.model.spec import ModelFileError, ModelSpec
from biounet.model.zoo_package import is_rdf_name, require_bioimageio

RUNNABLE = ("pytorch_state_dict", "torchscript")
ARCH = "bioimageio"
CONFIG_KEY = "biounet"  # biounet.zoo.export.CONFIG_KEY
GUESSED_WIDTH = 32  # memory estimates of a network that is no biounet U-Net: as a width-32 U-Net's
FIXED_ALIGN = 16  # tiles of a fixed-size network start on multiples of gcd(size, 16)


class PackageError(ModelFileError):
    """A bioimage.io package biounet cannot run (one line saying why)."""


@contextlib.contextmanager
def _quiet():
    """bioimageio's log lines (loguru; some are logged from pydantic's frames) and warnings
    off while biounet reads a package: biounet says what matters in its own words."""
    from loguru import logger

    logger.disable("")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.enable("")


def _source(path: Path) -> Path:
    """The file bioimageio.spec opens for a package path (a folder: its rdf.yaml)."""
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and is_rdf_name(p.name))
        return found[0]
    return path


def read_description(path: str | Path):
    """The package's model description (format 0.5), read without downloading anything."""
    path = Path(path)
    if not path.exists():
        from biounet.model.spec import ModelNotFoundError

        raise ModelNotFoundError(f"model not found: {path}; check --model")
    require_bioimageio(f"the bioimage.io package {path}")
    from bioimageio.spec import InvalidDescr, load_description

    with _quiet():
        try:
            descr = load_description(str(_source(path)), format_version="latest", perform_io_checks=False)
        except Exception as err:  # noqa: BLE001 - bioimageio raises many kinds for unreadable files
            raise PackageError(f"{path} is not a readable bioimage.io package ({type(err).__name__}: {err})") from None
    if isinstance(descr, InvalidDescr):
        raise PackageError(f"{path} is not a valid bioimage.io description: {_first_error(descr)}")
    if descr.type != "model":
        raise PackageError(f"{path} describes a bioimage.io {descr.type}, not a model")
    if not str(descr.format_version).startswith("0.5"):
        raise PackageError(f"{path}: bioimage.io format {descr.format_version} could not be converted to 0.5")
    return descr


def _first_error(descr) -> str:
    for detail in descr.validation_summary.details:
        for error in detail.errors:
            loc = ".".join(str(p) for p in error.loc)
            return f"{loc}: {error.msg}" if loc else error.msg
    return "unknown error"


# -- the description -> biounet's spec -----------------------------------------------------


def package_spec(path: str | Path, weights: str | None = None, descr=None) -> ModelSpec:
    """The ModelSpec of a package (raises PackageError for what biounet cannot run)."""
    path = Path(path)
    descr = read_description(path) if descr is None else descr
    where = f"{path}:"
    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise PackageError(f"{where} models with {len(descr.inputs)} inputs and {len(descr.outputs)} outputs are "
                           "not supported (biounet runs one input image to one output)")
    source, target = descr.inputs[0], descr.outputs[0]
    in_order, in_channels = _layout(source, where, "input")
    out_order, out_channels = _layout(target, where, "output")
    rule, margin, padding = _sizes(source, target, where)
    chosen = _weights_format(descr, weights, where)
    normalization = _normalization(source, in_channels, where)
    activation = _activation(target, where)
    config = _biounet_config(descr)
    unet = config.get("unet") or {}
    head = unet.get("head", "classification")
    classes = _class_names(target, out_channels, config)
    postprocess = _postprocess(config, out_channels, head, where)
    sizes = {"min": rule[0], "step": rule[1], "margin": margin, "fixed": rule[2]}
    net_config = UNetConfig(
        in_channels=in_channels, out_channels=out_channels, depth=int(unet.get("depth", 1)),
        width=int(unet.get("width", GUESSED_WIDTH)), padding=padding, head=head,
        extra={"arch": ARCH, "sizes": sizes, "weights": chosen, "input_axes": in_order, "output_axes": out_order,
               "activation": activation},
    )
    geometry = geometry_of(net_config)
    if geometry.output_size(geometry.input_size(geometry.align)) < geometry.align:
        raise PackageError(f"{where} its tiles keep too little: input {rule[0]} px, of which {margin} px per side "
                           "are margin")
    provenance = {"bioimageio": {"name": descr.name, "format_version": str(descr.format_version),
                                 "weights": chosen, "package": str(path)}}
    if isinstance(config.get("provenance"), dict):
        provenance.update(config["provenance"])
    return ModelSpec(unet=net_config, target=str(config.get("target", ARCH)), classes=classes,
                     postprocess=postprocess, normalization=normalization, tile=None, provenance=provenance)


def _layout(tensor, where: str, role: str) -> tuple[str, int]:
    """The tensor's axes as letters of "bcyx" in the package's order, and its channel count."""
    order, channels = "", 1
    for axis in tensor.axes:
        kind, name = axis.type, str(axis.id)
        if kind == "batch":
            if axis.size not in (None, 1):
                raise PackageError(f"{where} a fixed batch size of {axis.size} is not supported")
            order += "b"
        elif kind == "channel":
            order += "c"
            channels = axis.size
        elif kind == "space" and name in ("y", "x"):
            order += name
        elif kind == "space":
            detail = "3D models (a z axis)" if name == "z" else f"space axis {name!r}"
            raise PackageError(f"{where} {detail} are not supported: biounet runs 2D models (axes y and x)")
        else:
            raise PackageError(f"{where} {role} axis {name!r} of type {kind} is not supported: biounet runs 2D "
                               "models (batch, channel, y, x)")
    if "y" not in order or "x" not in order:
        raise PackageError(f"{where} the {role} has no y and x axes: biounet runs 2D image models")
    return order, channels


def _axis(tensor, name: str):
    return next(a for a in tensor.axes if str(a.id) == name)


def _sizes(source, target, where: str) -> tuple[tuple[int, int, bool], int, str]:
    """((min, step, fixed), margin, "valid" or "same") of the package's y and x axes."""
    from bioimageio.spec.model.v0_5 import ParameterizedSize, SizeReference

    rules, margins, offsets = [], [], []
    for name in "yx":
        axis = _axis(source, name)
        size = axis.size
        if isinstance(size, SizeReference) and str(size.tensor_id) == str(source.id) and size.offset == 0:
            axis = _axis(source, str(size.axis_id))  # e.g. x = y: square tiles are what biounet cuts anyway
            size = axis.size
        if isinstance(size, ParameterizedSize):
            rules.append((size.min, size.step, False))
        elif isinstance(size, int):
            rules.append((size, math.gcd(size, FIXED_ALIGN), True))
        else:
            raise PackageError(f"{where} input axis {name} has a size biounet cannot tile ({size})")
        out = _axis(target, name)
        halo = int(getattr(out, "halo", 0) or 0)
        if isinstance(out.size, SizeReference):
            ref = out.size
            if str(ref.tensor_id) != str(source.id) or str(ref.axis_id) != name or out.scale != axis.scale:
                raise PackageError(f"{where} output axis {name} is not the input's {name} (plus an offset): "
                                   "resized outputs are not supported")
            offset = ref.offset
        elif isinstance(out.size, int) and rules[-1][2]:
            offset = out.size - rules[-1][0]
        else:
            raise PackageError(f"{where} output axis {name} has a size biounet cannot tile ({out.size})")
        if offset > 0 or offset % 2:
            raise PackageError(f"{where} output axis {name} is {offset:+d} px against the input: biounet needs an "
                               "output of the input's size or cropped evenly on both sides")
        margins.append(halo - offset // 2)
        offsets.append(offset)
    if rules[0] != rules[1] or margins[0] != margins[1]:
        raise PackageError(f"{where} y and x take different sizes ({rules[0]}, {rules[1]}): not supported")
    return rules[0], margins[0], "valid" if offsets[0] < 0 else "same"


def _weights_format(descr, wanted: str | None, where: str) -> str:
    have = [name for name, entry in descr.weights if entry is not None]
    if wanted is not None:
        if wanted not in RUNNABLE:
            raise PackageError(f"--weights {wanted}: biounet runs {' or '.join(RUNNABLE)} weights")
        if wanted not in have:
            raise PackageError(f"{where} has no {wanted} weights (it has: {', '.join(have)})")
        return wanted
    for name in RUNNABLE:
        if name in have:
            return name
    raise PackageError(f"{where} has only {', '.join(have)} weights: biounet runs pytorch_state_dict or "
                       "torchscript weights")


def _steps(processing, what: str) -> list:
    """A tensor's processing steps but its casts to float (casts to anything else: refused)."""
    steps = []
    for step in processing:
        if step.id != "ensure_dtype":
            steps.append(step)
        elif step.kwargs.dtype not in ("float32", "float64"):
            raise PackageError(f"{what} ensure_dtype {step.kwargs.dtype} is not supported (biounet runs float32)")
    return steps


def _normalization(source, channels: int, where: str) -> dict:
    """biounet's normalisation spec of the input's preprocessing (ensure_dtype float32 aside)."""
    if source.dtype != "float32":
        raise PackageError(f"{where} input data type {source.dtype} is not supported: biounet feeds float32")
    steps = _steps(source.preprocessing, f"{where} preprocessing")
    if not steps:
        return {"method": "none"}
    if len(steps) > 1:
        names = ", ".join(s.id for s in steps)
        raise PackageError(f"{where} preprocessing {names}: biounet supports one normalisation step")
    step = steps[0]
    kwargs = step.kwargs
    if step.id in ("scale_range", "zero_mean_unit_variance"):
        axes = {str(a) for a in kwargs.axes} if kwargs.axes is not None else {"batch", "channel", "y", "x"}
        if not {"y", "x"} <= axes:
            raise PackageError(f"{where} preprocessing {step.id} over axes {sorted(axes)} is not supported "
                               "(statistics must cover y and x)")
        joint = "channel" in axes and channels > 1
        if step.id == "scale_range":
            ref = getattr(kwargs, "reference_tensor", None)
            if ref is not None and str(ref) != str(source.id):
                raise PackageError(f"{where} preprocessing scale_range with another reference tensor is not supported")
            return {"method": "percentile", "low": float(kwargs.min_percentile), "high": float(kwargs.max_percentile),
                    "eps": float(kwargs.eps), "joint": joint}
        return {"method": "meanstd", "eps": float(kwargs.eps), "joint": joint}
    if step.id == "fixed_zero_mean_unit_variance":
        mean, std = _per_channel(kwargs, "mean", "std", where)
        eps = float(getattr(kwargs, "eps", 1e-6) or 1e-6)
        return {"method": "fixed", "low": mean, "high": _combine(mean, std, lambda m, s: m + s + eps)}
    if step.id == "scale_linear":
        gain, offset = _per_channel(kwargs, "gain", "offset", where)
        if any(g == 0 for g in (gain if isinstance(gain, list) else [gain])):
            raise PackageError(f"{where} preprocessing scale_linear with gain 0 is not supported")
        low = _combine(offset, gain, lambda o, g: -o / g)
        return {"method": "fixed", "low": low, "high": _combine(low, gain, lambda lo, g: lo + 1.0 / g)}
    raise PackageError(f"{where} preprocessing {step.id!r} is not supported (biounet supports scale_range, "
                       "zero_mean_unit_variance, fixed_zero_mean_unit_variance, scale_linear)")


def _per_channel(kwargs, first: str, second: str, where: str) -> tuple[Any, Any]:
    """Two parameters of a processing step: numbers, or lists along the channel axis."""
    axis = getattr(kwargs, "axis", None)
    if axis is not None and str(axis) != "channel":
        raise PackageError(f"{where} preprocessing along axis {axis} is not supported (only along channel)")
    a, b = getattr(kwargs, first), getattr(kwargs, second)
    n = max(len(v) if isinstance(v, list) else 1 for v in (a, b))
    if n == 1:
        return (float(a[0]) if isinstance(a, list) else float(a)), (float(b[0]) if isinstance(b, list) else float(b))
    return ([float(v) for v in a] if isinstance(a, list) else [float(a)] * n,
            [float(v) for v in b] if isinstance(b, list) else [float(b)] * n)


def _combine(a, b, op):
    if isinstance(a, list):
        return [op(x, y) for x, y in zip(a, b)]
    return op(a, b)


def _activation(target, where: str) -> str | None:
    """The output's postprocessing biounet applies after the network: softmax, sigmoid or none."""
    steps = _steps(target.postprocessing, f"{where} postprocessing")
    if not steps:
        return None
    if len(steps) == 1 and steps[0].id == "sigmoid":
        return "sigmoid"
    if len(steps) == 1 and steps[0].id == "softmax" and str(steps[0].kwargs.axis) == "channel":
        return "softmax"
    names = ", ".join(s.id for s in steps)
    raise PackageError(f"{where} postprocessing {names} is not supported (biounet applies softmax over channels "
                       "or sigmoid)")


def _biounet_config(descr) -> dict:
    extra = descr.config.model_extra or {}
    config = extra.get(CONFIG_KEY)
    return dict(config) if isinstance(config, dict) else {}


def _class_names(target, channels: int, config: dict) -> list[str]:
    if isinstance(config.get("classes"), list) and len(config["classes"]) == channels:
        return [str(c) for c in config["classes"]]
    names = [str(n) for n in getattr(next((a for a in target.axes if a.type == "channel"), None),
                                     "channel_names", None) or []]
    if len(names) == channels and channels > 1:
        return names
    return ["background", "foreground"] if channels == 1 else [f"class{i}" for i in range(channels)]


def _postprocess(config: dict, channels: int, head: str, where: str) -> dict:
    """biounet's post-processing from `config.biounet`, else argmax (1 channel: > 0.5)."""
    post = config.get("postprocess")
    if not post:
        if head != "classification":
            raise PackageError(f"{where} a regression output needs config.biounet.postprocess")
        return {"name": "argmax", "params": {}}
    try:
        name, params = str(post["name"]), dict(post.get("params") or {})
        method_params(name, params)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise PackageError(f"{where} config.biounet.postprocess is not one biounet knows ({err})") from None
    need = {"watershed_3class": 3, "watershed_distance": 1}.get(name)
    if need is not None and channels != need:
        raise PackageError(f"{where} config.biounet.postprocess {name} needs {need} output channel(s), the model "
                           f"gives {channels}")
    return {"name": name, "params": params}


# -- the network -----------------------------------------------------------------------------------


class ZooNetwork(nn.Module):
    """A package's network behind biounet's interface: NCHW float32 tiles in, `predict`
    gives NCHW float32 probabilities (after the package's softmax or sigmoid)."""

    def __init__(self, module: nn.Module, config: UNetConfig) -> None:
        super().__init__()
        self.module = module
        self.config = config
        self.geometry = geometry_of(config)
        self.input_axes = config.extra["input_axes"]
        self.output_axes = config.extra["output_axes"]
        self.activation = config.extra.get("activation")
        # A parameter, so the network tells its device like any other (a package's network may have none).
        self.anchor = nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        have = "bcyx"
        if "c" not in self.input_axes:
            x, have = x[:, 0], "byx"
        if "b" in self.input_axes:
            return _to_nchw(self._call(_permute(x, have, self.input_axes)), self.output_axes)
        y = torch.stack([self._call(_permute(t, have[1:], self.input_axes)) for t in x])  # a sample at a time
        return _to_nchw(y, "b" + self.output_axes)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        y = self.module(x)
        return y[0] if isinstance(y, (tuple, list)) else y

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The package's output: probabilities after its softmax or sigmoid (float32)."""
        y = self(x).float()
        if self.activation == "softmax":
            return torch.softmax(y, dim=1)
        if self.activation == "sigmoid":
            return torch.sigmoid(y)
        return y


def _permute(x: torch.Tensor, have: str, want: str) -> torch.Tensor:
    return x if have == want else x.permute([have.index(a) for a in want])


def _to_nchw(y: torch.Tensor, order: str) -> torch.Tensor:
    if "c" not in order:
        y = y.unsqueeze(order.index("y"))
        order = order.replace("y", "cy")
    return _permute(y, order, "bcyx")


def load_package(path: str | Path, weights: str | None = None) -> tuple[ZooNetwork, ModelSpec]:
    """The network (on the CPU, eval mode) and spec of a bioimage.io package."""
    path = Path(path)
    descr = read_description(path)
    spec = package_spec(path, weights, descr)
    chosen = spec.unet.extra["weights"]
    entry = getattr(descr.weights, chosen)
    where = f"{path}:"
    _check_local(entry, f"{chosen} weights", where)
    if chosen == "pytorch_state_dict" and hasattr(entry.architecture, "source"):
        _check_local(entry.architecture, "architecture", where)
    try:
        with _quiet():
            module = _load_module(entry, chosen)
    except Exception as err:  # noqa: BLE001 - the package's own code and torch raise anything
        raise PackageError(f"{where} cannot load its {chosen} weights ({type(err).__name__}: {err})") from None
    return ZooNetwork(module, spec.unet).eval(), spec


def _check_local(node, what: str, where: str) -> None:
    """A file the package names must be in it (nothing is downloaded) and match its sha256."""
    source = node.source
    if str(source).startswith(("http://", "https://")):
        raise PackageError(f"{where} its {what} file is a URL ({source}); biounet downloads nothing: download the "
                           "package with its files and pass that")
    path = source.absolute() if hasattr(source, "absolute") else source
    if not path.exists():
        raise PackageError(f"{where} its {what} file {source} is missing from the package")
    try:
        with _quiet():
            node.validate_sha256(force_recompute=True)
    except ValueError:
        raise PackageError(f"{where} its {what} file {source} fails its sha256 check (a damaged copy?); copy the "
                           "package again") from None


def _load_module(entry, chosen: str) -> nn.Module:
    if chosen == "torchscript":
        return torch.jit.load(io.BytesIO(entry.get_reader().read()), map_location="cpu")
    from bioimageio.core.backends.pytorch_backend import load_torch_model

    return load_torch_model(entry, load_state=True, devices=["cpu"])


# -- info -------------------------------------------------------------------------------------------------


def _training_data(descr) -> str | None:
    """A package's training data: a linked bioimage.io dataset's id, or an inline description's name."""
    data = descr.training_data
    if data is None:
        return None
    return f"bioimage.io dataset {data.id}" if getattr(data, "id", None) else getattr(data, "name", None)


def describe_package(path: str | Path) -> dict:
    """What `biounet info` shows of a package: what it is, and how biounet would run it."""
    path = Path(path)
    descr = read_description(path)
    weights = [name for name, entry in descr.weights if entry is not None]
    summary: dict[str, Any] = {
        "bioimageio": descr.name, "format_version": str(descr.format_version), "weights": ", ".join(weights),
        "license": str(descr.license) if descr.license else None,
        "cite": "; ".join(c.text for c in descr.cite) if descr.cite else None,
        "training_data": _training_data(descr),
    }
    try:
        spec = package_spec(path, descr=descr)
    except PackageError as err:
        summary["biounet"] = f"cannot run it: {err}"
        return summary
    sizes = spec.unet.extra["sizes"]
    rule = f"{sizes['min']} only" if sizes["fixed"] else f"{sizes['min']} + {sizes['step']}k"
    summary["biounet"] = {
        "runs": spec.unet.extra["weights"], "input channels": spec.unet.in_channels,
        "tile sizes": rule, "margin": sizes["margin"], "normalization": spec.normalization,
        "outputs": ", ".join(spec.classes), "postprocess": spec.postprocess,
    }
    return summary
