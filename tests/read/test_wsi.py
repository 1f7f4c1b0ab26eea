"""Whole-slide formats (issue 26, part 1): Aperio SVS, Hamamatsu NDPI, Leica SCN, Philips TIFF,
Ventana BIF and generic tiled TIFF through tifffile, and through OpenSlide (the same files,
and Hamamatsu VMS, which only OpenSlide reads).

Every file is written here (`wsi_files`) from real H&E pixels; each test checks what the
file says (pixel size, objective, levels) against what was written, and region reads
against the file's pixels decoded whole by another reader (tifffile's, Pillow's).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from click.testing import CliRunner

from biounet.cli import main
from biounet.read.image import ImageReadError, open_image
from biounet.read.levels import choose_level
from tests.read import wsi_files as w

UM = "micrometer"

# name: (file, writer arguments, format name, um/px, objective, where the scale is read, series of the slide)
CASES = {
    "svs": ("slide.svs", {"mpp": 0.252, "mag": 40}, "Aperio SVS", 0.252, 40.0, "Aperio ImageDescription", 0),
    "tiff-cm": ("cm.tif", {"mpp": 0.5, "unit": "CENTIMETER"}, "TIFF", 0.5, None, "TIFF resolution tags", 0),
    "tiff-inch": ("inch.tif", {"mpp": 0.44, "unit": "INCH", "compression": "jpeg"}, "TIFF", 0.44, None,
                  "TIFF resolution tags", 0),
    "ndpi": ("slide.ndpi", {"mpp": 0.453, "mag": 20.0}, "Hamamatsu NDPI", 0.453, 20.0, "NDPI tags", 0),
    "philips": ("slide.tiff", {"mpp": 0.25}, "Philips TIFF", 0.25, None, "Philips XML (DICOM_PIXEL_SPACING)", 0),
    "scn": ("slide.scn", {"mpp": 0.5, "objective": 20}, "Leica SCN", 0.5, 20.0, "Leica SCN XML", 1),
    "bif": ("slide.bif", {"mpp": 0.2325, "mag": 40.0}, "Ventana BIF", 0.2325, 40.0, "Ventana XMP", 0),
}
WRITERS = {"svs": w.write_svs, "tiff-cm": w.write_generic, "tiff-inch": w.write_generic, "ndpi": w.write_ndpi,
           "philips": w.write_philips, "scn": w.write_scn, "bif": w.write_bif}


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> tuple[Path, dict]:
    """Every format's file, written once; the levels written, by case."""
    d = tmp_path_factory.mktemp("wsi")
    he = w.pyramid(w.he_mosaic(1500, 1800), (4, 16))  # level 2 is 93 x 112: factors 16.13 and 16.07
    mcu = w.pyramid(w.he_mosaic(1536, 1792), (4, 16))  # NDPI: whole JPEG MCUs
    written = {}
    for name, (file, kwargs, *_) in CASES.items():
        written[name] = mcu if name == "ndpi" else he
        WRITERS[name](d / file, written[name], **kwargs)
    return d, written


def path_of(slides, name: str) -> Path:
    return slides[0] / CASES[name][0]


def decoded(slides, name: str, level: int) -> np.ndarray:
    """A level of the slide decoded whole by tifffile, (y, x, c)."""
    return tifffile.imread(path_of(slides, name), series=CASES[name][6], level=level)


@pytest.mark.parametrize("name", list(CASES))
def test_pixel_size_objective_and_levels(slides, name):
    _, _, fmt, mpp, objective, source, _ = CASES[name]
    img = open_image(path_of(slides, name))
    levels = slides[1][name]
    assert img.format == f"{fmt}, pyramid of 3" and img.axes == "cyx"
    assert img.pixel_size["y"] == pytest.approx((mpp, UM)) and img.pixel_size["x"] == pytest.approx((mpp, UM))
    assert img.objective_power == objective and img.metadata_source.startswith(source)
    assert [r.shape for r in img.readers] == [(3, *a.shape[:2]) for a in levels]
    h0, w0 = levels[0].shape[:2]
    assert img.downsamples == [(h0 / a.shape[0], w0 / a.shape[1]) for a in levels]
    print(f"{name}: {img.format}; {img.pixel_size['x'][0]} um/px, objective {img.objective_power} "
          f"({img.metadata_source}); levels {[r.shape[1:] for r in img.readers]}")


