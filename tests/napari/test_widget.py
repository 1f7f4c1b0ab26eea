"""The "Segment (biounet)" widget in a real napari window: an in-memory layer segmented end
to end, and Cancel leaving a resumable output that a second Segment completes."""

from __future__ import annotations

import threading

import zarr
from qtpy.QtCore import Qt

from tests.conftest import assert_same_output
from tests.napari.conftest import canvas_shot, coloured_where


def open_widget(viewer):
    """The widget as a user opens it: Plugins > Segment (biounet) (through the npe2 manifest)."""
    _, widget = viewer.window.add_plugin_dock_widget("biounet", "Segment (biounet)")
    return widget


def run_and_wait(widget, qtbot, timeout_ms: int = 180_000) -> None:
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: widget.worker is not None and widget.run_button.enabled, timeout=timeout_ms)


def test_segments_a_layer(make_napari_viewer, qtbot, nuclei, tmp_path):
    image, truth = nuclei
    viewer = make_napari_viewer(show=True)
    layer = viewer.add_image(image, name="field", scale=(0.5, 0.5))  # in memory, never saved
    widget = open_widget(viewer)
    assert widget.layer.value is layer
    widget.output.value = str(tmp_path / "field.ome.zarr")
    widget.device.value = "cpu"
    widget.block.value = 128  # 2 x 3 blocks
    seen = []
    widget._signals.changed.connect(lambda done, total: seen.append((done, total)), Qt.DirectConnection)
    run_and_wait(widget, qtbot)

    assert widget.status.value.startswith("wrote "), widget.status.value
    assert seen[0] == (0, 6) and seen[-1] == (6, 6) and widget.progress.value == 6
    assert [item.name for item in viewer.layers] == ["field", "classes", "instances"]
    classes, instances = viewer.layers["classes"], viewer.layers["instances"]
    assert classes.visible and instances.visible
    assert tuple(instances.scale) == (0.5, 0.5) and instances.data[0].shape == image.shape
    assert "area_px" in instances.features.columns and len(instances.features) > 10
    assert not list(tmp_path.glob(".*.input-*.zarr")), "the staged copy of the layer is removed when done"

    shot = canvas_shot(viewer, qtbot, tmp_path / "widget.png")
    on_nuclei, off_nuclei = coloured_where(shot, truth > 0, viewer, scale=(0.5, 0.5))
    assert on_nuclei > 0.8 and off_nuclei < 0.15, (on_nuclei, off_nuclei)


def test_cancel_leaves_a_resumable_output(make_napari_viewer, qtbot, nuclei, tmp_path):
    """Cancel after the first block: the output is kept and incomplete; Segment again
    completes it, equal to an uninterrupted run."""
    from biounet.pipeline.segment import segment

    image, truth = nuclei
    viewer = make_napari_viewer(show=True)
    viewer.add_image(image, name="field")
    widget = open_widget(viewer)
    output = tmp_path / "field.ome.zarr"
    widget.output.value = str(output)
    widget.device.value, widget.block.value = "cpu", 128  # 6 blocks

    # Hold the run after its first finished block until Cancel has been clicked.
    clicked = threading.Event()

    def hold(done: int, total: int) -> None:
        if done >= 1:
            clicked.wait(60)

    widget._signals.changed.connect(hold, Qt.DirectConnection)
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: widget.done[0] >= 1, timeout=120_000)
    widget.cancel_button.native.click()
    clicked.set()
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=120_000)
    widget._signals.changed.disconnect(hold)

    assert widget.status.value.startswith("cancelled with "), widget.status.value
    assert "press Segment again" in widget.status.value
    done, total = widget.done
    assert 1 <= done < total == 6
    assert zarr.open_group(str(output), mode="r").attrs["biounet"]["status"] == "running"
    assert [item.name for item in viewer.layers] == ["field"]
    assert list(tmp_path.glob(".field.ome.zarr.input-*.zarr")), "the staged input stays for the resume"
    shot = canvas_shot(viewer, qtbot, tmp_path / "cancelled.png")
    on_nuclei, _ = coloured_where(shot, truth > 0, viewer)
    assert on_nuclei < 0.05, "no labels are shown for a cancelled run"

    run_and_wait(widget, qtbot)
    assert widget.status.value.startswith("wrote "), widget.status.value
    assert widget.done == (6, 6)
    assert [item.name for item in viewer.layers] == ["field", "classes", "instances"]
    reference = tmp_path / "reference.ome.zarr"
    segment(image, reference, axes="yx", block=128, device="cpu", progress=False)
    assert_same_output(output, reference)
    shot = canvas_shot(viewer, qtbot, tmp_path / "resumed.png")
    on_nuclei, off_nuclei = coloured_where(shot, truth > 0, viewer)
    assert on_nuclei > 0.8 and off_nuclei < 0.15, (on_nuclei, off_nuclei)


def test_segments_a_file(make_napari_viewer, qtbot, nuclei, tmp_path):
    """A file input with the shipped model: the output goes beside it by default, and the image
    comes with the labels."""
    import tifffile

    image, truth = (a[:128, :192] for a in nuclei)
    tifffile.imwrite(tmp_path / "field.ome.tif", image)
    viewer = make_napari_viewer(show=True)
    widget = open_widget(viewer)
    widget.source.value = "file"
    assert not widget.path.native.isHidden() and widget.layer.native.isHidden()
    widget.path.value = str(tmp_path / "field.ome.tif")
    widget.device.value = "cpu"
    run_and_wait(widget, qtbot)
    assert widget.status.value.startswith(f"wrote {tmp_path / 'field.ome.zarr'}"), widget.status.value
    assert [item.name for item in viewer.layers] == ["field", "classes", "instances"]
    shot = canvas_shot(viewer, qtbot, tmp_path / "file.png")
    on_nuclei, off_nuclei = coloured_where(shot, truth > 0, viewer)
    assert on_nuclei > 0.8 and off_nuclei < 0.15, (on_nuclei, off_nuclei)


def test_model_by_name_or_file(make_napari_viewer, tiny_model):
    """The model is a shipped one by name (nuclei first), or a file chosen once "model file ..." is picked."""
    import numpy as np
    import pytest

    from biounet.model.names import shipped
    from biounet.napari.widget import MODEL_FILE

    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((32, 32), np.uint8), name="field")
    widget = open_widget(viewer)
    assert list(widget.model.choices) == [*shipped(), MODEL_FILE] and widget.model.value == "nuclei"
    assert widget.model_file.native.isHidden()
    assert widget.request()["options"]["model"] == "nuclei"
    widget.model.value = MODEL_FILE
    assert not widget.model_file.native.isHidden()
    with pytest.raises(ValueError, match="choose a model file"):
        widget.request()
    widget.model_file.value = str(tiny_model)
    assert widget.request()["options"]["model"] == str(tiny_model)
