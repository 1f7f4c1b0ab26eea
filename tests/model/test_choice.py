"""The right model by default: he-nuclei for RGB brightfield, nuclei for one channel."""

from __future__ import annotations

import shutil

import pytest
import tifffile

import biounet.model.names as models
from biounet.model.choice import LIGHT, default_model, modality
from biounet.pipeline.segment import segment
from biounet.read.image import open_image
from biounet.read.sample import brightness
from tests.conftest import invoke, make_model
from tests.read.wsi_files import MONUSEG


def test_rgb_brightfield_gets_the_he_model():
    assert default_model(3, "uint8", "brightfield") == ("he-nuclei", "default for RGB brightfield")
    assert default_model(3, "uint8", None, background=0.7) == ("he-nuclei", "default for RGB brightfield")


def test_everything_else_gets_the_fluorescence_model():
    assert default_model(1, "uint16") == ("nuclei", "default for single-channel fluorescence")
    assert default_model(1, "uint8", None, background=0.9) == ("nuclei", "default for single-channel fluorescence")
    assert default_model(3, "uint8", None, background=0.05) == ("nuclei", "default")  # dark: fluorescence in RGB
    assert default_model(3, "uint8", None, background=None) == ("nuclei", "default")  # nothing known
    assert default_model(3, "uint16", "brightfield") == ("nuclei", "default")  # not 8-bit colour
    assert default_model(4, "uint8", "brightfield") == ("nuclei", "default")
    assert default_model(1, "uint8", None, picked=True) == ("nuclei", "default for one channel picked by --channel")


def test_scanners_formats_are_brightfield():
    assert modality("Aperio SVS, pyramid of 3") == modality("Hamamatsu NDPI") == "brightfield"
    assert modality("3DHISTECH MRXS (OpenSlide)") == "brightfield"
    assert modality("OME-TIFF") is None and modality("zarr v2 array") is None


def test_he_tissue_is_light_and_fluorescence_dark(shared_data):
    """Real fields either side of LIGHT: every MoNuSeg tile (tissue edge to edge, no glass)
    and BBBC039's Hoechst nuclei."""
    he = [brightness(open_image(p)) for p in sorted(MONUSEG.glob("*.tif"))[:6]]
    fluorescence = [brightness(open_image(p)) for p in sorted((shared_data / "bbbc039/val/images").glob("*.tif"))[:3]]
    assert min(he) > LIGHT > max(fluorescence), (he, fluorescence)


@pytest.fixture
def weights(tmp_path, monkeypatch):
    """A weights folder with a tiny fluorescence model as nuclei and nothing else."""
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(make_model(tmp_path / "grey.pt"), folder / "nuclei.pt")
    monkeypatch.setattr(models, "WEIGHTS", folder)
    return folder


@pytest.fixture
def he_field(tmp_path):
    path = tmp_path / "he.tif"
    tifffile.imwrite(path, tifffile.imread(sorted(MONUSEG.glob("*.tif"))[1])[:256, :256])
    return path


def test_an_rgb_slide_without_the_he_model_is_one_line_saying_what_to_do(weights, he_field, tmp_path):
    r = invoke("segment", he_field, "-o", tmp_path / "o.ome.zarr", "--device", "cpu", "--no-progress")
    assert r.returncode == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "looks like RGB brightfield" in lines[0] and "he-nuclei is not in this build" in lines[0]
    assert "--model" in lines[0] and "--channel" in lines[0]
    assert not (tmp_path / "o.ome.zarr").exists()


def test_dropping_the_he_model_in_makes_it_the_default_for_rgb(weights, he_field, tmp_path):
    shutil.copy(make_model(tmp_path / "rgb.pt", in_channels=3), weights / "he-nuclei.pt")
    r = invoke("segment", he_field, "-o", tmp_path / "o.ome.zarr", "--device", "cpu", "--no-progress",
               "--block", "128")
    assert r.returncode == 0, r.output
    assert "; model he-nuclei (default for RGB brightfield); " in r.output
    # One channel of it picked with --channel runs the fluorescence model.
    result = segment(he_field, tmp_path / "one.ome.zarr", channel=["1"], device="cpu", block=128, progress=False)
    assert result.extra["model"] == "model nuclei (default for one channel picked by --channel)"


def test_a_single_channel_slide_gets_nuclei(weights, shared_data, tmp_path):
    field = sorted((shared_data / "bbbc039/val/images").glob("*.tif"))[0]
    result = segment(field, tmp_path / "o.ome.zarr", device="cpu", block=256, progress=False)
    assert result.extra["model"] == "model nuclei (default for single-channel fluorescence)"
    named = segment(field, tmp_path / "named.ome.zarr", model="nuclei", device="cpu", block=256, progress=False)
    assert named.extra["model"] == "model nuclei"


def test_the_shipped_he_model_runs_on_an_rgb_slide_with_no_options(he_field, tmp_path):
    """This build ships he-nuclei: an H&E crop with no model named runs it, at its scale (the crop
    said to be 0.5 um/px: enlarged 2x for the network), and finds nuclei."""
    r = invoke("segment", he_field, "-o", tmp_path / "o.ome.zarr", "--device", "cpu", "--no-progress",
               "--pixel-size", "0.5")
    assert r.returncode == 0, r.output
    assert ("; model he-nuclei (default for RGB brightfield); scale 2.00 (slide 0.50 um/px from --pixel-size, "
            "model 0.25 um/px); tissue: ") in r.output
    objects = int(r.output.split("objects: ")[1].split(" objects")[0])
    assert objects >= 20, r.output