@pytest.mark.parametrize("name", list(CASES))
def test_regions_equal_the_files_pixels(slides, name):
    img = open_image(path_of(slides, name))
    if name == "tiff-cm":  # lossless: the file holds exactly what was written
        assert np.array_equal(decoded(slides, name, 0), slides[1][name][0])
    for level in range(3):
        whole = decoded(slides, name, level)
        h, wd = whole.shape[:2]
        for y0, x0, size in ((0, 0, 256), (256, 512, 256), (h - 100, wd - 70, 512), (37, 11, 200)):
            ys, xs = slice(max(0, y0), min(h, y0 + size)), slice(max(0, x0), min(wd, x0 + size))
            region = img.read(level, (slice(None), ys, xs))
            assert np.array_equal(region.transpose(1, 2, 0), whole[ys, xs]), (level, y0, x0)
        assert np.array_equal(img.levels[level][:, 5:60, 7:90].compute().transpose(1, 2, 0), whole[5:60, 7:90])


def test_reads_are_lazy(slides):
    """A block-aligned region decodes the tiles under it, nothing else; an NDPI level is read
    in restart intervals (its McuStarts), not whole."""
    img = open_image(path_of(slides, "svs"))
    tiles = img.readers[0].source.arr
    img.read(0, (slice(None), slice(256, 512), slice(512, 768)))
    across = -(-1800 // 256)
    assert set(tiles.cache._tiles) == {(0, 1 * across + 2)}
    ndpi = open_image(path_of(slides, "ndpi"))
    assert ndpi.chunks == (3, 8, 448) and ndpi.readers[1].chunks == (3, 8, 448)  # 1/4 of a row, 8 rows


@pytest.mark.parametrize("name", list(CASES))
def test_choose_level_on_each_slide(slides, name):
    mpp = CASES[name][3]
    img = open_image(path_of(slides, name))
    sizes = [img.microns_per_pixel(level) for level in range(3)]
    h0, w0 = slides[1][name][0].shape[:2]
    h2, w2 = slides[1][name][2].shape[:2]
    level2 = mpp * (h0 / h2 + w0 / w2) / 2
    assert sizes == pytest.approx([mpp, 4 * mpp, level2])
    assert choose_level(sizes, 2 * mpp) == (0, pytest.approx(0.5))       # a 2x coarser model: level 0, halved
    assert choose_level(sizes, 4 * mpp) == (1, pytest.approx(1.0))       # level 1 as it is
    assert choose_level(sizes, 16 * mpp) == (2, pytest.approx(level2 / (16 * mpp)))  # 0.4-0.8 % coarser: taken
    assert choose_level(sizes, 15 * mpp) == (1, pytest.approx(4 / 15))   # level 2 is 7 % too coarse


# ---------------------------------------------------------------- through OpenSlide


@pytest.mark.parametrize("name", ["svs", "tiff-cm"])
def test_openslide_reads_the_same_slide(slides, name):
    path = path_of(slides, name)
    ours, osl = open_image(path), open_image(path, openslide=True)
    assert osl.format.endswith("(OpenSlide), pyramid of 3") and osl.metadata_source.startswith("OpenSlide properties")
    assert osl.microns_per_pixel() == pytest.approx(ours.microns_per_pixel()) and osl.objective_power == ours.objective_power
    assert osl.pixel_size["x"][1] == osl.pixel_size["y"][1] == UM
    assert [r.shape for r in osl.readers] == [r.shape for r in ours.readers]
    slide = osl.readers[0].source.arr.slide.slide
    sizes, read_region = [], slide.read_region
    slide.read_region = lambda location, level, size: sizes.append(size) or read_region(location, level, size)
    keys = [(slice(None), slice(128, 384), slice(256, 512)), (slice(None), slice(64, 320), slice(128, 384)),
            (slice(None), slice(31, 93), slice(9, 80))]
    for level, key in enumerate(keys):
        whole = decoded(slides, name, level)
        region = osl.read(level, key).transpose(1, 2, 0).astype(int)
        if level < 2:  # level 0, and level 1 (4x exactly): OpenSlide's pixels are the file's
            assert np.array_equal(region, whole[key[1:]])
        else:  # a downsample of 16.1 is no whole number: OpenSlide resamples by a subpixel shift
            assert np.abs(region - whole[key[1:]]).max() <= 4
    assert sizes == [(256, 256), (256, 256), (71, 62)]  # one read of each region, nothing more
    level1 = pickle.loads(pickle.dumps(osl.readers[1].source))  # Dask workers reopen the slide
    assert np.array_equal(level1[10:50, 20:70], osl.readers[1].source[10:50, 20:70])


def test_vms_only_openslide_reads(tmp_path):
    image = w.he_mosaic(1216, 1600)
    key = w.write_vms(tmp_path / "vms", image, mpp=0.46, lens=20.0)
    img = open_image(key)
    assert img.format.startswith("Hamamatsu VMS/NDPI (OpenSlide)") and img.axes == "cyx"
    assert img.pixel_size == {"y": (pytest.approx(0.46), UM), "x": (pytest.approx(0.46), UM)}
    assert img.objective_power == 20.0 and img.shape == (3, 1216, 1600)
    pixels = w.vms_pixels(tmp_path / "vms")
    for ys, xs in ((slice(0, 512), slice(0, 512)), (slice(333, 700), slice(250, 901)), (slice(1100, 1216), slice(1500, 1600))):
        assert np.array_equal(img.read(0, (slice(None), ys, xs)).transpose(1, 2, 0), pixels[ys, xs])
    r = CliRunner().invoke(main, ["info", str(key), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["objective_power"] == 20.0


# ---------------------------------------------------------------- the command line


def test_info_describes_a_slide(slides):
    r = CliRunner().invoke(main, ["info", str(path_of(slides, "svs")), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["format"] == "Aperio SVS, pyramid of 3"
    assert info["levels"] == [[3, 1500, 1800], [3, 375, 450], [3, 93, 112]]
    assert info["downsamples"][:2] == [1.0, 4.0] and 16.07 < info["downsamples"][2] < 16.13
    assert info["pixel_size"] == {"y": [0.252, UM], "x": [0.252, UM]} and info["objective_power"] == 40.0
    assert info["metadata_source"] == "Aperio ImageDescription (MPP, AppMag)"
    text = CliRunner().invoke(main, ["info", str(path_of(slides, "svs"))]).output
    assert "objective_power: 40.0" in text and "format: Aperio SVS, pyramid of 3" in text


@pytest.fixture
def rgb_model(tmp_path):
    from tests.conftest import make_model

    return make_model(tmp_path / "rgb.pt", seed=1, in_channels=3)


@pytest.mark.parametrize("name", ["svs", "ndpi", "scn", "vms"])
def test_truncated_slide_is_refused_in_one_line(slides, tmp_path, rgb_model, name):
    from tests.test_failures import assert_not_complete, digest

    if name == "vms":  # read by OpenSlide: the image JPEG cut short
        source = w.write_vms(tmp_path / "vms", w.he_mosaic(1216, 1600))
        w.truncated_copy(source.parent / "slide.jpg", source.parent / "slide.jpg")
    else:
        source = w.truncated_copy(path_of(slides, name), tmp_path / CASES[name][0])
    before = digest(source.parent)
    out = tmp_path / "out.ome.zarr"
    r = CliRunner().invoke(main, ["segment", str(source), "-o", str(out), "--model", str(rgb_model), "--block", "256",
                                  "--quiet", "--device", "cpu"])
    assert r.exit_code == 1, (r.stderr, r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("biounet: error: ") and "Traceback" not in r.stderr, r.stderr
    assert str(source) in lines[0] and "truncated or corrupt" in lines[0] and "copy it again" in lines[0]
    assert digest(source.parent) == before
    assert_not_complete(out)
    print(lines[0])


def test_truncated_slide_through_openslide(slides, tmp_path):
    cut = w.truncated_copy(path_of(slides, "svs"), tmp_path / "cut.svs")
    with pytest.raises(ImageReadError, match="truncated or corrupt") as err:
        img = open_image(cut, openslide=True)
        for level in range(len(img.readers)):
            img.read(level, (slice(None), slice(None), slice(None)))
    assert str(cut) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.usefixtures("one_thread")
def test_segment_an_svs_keeps_its_pixel_size(tmp_path, rgb_model):
    from biounet.model.file import load_model
    from tests.read.test_formats import expected, labels

    path = tmp_path / "small.svs"
    w.write_svs(path, w.pyramid(w.he_mosaic(600, 700), (4,)), mpp=0.252, mag=40)
    net = load_model(rgb_model)[0]
    for level, scale in ((0, 0.252), (1, 0.252 * 4)):
        out = tmp_path / f"level{level}.ome.zarr"
        r = CliRunner().invoke(main, ["segment", str(path), "-o", str(out), "--model", str(rgb_model), "--block", "128",
                                      "--level", str(level), "--quiet", "--device", "cpu"])
        assert r.exit_code == 0, r.stderr
        classes, axes, datasets = labels(out)
        assert axes == "yx" and datasets[0]["coordinateTransformations"][0]["scale"] == pytest.approx([scale, scale])
        root = zarr.open_group(str(out), mode="r").attrs.asdict()
        image_ms = root.get("ome", root)["multiscales"][0]
        assert image_ms["datasets"][0]["coordinateTransformations"][0]["scale"] == pytest.approx([1.0, scale, scale])
        assert [a.get("unit") for a in image_ms["axes"]] == [None, UM, UM]
        plane = tifffile.imread(path, series=0, level=level).transpose(2, 0, 1)
        assert np.array_equal(classes, expected(net, plane))
