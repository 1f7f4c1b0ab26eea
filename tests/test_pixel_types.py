"""Every pixel type `segment` accepts goes through every stage (issue 25).

A real BBBC039 crop converted to each integer (8 to 64 bits), float (16 to 64
bits) and bool type (values scaled into the type's range, using its high bits
where it has them), the same crop as a big-endian zarr, and a real RGB field of
DSB2018 are segmented with the shipped nuclei model at one
block and at several blocks, with the QC overlay and probabilities. Checked
against the input pixels, computed here with numpy and Python integers: the
image copy (values and dtype, and its 2x2-mean pyramid level), the object
table's ids, areas and mean intensities, and labels equal at both block sizes.
Pixel types biounet cannot segment fail before anything is written.
"""

from __future__ import annotations

import csv
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from biounet.napari.reader import contrast_limits
from biounet.pipeline.segment import segment
from tests.conftest import as_pixel_type, invoke

pytestmark = pytest.mark.usefixtures("one_thread")

CROP = (272, 336)  # over 256 px: the output has a pyramid level 1
RGB_FIELD = "0d3640c1f1b80f24e94cc9a5f3e1d9e8db7bf6af7d4aba920265f46cadc25e37"  # dsb2018 val, bright (H&E-like)
RGB_CHANNEL = 2  # the nuclei model takes one channel: the blue one (the intensity column's channel too)
TYPES = ["uint8", "uint16", "uint32", "int8", "int16", "int32", "float16", "float32", "float64", "bool", "rgb",
         "uint64", "int64", ">u2"]  # >u2: big-endian 16 bits, from a zarr input (TIFFs read as native)


@pytest.fixture(scope="module")
def nuclei_field(shared_data) -> np.ndarray:
    """A 12-bit BBBC039 crop (uint16, 0..4095)."""
    path = sorted((shared_data / "bbbc039" / "val" / "images").glob("*.tif"))[0]
    return tifffile.imread(path)[: CROP[0], : CROP[1]]


