"""Training data and its terms: a model file states them, `biounet info` shows them, `biounet export`
carries them (licence, citations, documentation, a bioimage.io dataset link)."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import invoke, make_model
from tests.zoo.test_zoo_export import valid_description

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "workflows"))
import ship  # noqa: E402  (workflows/ship.py: the shipped models' facts)

CARDONA_2010 = "10.1371/journal.pbio.1000502"
TRAKEM2 = "10.1371/journal.pone.0038011"


def test_info_shows_the_training_data_terms():
    result = invoke("info", "--model", "membranes")
    assert result.returncode == 0, result.output
    block = result.output.split("training_data:\n", 1)[1]
    assert "  name: ISBI 2012 EM segmentation challenge" in block
    assert "  license: none (see terms)" in block and "  weights_license: CC-BY-NC-4.0" in block
    assert "  terms: Non-commercial use only" in block and f"doi:{CARDONA_2010}" in block and f"doi:{TRAKEM2}" in block
    assert "  bioimageio: ilastik/isbi2012_neuron_segmentation_challenge" in block
    assert "pixel_size: 0.004" in result.output
    nuclei = invoke("info", "--model", "nuclei")
    assert "  name: BBBC039\n  license: CC0-1.0\n" in nuclei.output and "weights_license: not restricted" in nuclei.output


def test_export_carries_the_terms(membranes_package):
    """ISBI 2012's non-commercial term: the package's licence is CC-BY-NC-4.0, it cites the data's papers,
    links the data set on bioimage.io, and its documentation states the terms; `info` on the package shows them."""
    descr = valid_description(membranes_package)
    assert descr.license == "CC-BY-NC-4.0"
    assert str(descr.training_data.id) == "ilastik/isbi2012_neuron_segmentation_challenge"
    assert {CARDONA_2010, TRAKEM2, "10.3389/fnana.2015.00142"} <= {c.doi for c in descr.cite}
    with zipfile.ZipFile(membranes_package) as zf:
        readme = zf.read("README.md").decode()
    section = readme.split("## Training data and its terms", 1)[1]
    assert "Non-commercial use only" in section and "licence CC-BY-NC-4.0" in section and CARDONA_2010 in section
    assert "# membranes" in readme  # the shipped model's card
    info = invoke("info", membranes_package)
    assert "license: CC-BY-NC-4.0" in info.output
    assert "training_data: bioimage.io dataset ilastik/isbi2012_neuron_segmentation_challenge" in info.output


def test_share_alike_data_sets_the_package_licence(shared_data, tmp_path):
    """A model trained on MoNuSeg (CC BY-NC-SA 4.0), as workflows/ship.py writes one from the data set's facts:
    its file records the terms, pixel size and labels' diameter; its package takes the data's licence."""
    from biounet.model.file import load_model, save_model
    from biounet.model.training_data import MONUSEG

    facts = ship.Facts(MONUSEG, 0.25, "monuseg/train/labels", first=2)
    model = make_model(tmp_path / "he.pt", in_channels=3, depth=3, target="3class",
                       normalization={"method": "fixed", "low": 0, "high": 255})
    net, spec = load_model(model)
    save_model(model, net, ship.with_facts(spec, facts))
    _, spec = load_model(model)
    assert spec.training_data == MONUSEG and spec.pixel_size == 0.25 and 10 < spec.diameter < 40
    image = sorted((shared_data / "monuseg" / "train" / "images").glob("*.tif"))[0]
    out = tmp_path / "he.zip"
    result = invoke("export", model, "-o", out, "--test-image", image)
    assert result.returncode == 0 and "licence CC-BY-NC-SA-4.0" in result.output, result.output
    descr = valid_description(out)
    assert descr.license == "CC-BY-NC-SA-4.0"
    assert str(descr.training_data.id) == "deepimagej/monuseg_digital_pathology_miccai2018"
    assert {"10.1109/TMI.2017.2677499", "10.1109/TMI.2019.2947628"} <= {c.doi for c in descr.cite}


@pytest.mark.parametrize("name", ["nuclei", "membranes"])
def test_shipped_files_carry_their_facts(name, shared_data):
    """The shipped files record what ship.py's FACTS say, and the diameter measured again from the training
    labels (BBBC039 train; ISBI 2012 slices 0-15, cell interiors) as `biounet train` measures it."""
    from biounet.model.file import load_spec
    from biounet.model.names import shipped_path

    spec = load_spec(shipped_path(name))
    facts = ship.FACTS[name]
    assert spec.training_data == facts.data and spec.pixel_size == facts.pixel_size
    assert spec.diameter == ship.training_diameter(facts)


def test_package_licence_follows_the_data_terms():
    from biounet.model.training_data import BBBC039, ISBI2012, MONUSEG
    from biounet.zoo.arch import ExportError
    from biounet.zoo.export import package_license

    assert package_license(None, None) == "BSD-3-Clause" and package_license(BBBC039, None) == "BSD-3-Clause"
    assert package_license(BBBC039, "MIT") == "MIT"  # CC0 data: the user's choice
    assert package_license(ISBI2012, None) == "CC-BY-NC-4.0" and package_license(MONUSEG, None) == "CC-BY-NC-SA-4.0"
    assert package_license(MONUSEG, "CC-BY-NC-SA-4.0") == "CC-BY-NC-SA-4.0"
    with pytest.raises(ExportError, match="--license CC-BY-4.0: the model was trained on MoNuSeg"):
        package_license(MONUSEG, "CC-BY-4.0")
