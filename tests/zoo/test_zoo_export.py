"""`biounet export`: the package is valid bioimage.io (spec 0.5), bioimageio.core reproduces
its test outputs with both weight formats, and its architecture is biounet's network."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from biounet.model.file import default_model_path, load_model
from tests.conftest import invoke
from tests.zoo.conftest import SAMPLE_IMAGES, unpack

NO_GITHUB_USER = "Missing `maintainers` or any author in `authors` with a specified `github_user` name."


def valid_description(package: Path, warnings: set[str] = frozenset({NO_GITHUB_USER})):
    """bioimageio.spec's description of `package`, checked valid (format 0.5, no errors, no warnings but
    `warnings`)."""
    from bioimageio.spec import load_description

    descr = load_description(str(package), perform_io_checks=True)
    summary = descr.validation_summary
    assert summary.status == "valid-format", summary.format()
    assert not [e for d in summary.details for e in d.errors]
    # The only warning: no author names a GitHub user (`--author` takes names only).
    warned = {w.loc[0] if w.loc else w.msg for d in summary.details for w in d.warnings}
    assert warned <= warnings, summary.format()
    assert str(descr.format_version).startswith("0.5")
    return descr


def test_package_is_valid_bioimageio(package):
    descr = valid_description(package)
    # BBBC039 (CC0) puts no terms on the weights, and bioimage.io has no dataset for it to link:
    # the documentation says what the model was trained on, the citations name the data's papers
    assert descr.license == "BSD-3-Clause" and descr.training_data is None
    assert {c.doi for c in descr.cite} == {"10.1007/978-3-319-24574-4_28", "10.1002/cyto.a.23863", "10.1038/nmeth.2083"}
    with zipfile.ZipFile(package) as zf:
        readme = zf.read("README.md").decode()
    assert "## Training data and its terms" in readme and "Trained on **BBBC039**" in readme
    assert "Licence of the data: CC0-1.0." in readme and "doi:10.1002/cyto.a.23863" in readme
    axes = {str(a.id): a for a in descr.inputs[0].axes}
    assert (axes["y"].size.min, axes["y"].size.step) == (188, 16)
    out = {str(a.id): a for a in descr.outputs[0].axes}
    assert out["x"].size.offset == -184 and str(out["x"].size.axis_id) == "x"
    pre = [p for p in descr.inputs[0].preprocessing if p.id != "ensure_dtype"]
    assert [p.id for p in pre] == ["scale_range"]
    assert (pre[0].kwargs.min_percentile, pre[0].kwargs.max_percentile) == (1.0, 99.8)
    assert descr.config.model_extra["biounet"]["postprocess"]["name"] == "watershed_3class"
    assert descr.documentation is not None and descr.covers


@pytest.mark.parametrize("weight_format", ["pytorch_state_dict", "torchscript"])
@pytest.mark.parametrize("which", ["package", "encoder_package"])
def test_bioimageio_core_reproduces_test_outputs(which, weight_format, one_thread, request):
    from bioimageio.core import test_model

    summary = test_model(request.getfixturevalue(which), weight_format=weight_format, devices=["cpu"])
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status == "failed"]
    assert summary.status == "passed", failed
    names = [d.name for d in summary.details]
    assert f"Reproduce test outputs from test inputs ({weight_format})" in names
    # sizes min, min + step, min + 2 step (188, 204, 220; encoder: 160, 192, 224); batch 1, 2
    assert sum(n.startswith(f"Run {weight_format} inference") for n in names) == 6


def test_test_tensors_are_a_real_image(unpacked):
    import tifffile

    x = np.load(unpacked / "test_input.npy")
    y = np.load(unpacked / "test_output.npy")
    assert x.shape == (1, 1, 508, 684) and y.shape == (1, 3, 324, 500)
    image = tifffile.imread(sorted(SAMPLE_IMAGES.glob("*.tif"))[0])
    assert np.array_equal(x[0, 0], image[6:514, 6:690])  # the centre crop, raw values
    assert np.allclose(y.sum(1), 1, atol=1e-5) and (y[0].argmax(0) == 1).mean() > 0.1  # nuclei found


def test_architecture_is_biounets_network(package, unpacked):
    """The shipped model's architecture file is biounet's `unet_arch.py` as it is."""
    source = Path(__file__).resolve().parents[2] / "biounet" / "model" / "unet_arch.py"
    assert (unpacked / "unet_arch.py").read_text() == source.read_text()
    assert "biounet" not in "".join(l for l in source.read_text().splitlines() if l.startswith(("import", "from")))
    assert_networks_equal(package, unpacked, default_model_path(), torch.rand(2, 1, 220, 204))


def assert_networks_equal(package: Path, unpacked: Path, model: Path, x: torch.Tensor) -> None:
    """The package's pytorch_state_dict network, as bioimageio.core builds it from the
    package alone, and its torchscript give the model file's network's output on `x` bit for bit."""
    from bioimageio.core.backends.pytorch_backend import load_torch_model
    from bioimageio.spec import load_model_description

    descr = load_model_description(str(package), perform_io_checks=False)
    rebuilt = load_torch_model(descr.weights.pytorch_state_dict, devices=["cpu"]).eval()
    scripted = torch.jit.load(str(unpacked / "weights_torchscript.pt")).eval()
    net, _ = load_model(model)
    with torch.no_grad():
        expected = net(x)
        assert torch.equal(rebuilt(x), expected)
        assert torch.equal(scripted(x), expected)


def test_encoder_unet_package(encoder_package, tiny_encoder_model, tmp_path):
    """An encoder U-Net: one architecture file importing only torch (and math), sizes
    160 + 32k (multiples of 32 above twice the 64 px context), output = input with the
    context as halo; bioimageio.core's network and the torchscript are biounet's."""
    descr = valid_description(encoder_package)
    axes = {str(a.id): a for a in descr.inputs[0].axes}
    out = {str(a.id): a for a in descr.outputs[0].axes}
    assert (axes["y"].size.min, axes["y"].size.step) == (160, 32)
    assert (out["x"].size.offset, out["x"].halo) == (0, 64)
    arch = descr.weights.pytorch_state_dict.architecture
    assert (str(arch.callable), arch.kwargs) == ("EncoderUNetArch", {"encoder": "resnet18", "in_channels": 1,
                                                                     "out_channels": 3, "width": 4})
    unpacked = unpack(encoder_package, tmp_path)
    source = (unpacked / "encoder_unet_arch.py").read_text()
    imports = {line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert imports == {"__future__", "math", "torch", "torch.nn"}
    assert source.count("from __future__") == 1 and "class EncoderUNetArch" in source
    assert_networks_equal(encoder_package, unpacked, tiny_encoder_model, torch.rand(2, 1, 192, 160))


def test_same_padded_network_has_a_halo(tmp_path):
    """A same-padded U-Net: output = input, the margin to crop as the output's halo."""
    from bioimageio.spec import load_description

    from tests.conftest import make_model

    model = make_model(tmp_path / "same.pt", padding="same", width=2, depth=3)
    out = tmp_path / "same.zip"
    result = invoke("export", model, "-o", out, "--name", "same padded")
    assert result.returncode == 0, result.output
    descr = load_description(str(out), perform_io_checks=True)
    assert descr.validation_summary.status == "valid-format", descr.validation_summary.format()
    y_in = next(a for a in descr.inputs[0].axes if str(a.id) == "y")
    y_out = next(a for a in descr.outputs[0].axes if str(a.id) == "y")
    # depth 3: the valid network's margin (20 px) as the halo; tiles of 44 + 4k keep a centre
    assert (y_in.size.min, y_in.size.step) == (44, 4) and (y_out.size.offset, y_out.halo) == (0, 20)
    with zipfile.ZipFile(out) as zf:
        assert "Caicedo" not in zf.read("rdf.yaml").decode()  # not trained on BBBC039: no data claims


