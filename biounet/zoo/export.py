"""`biounet export`: a biounet model as a bioimage.io package (format 0.5).

The package holds the network twice, as `pytorch_state_dict` weights with the
architecture's self-contained source (`biounet/model/unet_arch.py`, unchanged)
and as `torchscript`; its input and output axes say which sizes the network
takes and what it gives back (a valid U-Net: 188 + 16k in, input - 184 out);
the normalisation is the model's as a preprocessing step; a crop of a real image
and the network's output on it are the test tensors; biounet's post-processing
(class map and instances) is kept in `config.biounet`, which `biounet segment
--model package.zip` reads back. Nothing is downloaded, and the package refers
to no URL (bioimageio.spec would check each one over the network).

The model's training data (`ModelSpec.training_data`) goes with it: its citations,
a documentation section stating what the model was trained on and the data's
terms, the licence its terms impose on the weights (the package's licence then),
and a link to the data set where the bioimage.io collection has one. An inline
dataset description is never written: bioimageio.spec refuses it under some
pydantic versions (issue 25), and a link or the documentation says the same.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from biounet import __version__
from biounet.model.file import load_model
from biounet.model.names import SHIPPED, file_digest, shipped_path
from biounet.model.spec import ModelSpec
from biounet.model.training_data import BBBC039, TrainingData
from biounet.model.zoo_package import is_package, require_bioimageio
from biounet.zoo.arch import Architecture, ExportError, architecture

DEFAULT_LICENSE = "BSD-3-Clause"  # biounet's own; a package's licence where its training data sets none
RONNEBERGER = ("Ronneberger, O., Fischer, P., Brox, T.: U-Net: Convolutional Networks for Biomedical Image "
               "Segmentation. MICCAI 2015, LNCS 9351, 234-241.", "10.1007/978-3-319-24574-4_28")
TEST_SIZE_LIMIT = 1024  # the test input is a crop of at most this many pixels per side
EPS = 1e-6  # bioimage.io's default eps of scale_range: (x - low) / (high - low + eps)
CONFIG_KEY = "biounet"


def repository_root() -> Path:
    """The source checkout biounet runs from (sample data, model card), if it is one."""
    return Path(__file__).resolve().parents[2]


def default_test_image() -> Path | None:
    """The first BBBC039 field of the repository's sample data (None outside a checkout)."""
    folder = repository_root() / "sample_data" / "bbbc039" / "images"
    images = sorted(folder.glob("*.tif")) if folder.is_dir() else []
    return images[0] if images else None


def export_package(model: str | Path, output: str | Path, *, test_image: str | Path | None = None,
                   documentation: str | Path | None = None, license: str | None = None,
                   name: str | None = None, authors: Sequence[str] = ("biounet developers",)) -> dict:
    """Write `model` (a biounet model file) as the bioimage.io package `output` (.zip).

    `license` is the package's SPDX licence: by default the one the model's training data
    imposes on its weights, else BSD-3-Clause; another than the data's is refused. Returns
    what was written: the package path, its licence, test input and output shapes, and the
    validation status bioimageio.spec gave the package.
    """
    model, output = Path(model), Path(output)
    require_bioimageio("biounet export")
    if license is not None:
        _check_license(license)
    if is_package(model):
        raise ExportError(f"{model} is already a bioimage.io package")
    if output.suffix.lower() != ".zip":
        raise ExportError(f"-o {output}: a bioimage.io package is a .zip file; name it e.g. model.zip")
    net, spec = load_model(model)
    data = training_data_of(spec)
    license = package_license(data, license)
    arch = architecture(spec.unet)
    image_path = Path(test_image) if test_image else default_test_image()
    if image_path is None:
        raise ExportError("no test image: pass --test-image IMAGE, a real image of what the model segments")
    raw, crop = _test_input(image_path, spec, arch)
    norm, preprocessing = _preprocessing(spec.normalization)
    expected = _test_output(net, raw, norm)
    shipped = next((n for n in SHIPPED if model.resolve() == shipped_path(n).resolve()), None)
    with tempfile.TemporaryDirectory(prefix="biounet-export-") as tmp:
        folder = Path(tmp)
        files = _write_files(folder, net, spec, arch, (raw, crop, image_path), expected, model, shipped is not None,
                             documentation, data)
        descr = _description(spec, arch, files, preprocessing, expected, data, license=license,
                             name=name or _default_name(model, data, shipped), authors=authors, model=model)
        from bioimageio.spec import save_bioimageio_package

        output.parent.mkdir(parents=True, exist_ok=True)
        save_bioimageio_package(descr, output_path=output)
    return {"package": str(output), "license": license, "test_input": list(raw.shape),
            "test_output": list(expected.shape), "status": descr.validation_summary.status}


