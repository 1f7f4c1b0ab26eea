"""bioimage.io packages through biounet's engine: the exported shipped model segments a
real BBBC039 field exactly as the model file does; a foreign package runs with its own
preprocessing, layout and sizes; what biounet cannot run is refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from biounet.model.file import default_model_path
from biounet.pipeline.segment import segment
from tests.conftest import assert_same_output, invoke, run_biounet, zarr_arrays
from tests.zoo.conftest import SAMPLE_IMAGES

FIELD = sorted(SAMPLE_IMAGES.glob("*.tif"))[1]  # not the field the test tensors come from


def run(model, out: Path, tile: int = 380, image: Path = FIELD, **options) -> Path:
    segment(image, out, model=model, tile=tile, block=256, device="cpu", save_probabilities="float16",
            progress=False, **options)
    return out


def test_round_trip_segment_is_exact(package, unpacked, tmp_path, one_thread):
    """Blocks of 256 px, tiles of 380 (2 x 2 tiles a block): the package's pytorch_state_dict
    weights (the zip) and its torchscript (the unpacked rdf.yaml) give the model file's
    classes, instances and probabilities bit for bit."""
    reference = run(default_model_path(), tmp_path / "pt.ome.zarr")
    arrays = zarr_arrays(reference)
    assert arrays["labels/instances/0"].max() > 50  # a real field: its nuclei
    assert_same_output(reference, run(package, tmp_path / "zip.ome.zarr"))
    assert_same_output(reference, run(unpacked / "rdf.yaml", tmp_path / "ts.ome.zarr", weights="torchscript"))


def test_encoder_round_trip_segment_is_exact(tiny_encoder_model, encoder_package, tmp_path, one_thread):
    """An encoder U-Net's package (64 px of context as the output's halo: biounet's margin)
    segments a 300 x 400 px crop of the field as its model file does (tiles of 192 px, 3 x 4
    a block), with both weight formats."""
    import tifffile

    from biounet.model.zoo_load import package_spec

    sizes = package_spec(encoder_package).unet.extra["sizes"]
    assert (sizes["min"], sizes["step"], sizes["margin"]) == (160, 32, 64)
    image = tmp_path / "crop.tif"
    tifffile.imwrite(image, tifffile.imread(FIELD)[100:400, 150:550])
    options = {"tile": 192, "image": image}
    reference = run(tiny_encoder_model, tmp_path / "pt.ome.zarr", **options)
    assert zarr_arrays(reference)["labels/instances/0"].max() > 0
    assert_same_output(reference, run(encoder_package, tmp_path / "zip.ome.zarr", **options))
    assert_same_output(reference, run(encoder_package, tmp_path / "ts.ome.zarr", weights="torchscript", **options))


def test_info_describes_a_package(unpacked):
    result = invoke("info", unpacked)  # the folder
    assert result.returncode == 0, result.output
    for text in ("bioimageio: biounet nuclei U-Net (BBBC039)", "weights: pytorch_state_dict, torchscript",
                 "tile sizes: 188 + 16k", "margin: 92", "watershed_3class", "'low': 1.0, 'high': 99.8"):
        assert text in result.output, result.output
    result = invoke("info", unpacked / "rdf.yaml", "--json")
    assert json.loads(result.output)["biounet"]["runs"] == "pytorch_state_dict"


def test_evaluate_accepts_a_package(package, tmp_path, one_thread):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    shutil.copy(FIELD, images / FIELD.name)
    shutil.copy(SAMPLE_IMAGES.parent / "labels" / FIELD.name, labels / FIELD.name)
    scores = [invoke("evaluate", "--labels", labels, "--images", images, "--model", m, "--device", "cpu").output
              for m in (default_model_path(), package)]
    assert "average_f1" in scores[0] and scores[0] == scores[1]


# -- a foreign package, made by hand ------------------------------------------------------------------


class Threshold(torch.nn.Module):
    """Logits (0, x) per pixel of a (batch, y, x, channel) input: class 1 where x > 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)
        return torch.cat([torch.zeros_like(x), x], dim=1)