def mean_intensities(labels: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Ids, areas and exact mean intensity per object: integer sums in Python integers,
    float sums with math.fsum (correctly rounded), each divided once."""
    mask = labels > 0
    ids, vals = labels[mask], values[mask]
    order = np.argsort(ids, kind="stable")
    ids, vals = ids[order], vals[order]
    unique, starts, areas = np.unique(ids, return_index=True, return_counts=True)
    means = []
    for start, area in zip(starts, areas):
        group = vals[start : start + area].tolist()
        total = math.fsum(group) if values.dtype.kind == "f" else sum(int(x) for x in group)
        means.append(total / int(area))
    return unique, areas, means


def two_by_two_mean(image: np.ndarray) -> np.ndarray:
    """Pyramid level 1 of an (..., Y, X) image: 2x2 means (last odd row/column repeated),
    in float64 for floats, exact (Python integers and fractions) and rounded half to even
    for integer and bool pixels; in the image's dtype."""
    pad = [(0, 0)] * (image.ndim - 2) + [(0, image.shape[-2] % 2), (0, image.shape[-1] % 2)]
    x = np.pad(image, pad, mode="edge").astype(np.float64 if image.dtype.kind == "f" else object)
    total = x[..., ::2, ::2] + x[..., 1::2, ::2] + x[..., ::2, 1::2] + x[..., 1::2, 1::2]
    if image.dtype.kind == "f":
        return (total / 4).astype(image.dtype)
    rounded = [round(Fraction(int(t), 4)) for t in total.ravel()]  # round() of a Fraction: half to even
    return np.array(rounded, object).reshape(total.shape).astype(image.dtype)


def read_table(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return {name: np.array([float(r[i]) for r in rows[1:]]) for i, name in enumerate(rows[0])}


def check_output(out: Path, pixels: np.ndarray, channel: int | None = None) -> np.ndarray:
    """Check a complete output against its input `pixels` ((Y, X) or (C, Y, X)): its image copy
    (if it has one: values, and the dtype in native byte order), pyramid level 1 and
    object table; return its labels."""
    root = zarr.open_group(str(out), mode="r")
    assert root.attrs["biounet"]["status"] == "complete"
    if "0" in root:
        copy, native = root["0"][...], pixels.dtype.newbyteorder("=")
        assert copy.dtype == native and np.array_equal(copy, pixels)
        level1 = root["1"][...]
        assert level1.dtype == native
        expected = two_by_two_mean(pixels)
        if pixels.dtype.kind == "f":
            np.testing.assert_allclose(level1, expected, rtol=float(np.finfo(pixels.dtype).eps), atol=0)
        else:
            assert np.array_equal(level1, expected)
        lowest = root[str(max(int(key) for key in root.array_keys() if key.isdigit()))]
        for low, high in contrast_limits(lowest, None if channel is None else 0):  # napari's reader
            assert np.isfinite([low, high]).all() and low < high
    labels = root["labels/instances/0"][...]
    table = read_table(out.with_name(out.name.replace(".ome.zarr", ".objects.csv")))
    ids, areas, means = mean_intensities(labels, pixels if channel is None else pixels[channel])
    assert len(ids) >= 10, "the nuclei model finds objects in real data"
    assert np.array_equal(table["id"], ids) and np.array_equal(table["area_px"], areas)
    if pixels.dtype.kind == "f":  # the exact mean rounded to 3 decimals (summation order aside)
        assert np.abs(table["mean_intensity"] - means).max() <= 0.0005 + 1e-9 * np.abs(means).max()
    else:  # integer sums are exact: the exact mean, rounded as biounet rounds it
        assert np.array_equal(table["mean_intensity"], np.round(means, 3))
    return labels


def run_cli(path: Path, out: Path, block: int, *extra) -> None:
    qc = out.with_name(out.name + ".qc.png")
    result = invoke("segment", path, "-o", out, "--model", "nuclei", "--block", block, "--device", "cpu",
                    "--qc-png", qc, "--save-probabilities", "uint8", "--no-progress", *extra)
    assert result.returncode == 0, (result.stderr, result.exception)
    assert qc.stat().st_size > 0 and zarr.open_array(str(out), path="probabilities/0", mode="r").dtype == np.uint8


@pytest.mark.parametrize("name", TYPES)
def test_pixel_type_through_every_stage(shared_data, nuclei_field, tmp_path, name):
    """One block and several blocks (NGFF 0.4 and 0.5): the same labels, and each output's
    image copy and object table agree with the input pixels (the big-endian zarr's table
    at several blocks from the input itself: no image copy)."""
    path, several_extra = tmp_path / f"{name}.tif", ("--ngff", "0.5")
    if name == ">u2":
        pixels, channel, extra = as_pixel_type(nuclei_field, name), None, ()
        path, several_extra = tmp_path / "big-endian.zarr", ("--no-image",)
        zarr.create_array(store=str(path), shape=pixels.shape, chunks=(128, 128), dtype=pixels.dtype, zarr_format=2)
        zarr.open_array(str(path), mode="r+")[...] = pixels
        assert zarr.open_array(str(path), mode="r").dtype == np.dtype(">u2")
    elif name == "rgb":
        pixels = tifffile.imread(shared_data / "dsb2018" / "val" / "images" / f"{RGB_FIELD}.tif")
        assert pixels.dtype == np.uint8 and pixels.shape[-1] == 3
        tifffile.imwrite(path, pixels, photometric="rgb")
        pixels, channel, extra = np.moveaxis(pixels, -1, 0), RGB_CHANNEL, ("--channel", RGB_CHANNEL)
    else:
        pixels, channel, extra = as_pixel_type(nuclei_field, name), None, ()
        tifffile.imwrite(path, pixels)
        assert tifffile.imread(path).dtype == pixels.dtype
    one, several = tmp_path / "one.ome.zarr", tmp_path / "several.ome.zarr"
    run_cli(path, one, 512, *extra)
    run_cli(path, several, 128, *several_extra, *extra)
    labels = check_output(one, pixels, channel)
    assert np.array_equal(check_output(several, pixels, channel), labels)


@pytest.mark.parametrize("name", ["float16", "bool"])
def test_in_memory_array(nuclei_field, tmp_path, name):
    """The napari widget's path: a numpy array, staged and segmented over several blocks."""
    pixels = as_pixel_type(nuclei_field, name)
    out = tmp_path / "mem.ome.zarr"
    segment(pixels, out, axes="yx", model="nuclei", block=128, device="cpu", progress=False)
    check_output(out, pixels)
    assert not list(tmp_path.glob(".*.input-*")), "the staged copy is removed once the run completes"


REFUSED = {"complex64": "complex numbers", "complex128": "complex numbers", "M8[s]": "dates and times",
           "m8[s]": "time intervals", "U4": "text", "S4": "byte strings", "V8": "structured records"}
# No zarr or TIFF holds extended precision, a numpy array can (where numpy has it).
IN_MEMORY_ONLY = {"float128": "extended precision"} if hasattr(np, "float128") else {}


@pytest.mark.parametrize("dtype", list(REFUSED) + list(IN_MEMORY_ONLY))
def test_refused_pixel_type_writes_nothing(tmp_path, dtype):
    """A type biounet cannot segment: one line naming the type, exit 1, and nothing written
    (no output, table or overlay), from a file and from an in-memory array."""
    from biounet.read.image import PixelTypeError

    array = np.zeros((64, 64), dtype)
    words = {**REFUSED, **IN_MEMORY_ONLY}[dtype]
    out = tmp_path / "out"
    out.mkdir()
    if dtype in REFUSED:
        source = tmp_path / "in" / "x.zarr"
        zarr.create_array(store=str(source), shape=array.shape, chunks=(32, 32), dtype=array.dtype, zarr_format=2)
        before = sorted(tmp_path.rglob("*"))
        result = invoke("segment", source, "--output-dir", out, "--model", "nuclei", "--qc-png", out / "qc.png")
        assert result.returncode == 1, (result.stderr, result.exception)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "pixel type" in lines[0] and words in lines[0], result.stderr
        assert sorted(tmp_path.rglob("*")) == before
    with pytest.raises(PixelTypeError, match=words):
        segment(array, out / "mem.ome.zarr", axes="yx", model="nuclei", progress=False)
    assert list(out.iterdir()) == []
