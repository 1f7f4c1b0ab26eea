"""`biounet view` in a real window, and how napari chooses a reader for an output."""

from __future__ import annotations

import colorsys
import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np


def test_view_opens_a_window(nuclei_output, tmp_path, x_display):
    shot_path = tmp_path / "view.png"
    env = {**os.environ, "DISPLAY": x_display}
    r = subprocess.run([sys.executable, "-m", "biounet", "view", str(nuclei_output), "--contour", "2",
                        "--screenshot", str(shot_path)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    shot = iio.imread(shot_path)[..., :3]
    assert shot.shape[0] >= 800 and shot.shape[1] >= 1100  # the whole window
    canvas = shot[:, shot.shape[1] // 3:]  # right of the layer controls and list
    rgb = canvas.reshape(-1, 3).astype(float) / 255
    saturated = (rgb.max(1) - rgb.min(1)) > 0.25
    assert 0.02 < saturated.mean() < 0.6, saturated.mean()
    # one colour per object: many hues, not just the classes' red
    hues = np.array([colorsys.rgb_to_hsv(*px)[0] for px in rgb[saturated][::7]])
    populated = np.bincount((hues * 18).astype(int) % 18, minlength=18)
    assert (populated >= 20).sum() >= 8, populated


def test_napari_chooses_biounet_once_remembered(nuclei_output, tmp_path):
    config = tmp_path / "napari-settings.yaml"
    code = ("from napari.components import ViewerModel; from napari.plugins import _initialize_plugins; "
            f"_initialize_plugins(); v = ViewerModel(); v.open({str(nuclei_output)!r}, plugin=None); "
            "print([layer.name for layer in v.layers])")
    env = {**os.environ, "NAPARI_CONFIG": str(config)}
    # Out of the box napari cannot choose: three readers take a folder (the dialog's case).
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode != 0 and "MultipleReaderError" in r.stderr
    assert "biounet" in r.stderr and "napari-ome-zarr" in r.stderr
    r = subprocess.run([sys.executable, "-m", "biounet", "view", "--remember-reader"], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0 and "*.ome.zarr/" in r.stdout, r.stderr
    assert "biounet" in config.read_text()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "['field', 'classes', 'instances']"
