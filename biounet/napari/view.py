"""`biounet view OUTPUT`: napari with the output's layers, read by biounet's reader.

The layers are added straight from `biounet.napari.reader`, so napari never
asks which reader to use, whatever other readers are installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


class ViewError(ValueError):
    """Something `biounet view` cannot open or show (a one-line message)."""


class ViewNotFoundError(ViewError):
    """The output path does not exist (a usage error)."""


def check(output: Path) -> None:
    """Fail early, with a message, where napari would fail late or abort the process."""
    from biounet.napari.reader import get_reader

    if not output.exists():
        raise ViewNotFoundError(f"{output} not found; check the path (biounet segment writes slide.ome.zarr)")
    if get_reader(str(output)) is None:
        raise ViewError(f"{output} is not an OME-Zarr image or labels store (no NGFF multiscales or labels "
                        "metadata); an unfinished run has no labels metadata yet: rerun its segment command")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                                 or os.environ.get("QT_QPA_PLATFORM")):
        raise ViewError("no display (DISPLAY is not set): run it on a desktop, with ssh -X, or under xvfb-run "
                        "together with --screenshot")
    try:
        import napari  # noqa: F401
        import qtpy  # noqa: F401
    except ImportError as err:
        raise ViewError(f"biounet view needs napari and a Qt binding ({err}): pip install 'biounet[napari]'") from None


def open_viewer(output: Path, contour: int = 0, title: str | None = None):
    """A napari Viewer showing `output` (labels visible; instances as outlines `contour` px wide if > 0)."""
    import warnings

    import napari

    from biounet.napari.reader import read

    with warnings.catch_warnings():
        # napari's own notice, printed with its source path, on every PyQt5 start
        warnings.filterwarnings("ignore", message="System theme detection requires a Qt6 backend")
        viewer = napari.Viewer(title=title or f"biounet: {output.name}")
    add_layers(viewer, read(str(output)), contour)
    viewer.reset_view()
    return viewer


def add_layers(viewer, layer_data: list, contour: int = 0) -> list:
    added = []
    for data, kwargs, kind in layer_data:
        layers = getattr(viewer, f"add_{kind}")(data, **kwargs)
        added.extend(layers if isinstance(layers, list) else [layers])
    if contour and "instances" in viewer.layers:
        viewer.layers["instances"].contour = contour
    return added


def view(output: Path, contour: int = 0, screenshot: Path | None = None) -> None:
    """Open `output` in napari and run it until the window closes; with `screenshot`,
    save the window to that PNG and close instead."""
    check(output)
    import napari

    viewer = open_viewer(output, contour)
    if screenshot is None:
        napari.run()
        return
    from qtpy.QtWidgets import QApplication

    viewer.window.resize(1200, 900)
    for _ in range(20):  # let the window lay out and the canvas draw every layer
        QApplication.processEvents()
    viewer.reset_view()
    for widget in QApplication.allWidgets():  # start-up notices (toasts) would cover the canvas
        if type(widget).__name__ == "NapariQtNotification":
            widget.close()
    for _ in range(20):
        QApplication.processEvents()
    viewer.screenshot(path=str(screenshot), canvas_only=False)
    viewer.close()