def test_export_errors_are_one_line(tmp_path, package):
    tiny = tmp_path / "tiny.tif"
    import tifffile

    tifffile.imwrite(tiny, np.zeros((64, 64), np.uint16))
    model = default_model_path()
    cases = [
        (("export", tmp_path / "missing.pt", "-o", tmp_path / "a.zip"), "model not found"),
        (("export", model, "-o", package), "exists; pass --overwrite"),
        (("export", model, "-o", tmp_path / "a.tar"), "is a .zip file"),
        (("export", package, "-o", tmp_path / "b.zip"), "already a bioimage.io package"),
        (("export", model, "-o", tmp_path / "c.zip", "--test-image", tiny), "smaller than the model's smallest"),
        (("export", model, "-o", tmp_path / "d.zip", "--test-image", tmp_path / "no.tif"), "test image not found"),
        (("export", model, "-o", tmp_path / "e.zip", "--license", "mine"), "not an SPDX licence identifier"),
        (("export", "membranes", "-o", tmp_path / "g.zip", "--license", "MIT"),
         "--license MIT: the model was trained on ISBI 2012"),
        (("export", model, "-o", tmp_path / "f.zip", "--name", "ab"), "bioimage.io refuses the description (name:"),
    ]
    for args, message in cases:
        result = invoke(*args)
        assert result.returncode == 2, (args, result.output)
        assert message in result.output and result.output.count("\n") == 1, result.output
