"""Shared fixtures: real data from ../shared/data and small random-weight models."""


from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from biounet.model.config import UNetConfig
from biounet.model.file import build_network, save_model
from biounet.model.spec import ModelSpec

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"real test data expected at {SHARED_DATA} (see ../shared/data/README.md)"
    return SHARED_DATA


def make_model(path: Path, seed: int = 0, normalization: dict | None = None, target: str = "binary",
               pixel_size: float | None = None, diameter: float | None = None, **unet) -> Path:
    """A random-weight U-Net (original geometry unless told otherwise; with `encoder=NAME` an
    encoder U-Net) saved as a model file (trained at `pixel_size` um/px on objects of
    `diameter` px, if given)."""
    torch.manual_seed(seed)
    classes = {"binary": ["background", "foreground"], "3class": ["background", "interior", "boundary"]}[target]
    options = {"width": 4, "out_channels": len(classes), **unet}
    if "encoder" in unet:
        options = {"depth": 6, "padding": "same", "batch_norm": True, **options}
    net = build_network(UNetConfig(**options))
    spec = ModelSpec(unet=net.config, target=target, classes=classes, normalization=normalization or {"method": "none"},
                     postprocess={"name": "components" if target == "binary" else "watershed_3class", "params": {}},
                     pixel_size=pixel_size, diameter=diameter)
    save_model(path, net, spec)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Depth 5, valid convolutions, width 4, no normalisation."""
    return make_model(tmp_path_factory.mktemp("models") / "tiny.pt")


@pytest.fixture(scope="session")
def tiny_encoder_model(tmp_path_factory) -> Path:
    """A random-weight ResNet-18 U-Net (decoder width 4, 64 px of context: small tiles for
    fast tests), 3class, percentile normalisation."""
    return make_model(tmp_path_factory.mktemp("models") / "resnet18.pt", encoder="resnet18", target="3class",
                      out_channels=3, context=64, normalization={"method": "percentile", "low": 1.0, "high": 99.8})


@pytest.fixture
def ctrl_c():
    """Python's Ctrl-C handler for one test, whatever the suite was started with: a
    shell starting it in the background (`make test &`) makes SIGINT ignored, and
    then KeyboardInterrupt never happens. Also resets SIGINT in child processes
    (pass `ctrl_c` as Popen's preexec_fn)."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
    finally:
        signal.signal(signal.SIGINT, before)


@contextmanager
def single_thread():
    """One torch thread (also in biounet's own contexts, via OMP_NUM_THREADS): on the
    shared 2-core machines two threads waiting for busy cores are many times slower."""
    saved_env, saved_threads = os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved_threads)
        if saved_env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved_env


@pytest.fixture
def one_thread():
    with single_thread():
        yield


def done_blocks(output) -> set[int]:
    """Blocks of an output whose prediction is recorded done (its run folder's markers)."""
    from biounet.write.runfolder import RunFolder, zarr_format_of  # noqa: F401

    fmt = zarr_format_of(output)
    return RunFolder(output, fmt).done("predict") if fmt else set()


def zarr_arrays(path) -> dict:
    """Every array of a zarr store (not its run folder), by path inside the store."""
    import zarr

    out = {}

    def walk(group, prefix=""):
        for name, node in group.members():
            if name == ".biounet":
                continue
            if isinstance(node, zarr.Array):
                out[prefix + name] = node[...]
            else:
                walk(node, prefix + name + "/")

    walk(zarr.open_group(str(path), mode="r"))
    return out


def assert_same_output(a, b, atol: float = 0.0) -> None:
    """Two complete biounet outputs hold the same arrays (probabilities within `atol`)."""
    import numpy as np
    import zarr

    left, right = zarr_arrays(a), zarr_arrays(b)
    assert sorted(left) == sorted(right)
    for key in left:
        if key.startswith("probabilities") and atol:
            assert np.abs(left[key].astype(np.float32) - right[key].astype(np.float32)).max() <= atol, key
        else:
            assert np.array_equal(left[key], right[key]), key
    for path in (a, b):
        assert zarr.open_group(str(path)).attrs["biounet"]["status"] == "complete"


def run_biounet(*args):
    """The real `biounet` command in a new process."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "biounet.cli", *map(str, args)], capture_output=True, text=True)


def invoke(*args):
    """The `biounet` command in this process (faster; same exit codes and messages)."""
    from click.testing import CliRunner

    from biounet.cli import main

    result = CliRunner().invoke(main, list(map(str, args)))
    result.returncode = result.exit_code
    return result


def bbbc039_labels(shared_data: Path, index: int, split: str = "train"):
    """Instance labels of the `index`-th BBBC039 image (by name) of a split."""
    import tifffile

    folder = shared_data / "bbbc039" / split / "labels"
    return tifffile.imread(sorted(folder.glob("*.tif"))[index])


def eroded_labels(labels):
    """Every object of a label image shrunk by 1 px (4-connected), against the background and its
    neighbours alike; objects of 1 px width vanish."""
    import numpy as np
    from scipy import ndimage as ndi

    cross = ndi.generate_binary_structure(2, 1)
    inside = ndi.grey_erosion(labels, footprint=cross) == labels
    inside &= ndi.grey_dilation(labels, footprint=cross) == labels
    return np.where(inside, labels, 0)


def as_pixel_type(field, name: str):
    """A 12-bit field (a BBBC039 image) as pixel type `name`, its values spread over the
    type's range (over float64's exact integers for 64-bit types)."""
    import numpy as np

    v = field.astype(np.int64)
    values = {
        "uint8": v >> 4,
        "uint16": v,
        "uint32": (v << 20) + v,  # up to 2^32 - 1: beyond float32's exact integers
        "int8": (v >> 4) - 128,
        "int16": (v - 2048) << 4,
        "int32": ((v - 2048) << 19) + v,  # -2^30 .. 2^30
        "uint64": (v << 52) + v,  # up to 2^64 - 1: beyond float64's exact integers
        "int64": ((v - 2048) << 51) + v,  # -2^62 .. 2^62
        ">i8": ((v - 2048) << 51) + v,  # the same, big-endian
        "float16": v,  # the user's file: 12-bit values saved as float16
        "float32": v / 4095,
        "float64": v / 4095,
        "bool": v > np.percentile(v, 70),
        ">u2": v,
    }[name]
    return values.astype(name)