def training_data_of(spec: ModelSpec) -> TrainingData | None:
    """The model's training data: as its file records it, else BBBC039 for a model whose provenance
    names it (files written before models recorded their data), else None (nothing is claimed)."""
    if spec.training_data is not None:
        return spec.training_data
    return BBBC039 if "bbbc039" in json.dumps(spec.provenance, default=str).lower() else None


def package_license(data: TrainingData | None, chosen: str | None) -> str:
    """The licence of a package: the one the training data's terms impose on the weights, or the
    chosen one (default BSD-3-Clause); a chosen licence other than the one the terms impose is refused."""
    required = data.weights_license if data is not None else None
    if required and chosen and chosen != required:
        raise ExportError(f"--license {chosen}: the model was trained on {data.name}, whose terms restrict what is "
                          f"derived from it ({data.terms}); its packages carry {required}: leave out --license")
    return required or chosen or DEFAULT_LICENSE


def _check_license(license: str) -> None:
    from bioimageio.spec.model.v0_5 import LicenseId

    try:
        LicenseId(license)
    except ValueError:
        raise ExportError(f"--license {license!r} is not an SPDX licence identifier bioimage.io knows "
                          "(e.g. BSD-3-Clause, MIT, CC-BY-4.0)") from None


# -- the test tensors -----------------------------------------------------------------------


