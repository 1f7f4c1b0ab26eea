"""napari tests: a real napari Viewer (Qt) on an X display.

Without a DISPLAY the session starts its own Xvfb. If Xvfb is not installed the
tests fail, saying so (they are never skipped): `.ci/run` installs Debian's
xvfb; elsewhere `apt-get install xvfb` or run the tests under `xvfb-run`.
napari's settings go to a temporary file, never the user's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

# Before napari reads its settings (the viewer fixture resets and saves them).
os.environ.setdefault("NAPARI_CONFIG", str(Path(tempfile.mkdtemp(prefix="biounet-napari-")) / "settings.yaml"))

XVFB_HELP = ("the napari tests need an X display and Xvfb is not installed: install Debian's xvfb "
             "(apt-get install xvfb; .ci/run does) or run the tests under xvfb-run")


@pytest.fixture(scope="session", autouse=True)
def x_display():
    """The X display the Qt tests draw on: the session's own, or a new Xvfb."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.fail(XVFB_HELP, pytrace=False)
    read, write = os.pipe()
    # Xvfb lives as long as this process: Qt's connection to it stays open until the
    # interpreter exits (stopping the server earlier makes Qt end the process with exit
    # code 1), so the kernel stops it when this process ends (PR_SET_PDEATHSIG).
    proc = subprocess.Popen([xvfb, "-displayfd", str(write), "-screen", "0", "1600x1200x24", "-nolisten", "tcp"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_die_with_parent)
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()  # Xvfb writes the display number once it is ready
    if not number:
        proc.kill()
        pytest.fail(f"Xvfb did not start (exit code {proc.wait()}); {XVFB_HELP}", pytrace=False)
    os.environ["DISPLAY"] = f":{number}"
    yield os.environ["DISPLAY"]


def _die_with_parent() -> None:
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def settle(qtbot, ms: int = 300) -> None:
    """Let Qt lay out and the canvas draw."""
    qtbot.wait(ms)


def canvas_shot(viewer, qtbot, path: Path) -> np.ndarray:
    """Screenshot of the canvas with the data fitted to it (saved to `path`), as (H, W, 4) uint8."""
    import imageio.v3 as iio

    viewer.window.resize(1400, 1000)  # room for the canvas beside the dock widgets
    settle(qtbot)
    viewer.reset_view()
    settle(qtbot)
    shot = viewer.screenshot(canvas_only=True)
    iio.imwrite(path, shot)
    return shot


def data_coordinates(viewer, shape: tuple[int, int], scale=(1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) data pixel under each canvas pixel of a screenshot of `shape` (2D view, no
    rotation): the camera centre is the canvas centre, zoom = canvas pixels per world unit."""
    height, width = shape
    rows, cols = np.mgrid[0:height, 0:width]
    cy, cx = viewer.camera.center[-2:]
    zoom = viewer.camera.zoom
    y = np.floor((cy + (rows + 0.5 - height / 2) / zoom) / scale[0]).astype(int)
    x = np.floor((cx + (cols + 0.5 - width / 2) / zoom) / scale[1]).astype(int)
    return y, x


def coloured_where(shot: np.ndarray, mask: np.ndarray, viewer, scale=(1.0, 1.0)) -> tuple[float, float]:
    """Fractions of canvas pixels that are coloured (not grey) over mask pixels and over the
    other pixels of the data, for a screenshot `shot` of `viewer`."""
    y, x = data_coordinates(viewer, shot.shape[:2], scale)
    inside = (y >= 0) & (y < mask.shape[0]) & (x >= 0) & (x < mask.shape[1])
    on = np.zeros(shot.shape[:2], bool)
    on[inside] = mask[y[inside], x[inside]]
    rgb = shot[..., :3].astype(int)
    coloured = (rgb.max(-1) - rgb.min(-1)) > 40
    assert on.sum() > 500 and (inside & ~on).sum() > 500, "the data should fill much of the canvas"
    return float(coloured[on].mean()), float(coloured[inside & ~on].mean())


CROP = (slice(0, 256), slice(0, 320))


@pytest.fixture(scope="session")
def nuclei(shared_data):
    """A crop of a real BBBC039 nuclei field (uint16) and its true instance labels."""
    import tifffile

    folder = shared_data / "bbbc039" / "train"
    image_path = sorted((folder / "images").glob("*.tif"))[0]
    label_path = folder / "labels" / image_path.name
    labels = tifffile.imread(label_path) if label_path.exists() else None
    return tifffile.imread(image_path)[CROP], (labels[CROP] if labels is not None else None)


@pytest.fixture(scope="session")
def nuclei_output(nuclei, tmp_path_factory):
    """The crop segmented by the shipped model (NGFF 0.4, with its object table)."""
    import tifffile

    from biounet.pipeline.segment import segment

    folder = tmp_path_factory.mktemp("nuclei")
    tifffile.imwrite(folder / "field.tif", nuclei[0])
    segment(folder / "field.tif", folder / "field.ome.zarr", block=256, progress=False)
    return folder / "field.ome.zarr"
