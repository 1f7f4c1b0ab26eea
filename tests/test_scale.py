"""`segment` at the model's scale, as a user runs it: the slide's pixel size from the file,
`--pixel-size`, `--diameter` or `--no-rescale`; everything written at the slide's grid; what
was used recorded in the output and said in the summary line; bad options in one line."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile
import zarr

from tests.conftest import assert_same_output, invoke, make_model, run_biounet, zarr_arrays

PERCENTILE = {"method": "percentile", "low": 1.0, "high": 99.8}


@pytest.fixture(scope="module")
def field(shared_data):
    """A real BBBC039 field (cropped), as pixels."""
    return tifffile.imread(sorted((shared_data / "bbbc039/val/images").glob("*.tif"))[0])[:200, :260]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A random-weight 3class model trained, it says, at 0.25 um/px on objects of 20 px."""
    return make_model(tmp_path_factory.mktemp("m") / "at25.pt", target="3class", out_channels=3,
                      normalization=PERCENTILE, pixel_size=0.25, diameter=20.0)


def write(path, pixels, um=None):
    meta = {"axes": "YX"} if um is None else {"axes": "YX", "PhysicalSizeX": um, "PhysicalSizeY": um}
    tifffile.imwrite(path, pixels, ome=um is not None, metadata=meta)
    return path


def segment_cli(slide, out, model, *options):
    r = invoke("segment", slide, "-o", out, "--model", model, "--device", "cpu", "--no-progress", "--block", "128",
               *options)
    assert r.returncode == 0, r.output
    lines = [line for line in r.output.splitlines() if line.startswith("wrote ")]
    assert len(lines) == 1, r.output
    return lines[0]


def scale_of(out) -> dict:
    return zarr.open_group(str(out), mode="r").attrs["biounet"]["params"]["scale"]


def ngff_scale(out, path="labels/instances") -> list[float]:
    group = zarr.open_group(str(out), path=path, mode="r")
    return group.attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]


def test_a_slide_at_twice_the_models_pixel_size_is_written_at_its_own_grid(field, model, tmp_path):
    slide = write(tmp_path / "s.ome.tif", field, um=0.5)
    out = tmp_path / "s.ome.zarr"
    line = segment_cli(slide, out, model, "--save-probabilities", "uint8")
    assert "; model " in line and "; scale 2.00 (slide 0.50 um/px from the file, model 0.25 um/px); objects: " in line
    arrays = zarr_arrays(out)
    for path in ("labels/instances/0", "labels/classes/0", "0", "probabilities/0"):
        assert arrays[path].shape[-2:] == field.shape, path
    assert np.array_equal(arrays["0"], field)  # the image copy is the slide's own pixels
    assert ngff_scale(out) == [0.5, 0.5]
    record = scale_of(out)
    assert record["factor"] == 2.0 and record["slide_um_per_px"] == 0.5 and record["slide_from"] == "the file"
    assert record["model_um_per_px"] == 0.25 and record["text"] == line.split("; ")[2]
    from biounet.write.runfolder import RunFolder

    assert RunFolder(out, 2).read_record()["params"]["scale"] == record
    with open(str(out).replace(".ome.zarr", ".objects.csv")) as f:  # areas in slide pixels and um^2 of them
        rows = list(csv.DictReader(f))
    assert rows and all(float(r["area_um2"]) == pytest.approx(float(r["area_px"]) * 0.25, abs=1e-3) for r in rows)


def test_pixel_size_overrides_missing_and_wrong_metadata(field, model, tmp_path):
    bare = write(tmp_path / "bare.tif", field)
    line = segment_cli(bare, tmp_path / "none.ome.zarr", model)
    assert "; scale 1 (none: the slide has no pixel size; give --pixel-size or --diameter); " in line
    line = segment_cli(bare, tmp_path / "given.ome.zarr", model, "--pixel-size", "0.5")
    assert "; scale 2.00 (slide 0.50 um/px from --pixel-size, model 0.25 um/px); " in line
    assert ngff_scale(tmp_path / "given.ome.zarr") == [0.5, 0.5]
    wrong = write(tmp_path / "wrong.ome.tif", field, um=0.25)  # says 0.25; the user knows better
    line = segment_cli(wrong, tmp_path / "fixed.ome.zarr", model, "--pixel-size", "0.5")
    assert "from --pixel-size" in line
    fixed, given = zarr_arrays(tmp_path / "fixed.ome.zarr"), zarr_arrays(tmp_path / "given.ome.zarr")
    assert np.array_equal(fixed["labels/instances/0"], given["labels/instances/0"])
    assert not np.array_equal(given["labels/classes/0"], zarr_arrays(tmp_path / "none.ome.zarr")["labels/classes/0"])


def test_diameter_sets_the_scale_from_the_objects(field, model, tmp_path):
    bare = write(tmp_path / "bare.tif", field)
    line = segment_cli(bare, tmp_path / "d.ome.zarr", model, "--diameter", "10")
    assert "; scale 2.00 (objects 10 px from --diameter, model 20 px); " in line
    assert scale_of(tmp_path / "d.ome.zarr")["diameter_px"] == 10.0
    segment_cli(bare, tmp_path / "p.ome.zarr", model, "--pixel-size", "0.5")  # the same factor, 2
    d, p = zarr_arrays(tmp_path / "d.ome.zarr"), zarr_arrays(tmp_path / "p.ome.zarr")
    assert np.array_equal(d["labels/classes/0"], p["labels/classes/0"])
    assert np.array_equal(d["labels/instances/0"], p["labels/instances/0"])


def test_within_the_tolerance_the_slide_runs_at_its_own_scale(field, model, tmp_path):
    slide = write(tmp_path / "s.ome.tif", field, um=0.26)
    line = segment_cli(slide, tmp_path / "near.ome.zarr", model)
    assert "; scale 1 (none: slide 0.26 um/px from the file, model 0.25 um/px, within 5%); " in line
    line = segment_cli(slide, tmp_path / "off.ome.zarr", model, "--no-rescale")
    assert "; scale 1 (none: --no-rescale); " in line
    assert_same_output(tmp_path / "near.ome.zarr", tmp_path / "off.ome.zarr")


@pytest.mark.parametrize("options, message", [
    (["--pixel-size", "0"], "--pixel-size 0: give the slide's pixel size in um/px, a positive number"),
    (["--pixel-size", "-0.5"], "--pixel-size -0.5: give the slide's pixel size in um/px, a positive number"),
    (["--diameter", "12", "--model", "GREY"], "--diameter needs a model that records its objects' diameter"),
    (["--diameter", "12", "--pixel-size", "0.5"], "--pixel-size and --diameter both set the scale: pass one"),
    (["--diameter", "12", "--no-rescale"], "--diameter asks for rescaling and --no-rescale turns it off"),
])
def test_bad_scale_options_are_one_line(field, model, tmp_path, options, message):
    slide = write(tmp_path / "s.tif", field)
    grey = make_model(tmp_path / "grey.pt")  # records no pixel size and no diameter
    options = [str(grey) if o == "GREY" else o for o in options]
    if "--model" not in options:
        options += ["--model", str(model)]
    r = run_biounet("segment", slide, "-o", tmp_path / "o.ome.zarr", "--device", "cpu", *options)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("biounet: error: ") and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o.ome.zarr").exists()