def _test_input(path: Path, spec: ModelSpec, arch: Architecture) -> tuple[np.ndarray, np.ndarray]:
    """The centre crop of the image at `path` in the largest valid size (at most
    TEST_SIZE_LIMIT per side): (1, C, h, w) float32 raw values, and (C, h, w) as stored."""
    from biounet.read.image import open_image

    if not path.exists():
        raise ExportError(f"test image not found: {path}; check --test-image")
    image = open_image(path)
    channels = image.size("c")
    if channels != spec.unet.in_channels:
        raise ExportError(f"test image {path} has {channels} channel(s) but the model takes "
                          f"{spec.unet.in_channels}; pass another --test-image")
    height, width = image.level_shape(0)[-2:]
    sizes = []
    for n in (height, width):
        n = min(n, TEST_SIZE_LIMIT)
        if n < arch.min:
            raise ExportError(f"test image {path} is {height} x {width} pixels, smaller than the model's smallest "
                              f"input ({arch.min}); pass a larger --test-image")
        sizes.append(arch.min + (n - arch.min) // arch.step * arch.step)
    top, left = (height - sizes[0]) // 2, (width - sizes[1]) // 2
    window = {"y": slice(top, top + sizes[0]), "x": slice(left, left + sizes[1]), "c": slice(None)}
    crop = image.read(0, tuple(window.get(a, 0) for a in image.axes))  # t and z: the first plane
    crop = np.ascontiguousarray(np.moveaxis(crop, "".join(a for a in image.axes if a in window).index("c"), 0)
                                if "c" in image.axes else crop[None])
    return crop[None].astype(np.float32), crop


def _preprocessing(normalization: dict) -> tuple[dict, list]:
    """(biounet normalisation with bioimage.io's eps, the package's preprocessing) of a
    model's normalisation. Per image statistics: a package normalises each input
    itself (a whole slide in `biounet segment`), whatever the model's `over`."""
    from bioimageio.spec.model.v0_5 import (
        AxisId,
        ScaleLinearDescr,
        ScaleLinearKwargs,
        ScaleRangeDescr,
        ScaleRangeKwargs,
    )

    method = normalization.get("method", "none")
    if method in ("percentile", "minmax"):
        low, high = (float(normalization.get("low", 1.0)), float(normalization.get("high", 99.8))) \
            if method == "percentile" else (0.0, 100.0)
        kwargs = ScaleRangeKwargs(axes=[AxisId("y"), AxisId("x")], min_percentile=low, max_percentile=high, eps=EPS)
        return {"method": "percentile", "low": low, "high": high, "eps": EPS}, [ScaleRangeDescr(kwargs=kwargs)]
    if method == "fixed":
        low, high = float(normalization["low"]), float(normalization["high"])
        gain = 1.0 / (high - low)
        kwargs = ScaleLinearKwargs(gain=gain, offset=-low * gain)
        return {"method": "fixed", "low": low, "high": high}, [ScaleLinearDescr(kwargs=kwargs)]
    if method == "none":
        return {"method": "none"}, []
    raise ExportError(f"normalisation {method!r} has no bioimage.io preprocessing")


def _test_output(net, raw: np.ndarray, norm: dict) -> np.ndarray:
    """The network's output (after the package's postprocessing) for the test input."""
    from biounet.predict.normalize import normalization_stats, normalize

    x = raw[0]
    stats = normalization_stats(x.reshape(x.shape[0], -1).astype(np.float64), norm)
    with torch.no_grad():
        return net.predict(torch.from_numpy(normalize(x, stats))[None]).numpy()


# -- the files --------------------------------------------------------------------------------


def _write_files(folder: Path, net, spec: ModelSpec, arch: Architecture, test: tuple, expected: np.ndarray,
                 model: Path, shipped: bool, documentation: str | Path | None,
                 data: TrainingData | None) -> dict[str, Path]:
    """Every file of the package, written into `folder`; `test` is (test input, the same
    crop as stored, its image's path)."""
    import tifffile

    raw, crop, image_path = test
    files = {
        "architecture": folder / arch.file_name, "state_dict": folder / "weights.pt",
        "torchscript": folder / "weights_torchscript.pt", "test_input": folder / "test_input.npy",
        "test_output": folder / "test_output.npy", "cover": folder / "cover.png",
        "documentation": folder / "README.md", "sample_input": folder / "sample_input.tif",
        "sample_output": folder / "sample_output.tif",
    }
    files["architecture"].write_text(arch.source)
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    torch.save(state, files["state_dict"])
    module = arch.network(**arch.kwargs)
    module.load_state_dict(state)
    torch.jit.script(module.eval()).save(str(files["torchscript"]))
    np.save(files["test_input"], raw)
    np.save(files["test_output"], expected)
    tifffile.imwrite(files["sample_input"], crop[0] if crop.shape[0] == 1 else crop, compression="zlib")
    tifffile.imwrite(files["sample_output"], expected[0], compression="zlib")
    _cover(files["cover"], raw, expected, spec)
    text = _documentation(spec, model, shipped, documentation)
    files["documentation"].write_text(text + _validation_section(text, spec, raw, expected, image_path)
                                      + training_data_section(text, data))
    return files


def _cover(path: Path, raw: np.ndarray, output: np.ndarray, spec: ModelSpec) -> None:
    """A 2:1 PNG: the test input (centre, the output's field) beside the class map."""
    from PIL import Image

    from biounet.pipeline.stages import CLASS_COLOURS
    from biounet.predict.classes import model_classes

    side = min(output.shape[-2:])
    oy, ox = ((n - side) // 2 for n in output.shape[-2:])
    dy, dx = ((a - b) // 2 for a, b in zip(raw.shape[-2:], output.shape[-2:]))
    grey = raw[0, 0, dy + oy : dy + oy + side, dx + ox : dx + ox + side].astype(np.float64)
    lo, hi = np.percentile(grey, [1, 99.8])
    grey = (np.clip((grey - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8)
    classes = model_classes(spec.postprocess, output[0])[oy : oy + side, ox : ox + side]
    colours = np.array(CLASS_COLOURS, np.uint8)[:, :3]
    colours[0] = 0
    right = colours[np.minimum(classes, len(colours) - 1)]
    image = np.concatenate([np.repeat(grey[..., None], 3, -1), right], axis=1)
    Image.fromarray(image).save(path)


def _documentation(spec: ModelSpec, model: Path, shipped: bool, given: str | Path | None) -> str:
    """The package's README: a given file, the model card of the shipped model, or a summary."""
    if given:
        path = Path(given)
        if not path.is_file():
            raise ExportError(f"documentation file not found: {path}; check --documentation")
        return path.read_text()
    card = repository_root() / "MODEL_CARD.md"
    if shipped and card.is_file():
        return card.read_text()
    unet = spec.unet
    lines = [f"# {model.stem}", "",
             f"A biounet U-Net ({f'{unet.encoder} encoder, ' if unet.encoder else ''}"
             f"depth {unet.depth}, width {unet.width}, {unet.padding} convolutions, "
             f"{unet.in_channels} input channel(s)), target `{spec.target}`, outputs: {', '.join(spec.classes)}.",
             "", f"Post-processing (biounet): `{json.dumps(spec.postprocess)}`.", "",
             f"Normalisation: `{json.dumps(spec.normalization)}`.", "", "## Provenance", "", "```",
             json.dumps(spec.provenance, indent=1, default=str), "```", ""]
    return "\n".join(lines)


def _validation_section(text: str, spec: ModelSpec, raw: np.ndarray, expected: np.ndarray, image: Path) -> str:
    """A "Validation" section (what the test tensors are; the model's validation scores),
    unless the documentation has one."""
    if any(line.lstrip("#").strip().lower() == "validation" for line in text.splitlines() if line.startswith("#")):
        return ""
    lines = ["", "## Validation", "",
             f"`test_input.npy` is the centre {raw.shape[-2]} x {raw.shape[-1]} px crop of `{image.name}` (raw "
             f"values); `test_output.npy` is this network's output on it ({expected.shape[-2]} x "
             f"{expected.shape[-1]} px), made by biounet {__version__}. bioimageio.core's model test reproduces it "
             "with both weight formats (pytorch_state_dict and torchscript). In biounet, "
             "`biounet segment slide.tif --model this.zip` runs the package on slides of any size, with the "
             "post-processing in `config.biounet`."]
    scores = spec.provenance.get("validation")
    if isinstance(scores, dict) and "average_f1" in scores:
        lines += ["", f"Validation scores recorded in training (`{spec.provenance.get('val_images', 'validation images')}`): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if k.startswith(("average_f1", "f1_0.50"))
                              and isinstance(v, float)) + "."]
    return "\n".join(lines) + "\n"


TRAINING_DATA_HEADING = "Training data and its terms"


def training_data_section(text: str, data: TrainingData | None) -> str:
    """A section saying what the model was trained on: the data, its licence and terms, what to
    cite, and where bioimage.io lists it (unless the documentation has such a section)."""
    if data is None or any(line.lstrip("#").strip() == TRAINING_DATA_HEADING for line in text.splitlines()):
        return ""
    lines = ["", f"## {TRAINING_DATA_HEADING}", "", f"Trained on **{data.name}**.",
             f"Licence of the data: {data.license or 'none given as an SPDX licence; its terms:'}. {data.terms}"]
    if data.weights_license:
        lines.append(f"These weights are derived from it and carry its terms: licence {data.weights_license}.")
    if data.bioimageio:
        lines.append(f"In the bioimage.io collection: dataset `{data.bioimageio}`.")
    lines += ["", "Cite:", ""] + [f"- {c.text} doi:{c.doi}" for c in data.cite]
    return "\n".join(lines) + "\n"


# -- the description ---------------------------------------------------------------------------


def _default_name(model: Path, data: TrainingData | None, shipped: str | None) -> str:
    if shipped:
        return f"biounet {shipped} U-Net" + (f" ({data.name.split(' (')[0]})" if data else "")
    return f"biounet U-Net {model.stem}"


def _description(spec: ModelSpec, arch: Architecture, files: dict[str, Path], preprocessing: list,
                 expected: np.ndarray, data: TrainingData | None, *, license: str, name: str,
                 authors: Sequence[str], model: Path):
    """The bioimage.io ModelDescr (format 0.5) of the package."""
    from bioimageio.spec.model.v0_5 import (
        ArchitectureFromFileDescr,
        Author,
        AxisId,
        BatchAxis,
        BioimageioConfig,
        ChannelAxis,
        CiteEntry,
        Config,
        DatasetId,
        FileDescr,
        Identifier,
        InputTensorDescr,
        IntervalOrRatioDataDescr,
        LinkedDataset,
        ModelDescr,
        OutputTensorDescr,
        ParameterizedSize,
        PytorchStateDictWeightsDescr,
        SizeReference,
        SoftmaxDescr,
        SoftmaxKwargs,
        SpaceInputAxis,
        SpaceOutputAxis,
        SpaceOutputAxisWithHalo,
        TensorId,
        TorchscriptWeightsDescr,
        Version,
        WeightsDescr,
    )

    unet = spec.unet
    torch_version = Version(torch.__version__.split("+")[0])
    in_names = ["raw"] if unet.in_channels == 1 else [f"raw{i}" for i in range(unet.in_channels)]
    input_axes = [BatchAxis(), ChannelAxis(channel_names=[Identifier(n) for n in in_names])]
    input_axes += [SpaceInputAxis(id=AxisId(a), size=ParameterizedSize(min=arch.min, step=arch.step)) for a in "yx"]
    classification = unet.head == "classification"
    out_names = spec.classes if classification else ["distance"]
    output_axes = [BatchAxis(), ChannelAxis(channel_names=[Identifier(_identifier(n)) for n in out_names])]
    for a in "yx":
        size = SizeReference(tensor_id=TensorId("input"), axis_id=AxisId(a), offset=arch.offset)
        output_axes.append(SpaceOutputAxisWithHalo(id=AxisId(a), size=size, halo=arch.halo) if arch.halo
                           else SpaceOutputAxis(id=AxisId(a), size=size))
    inputs = [InputTensorDescr(
        id=TensorId("input"), description="raw image, normalised by the preprocessing",
        axes=input_axes, test_tensor=FileDescr(source=files["test_input"]),
        sample_tensor=FileDescr(source=files["sample_input"]),
        data=IntervalOrRatioDataDescr(type="float32"), preprocessing=preprocessing,
    )]
    outputs = [OutputTensorDescr(
        id=TensorId("output"),
        description="class probabilities (softmax)" if classification else "normalised distance to the border",
        axes=output_axes, test_tensor=FileDescr(source=files["test_output"]),
        sample_tensor=FileDescr(source=files["sample_output"]),
        data=IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0) if classification else (None, None)),
        postprocessing=[SoftmaxDescr(kwargs=SoftmaxKwargs(axis=AxisId("channel")))] if classification else [],
    )]
    weights = WeightsDescr(
        pytorch_state_dict=PytorchStateDictWeightsDescr(
            source=files["state_dict"], pytorch_version=torch_version,
            architecture=ArchitectureFromFileDescr(source=files["architecture"], callable=Identifier(arch.callable),
                                                   kwargs=arch.kwargs),
        ),
        torchscript=TorchscriptWeightsDescr(source=files["torchscript"], pytorch_version=torch_version,
                                            parent="pytorch_state_dict",
                                            comment="torch.jit.script of the pytorch_state_dict network"),
    )
    cite = [CiteEntry(text=RONNEBERGER[0], doi=RONNEBERGER[1])]
    cite += [CiteEntry(text=c.text, doi=c.doi) for c in (data.cite if data else ())]
    training_data = LinkedDataset(id=DatasetId(data.bioimageio)) if data and data.bioimageio else None
    nuclei = data is not None and data.name == BBBC039.name
    shape = "x".join(map(str, expected.shape[-2:]))
    network = f"U-Net with a {unet.encoder} encoder (decoder width {unet.width})" if unet.encoder else \
        f"U-Net ({unet.padding} convolutions, depth {unet.depth}, width {unet.width})"
    description = (f"{network} trained with "
                   f"biounet: {', '.join(out_names)} ({spec.target} target); valid inputs "
                   f"{arch.min} + {arch.step}k px, output = input {arch.offset:+d} px. "
                   f"Test tensors: a crop of a real image, {shape} px out.")
    bioimageio_config = BioimageioConfig(
        architecture_type="U-Net", model_parameter_count=sum(p.numel() for p in _parameters(files)),
        task="segmentation", modality="fluorescence microscopy" if nuclei else None,
        target_structure=["nuclei"] if nuclei else [],
    )
    biounet_config = {
        "version": __version__, "target": spec.target, "classes": list(spec.classes),
        "postprocess": spec.postprocess, "normalization": spec.normalization, "tile": spec.tile,
        "unet": unet.to_dict(), "model_sha256": file_digest(model),
        "provenance": json.loads(json.dumps(spec.provenance, default=str)),
    }
    try:
        return ModelDescr(
            name=name, description=description, authors=[Author(name=a) for a in authors], cite=cite,
            license=license, documentation=FileDescr(source=files["documentation"]),
            covers=[FileDescr(source=files["cover"])],
            tags=["unet", "segmentation", "pytorch", "biounet", spec.target] + (["nuclei"] if nuclei else []),
            inputs=inputs, outputs=outputs, weights=weights, training_data=training_data,
            config=Config(bioimageio=bioimageio_config, **{CONFIG_KEY: biounet_config}),
        )
    except ValueError as err:  # pydantic's ValidationError: a name, author or licence bioimage.io refuses
        errors = err.errors() if hasattr(err, "errors") else []
        what = f"{'.'.join(map(str, errors[0]['loc']))}: {errors[0]['msg']}" if errors else str(err)
        raise ExportError(f"bioimage.io refuses the description ({what}); check --name, --author and --license") \
            from None


def _identifier(name: str) -> str:
    """A class name as a bioimage.io identifier (letters, digits, underscores)."""
    text = "".join(c if c.isalnum() else "_" for c in str(name))
    return text if text and not text[0].isdigit() else f"c_{text}"


def _parameters(files: dict[str, Path]):
    return torch.load(files["state_dict"], map_location="cpu", weights_only=True).values()