def rdf(folder: Path, **changes) -> Path:
    """A small hand-made bioimage.io model (format 0.5) in `folder`: torchscript weights,
    axes batch, y, x, channel; zero mean, unit variance; 64 + 16k px in, a halo of 8."""
    folder.mkdir(exist_ok=True)
    torch.jit.script(Threshold()).save(str(folder / "weights.pt"))
    space = lambda name: {"type": "space", "id": name, "size": {"min": 64, "step": 16}}  # noqa: E731
    out = lambda name: {"type": "space", "id": name, "halo": 8,  # noqa: E731
                        "size": {"tensor_id": "raw", "axis_id": name}}
    description = {
        "format_version": "0.5.4", "type": "model", "name": "hand-made threshold",
        "description": "class 1 above the mean", "authors": [{"name": "biounet tests"}],
        "cite": [{"text": "biounet tests", "doi": "10.1007/978-3-319-24574-4_28"}], "license": "MIT",
        "inputs": [{"id": "raw", "axes": [{"type": "batch"}, space("y"), space("x"),
                                          {"type": "channel", "channel_names": ["intensity"]}],
                    "data": {"type": "float32"},
                    "preprocessing": [{"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"]}}]}],
        "outputs": [{"id": "scores", "axes": [{"type": "batch"}, {"type": "channel",
                                                                   "channel_names": ["below", "above"]},
                                              out("y"), out("x")],
                     "data": {"type": "float32"}, "postprocessing": [{"id": "softmax"}]}],
        "weights": {"torchscript": {"source": "weights.pt", "pytorch_version": "2.0"}},
    }
    for key, value in changes.items():
        target, *path = key.split("__")
        node = description
        for part in [target, *path][:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        last = [target, *path][-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    path = folder / "rdf.yaml"
    path.write_text(json.dumps(description))  # JSON is YAML
    return path


def test_foreign_package_runs_through_the_engine(tmp_path, one_thread):
    """Its layout (channel last), preprocessing (the slide's mean and std), sizes and halo
    (the margin), softmax and argmax: class 1 exactly where the field is above its mean."""
    import tifffile
    from scipy import ndimage

    from biounet.model.geometry import geometry_of
    from biounet.model.zoo_load import package_spec

    model = rdf(tmp_path / "pkg")
    spec = package_spec(model)
    assert spec.postprocess == {"name": "argmax", "params": {}} and spec.classes == ["below", "above"]
    assert spec.normalization["method"] == "meanstd"
    geometry = geometry_of(spec.unet)
    assert (geometry.min_input, geometry.align, geometry.margin) == (64, 16, 8)
    out = tmp_path / "out.ome.zarr"
    segment(FIELD, out, model=model, block=256, device="cpu", progress=False)
    arrays = zarr_arrays(out)
    image = tifffile.imread(FIELD).astype(np.float64)
    mean = np.float32(image.mean())
    assert np.array_equal(arrays["labels/classes/0"], (image.astype(np.float32) > mean).astype(np.uint8))
    _, count = ndimage.label(arrays["labels/classes/0"] == 1)
    assert arrays["labels/instances/0"].max() == count  # argmax: the components of class 1


@pytest.mark.parametrize("order", ["bcyx", "byxc", "bxyc", "cyx", "yx", "byx"])
def test_any_axis_order(order):
    """Tiles reach a package's network in its axis order (transposed, without batch or
    channel axes) and come back as NCHW: through an identity network, unchanged."""
    from biounet.model.config import UNetConfig
    from biounet.model.zoo_load import ZooNetwork

    config = UNetConfig(in_channels=3 if "c" in order else 1, out_channels=3 if "c" in order else 1,
                        extra={"sizes": {"min": 16, "step": 16, "margin": 0}, "input_axes": order,
                               "output_axes": order, "activation": None})
    x = torch.rand(2, config.in_channels, 32, 48)
    assert torch.equal(ZooNetwork(torch.nn.Identity(), config).predict(x), x)


def test_format_04_is_converted(tmp_path):
    """A description in the older format 0.4 (axes as letters, shapes as min/step lists)."""
    from biounet.model.zoo_load import package_spec

    torch.jit.script(Threshold()).save(str(tmp_path / "weights.pt"))
    (tmp_path / "README.md").write_text("# threshold")
    for name, shape in (("in", (1, 64, 64, 1)), ("out", (1, 64, 64, 2))):
        np.save(tmp_path / f"{name}.npy", np.ones(shape, np.float32))
    description = {
        "format_version": "0.4.10", "type": "model", "name": "hand-made 0.4", "description": "threshold",
        "authors": [{"name": "biounet tests"}], "cite": [{"text": "t", "doi": "10.1007/978-3-319-24574-4_28"}],
        "license": "MIT", "documentation": "README.md", "timestamp": "2024-01-01T00:00:00",
        "test_inputs": ["in.npy"], "test_outputs": ["out.npy"],
        "inputs": [{"name": "raw", "axes": "byxc", "data_type": "float32",
                    "shape": {"min": [1, 64, 64, 1], "step": [0, 16, 16, 0]},
                    "preprocessing": [{"name": "scale_range", "kwargs": {
                        "mode": "per_sample", "axes": "xy", "min_percentile": 2, "max_percentile": 98}}]}],
        "outputs": [{"name": "out", "axes": "byxc", "data_type": "float32", "halo": [0, 8, 8, 0],
                     "shape": {"reference_tensor": "raw", "scale": [1, 1, 1, 2], "offset": [0, 0, 0, 0]},
                     "postprocessing": [{"name": "sigmoid"}]}],
        "weights": {"torchscript": {"source": "weights.pt"}},
    }
    (tmp_path / "rdf.yaml").write_text(json.dumps(description))
    spec = package_spec(tmp_path)
    extra = spec.unet.extra
    assert (extra["input_axes"], extra["output_axes"], extra["activation"]) == ("byxc", "byxc", "sigmoid")
    assert extra["sizes"] == {"min": 64, "step": 16, "margin": 8, "fixed": False}
    assert spec.normalization == {"method": "percentile", "low": 2.0, "high": 98.0, "eps": 1e-6, "joint": False}


def unsupported_cases(folder: Path) -> list[tuple[Path, str]]:
    """(model path, what the one-line error says) of packages biounet cannot run."""
    z = {"type": "space", "id": "z", "size": {"min": 8, "step": 8}}
    space = [{"type": "space", "id": a, "size": {"min": 64, "step": 16}} for a in "yx"]
    channel = {"type": "channel", "channel_names": ["intensity"]}
    url = "https://example.com/weights.pt"  # never fetched: example.com is exempt from bioimageio's URL check
    missing = rdf(folder / "missing", weights={"torchscript": {"source": "weights.pt", "pytorch_version": "2.0"}})
    (missing.parent / "weights.pt").unlink()
    garbage = folder / "garbage" / "rdf.yaml"
    garbage.parent.mkdir()
    garbage.write_text("type: model\nname: [unclosed\n")
    return [
        (rdf(folder / "z", inputs__0__axes=[{"type": "batch"}, z, *space, channel]),
         "3D models (a z axis) are not supported"),
        (rdf(folder / "time", inputs__0__axes=[{"type": "batch"}, {"type": "time", "size": 4}, *space, channel]),
         "of type time is not supported"),
        (rdf(folder / "onnx", weights={"onnx": {"source": "weights.pt", "opset_version": 15}}),
         "has only onnx weights: biounet runs pytorch_state_dict or torchscript"),
        (rdf(folder / "tf", weights={"tensorflow_saved_model_bundle": {"source": "weights.pt",
                                                                        "tensorflow_version": "2.15"}}),
         "has only tensorflow_saved_model_bundle weights"),
        (missing, "torchscript weights file weights.pt is missing from the package"),
        (rdf(folder / "url", weights={"torchscript": {"source": url, "pytorch_version": "2.0"}}),
         "file is a URL (https://example.com/weights.pt); biounet downloads nothing"),
        (rdf(folder / "clip", inputs__0__preprocessing=[{"id": "clip", "kwargs": {"min": 0, "max": 1}}]),
         "preprocessing 'clip' is not supported"),
        (rdf(folder / "two", inputs__0__preprocessing=[{"id": "zero_mean_unit_variance"},
                                                        {"id": "scale_linear", "kwargs": {"gain": 2.0}}]),
         "biounet supports one normalisation step"),
        (rdf(folder / "post", outputs__0__postprocessing=[{"id": "binarize", "kwargs": {"threshold": 0.5}}]),
         "postprocessing binarize is not supported"),
        (rdf(folder / "bigger", outputs__0__axes__2={"type": "space", "id": "y",
                                                      "size": {"tensor_id": "raw", "axis_id": "y", "offset": 4}}),
         "output axis y is +4 px against the input"),
        (rdf(folder / "index", inputs__0__axes=[{"type": "batch", "size": 1}, {"type": "index", "id": "i", "size": 3},
                                                 *space, channel]), "of type index is not supported"),
        (rdf(folder / "int", inputs__0__data={"type": "uint8"}), "input data type uint8 is not supported"),
        (garbage, "is not a readable bioimage.io package"),
    ]


def test_unsupported_packages_are_one_line_errors(tmp_path, unpacked):
    field = tmp_path / "field.tif"
    shutil.copy(FIELD, field)
    damaged = tmp_path / "damaged"
    shutil.copytree(unpacked, damaged)
    weights = bytearray((damaged / "weights.pt").read_bytes())
    weights[-5000] ^= 0xFF
    (damaged / "weights.pt").write_bytes(bytes(weights))
    cases = unsupported_cases(tmp_path) + [(damaged, "weights file weights.pt fails its sha256 check")]
    for model, message in cases:
        result = invoke("segment", field, "-o", tmp_path / "out.ome.zarr", "--model", model, "--device", "cpu")
        assert result.returncode == 1, (model, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("biounet: error: ") and message in lines[0], \
            (model, result.output)
        assert not (tmp_path / "out.ome.zarr").exists()
    # The real command: bioimageio's own log lines (it renames the axis 'i') do not reach the terminal.
    result = run_biounet("segment", field, "--model", tmp_path / "index" / "rdf.yaml", "--device", "cpu")
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and not result.stdout, result.stderr


def test_weights_option(tmp_path, package):
    field = tmp_path / "field.tif"
    shutil.copy(FIELD, field)
    result = invoke("segment", field, "--model", default_model_path(), "--weights", "torchscript")
    assert result.returncode == 2 and "chooses the weights of a bioimage.io package" in result.output
    only_ts = rdf(tmp_path / "ts")
    result = invoke("segment", field, "--model", only_ts, "--weights", "pytorch_state_dict")
    assert result.returncode == 1 and "has no pytorch_state_dict weights (it has: torchscript)" in result.output
    result = invoke("tune", "--model", package, "--images", tmp_path, "--labels", tmp_path, "--out", tmp_path / "t.pt")
    assert result.returncode != 0 and "is a bioimage.io package" in result.output


def test_without_bioimageio(monkeypatch, package, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "bioimageio.core", None)  # as if the zoo extra were not installed
    for args in (("info", package), ("export", default_model_path(), "-o", tmp_path / "x.zip")):
        result = invoke(*args)
        assert result.returncode == 1 and "pip install 'biounet[zoo]'" in result.output, result.output
        assert result.output.count("\n") == 1
