"""The "Segment (biounet)" dock widget.

Input: an image layer of the viewer (its numpy or dask data is segmented as it
is, nothing to save first) or an image file / zarr folder. Model: a model this
build ships, by name (nuclei, membranes: `biounet.model.names`), or a model file;
device, tile, block and output as in `biounet segment`. The run happens in a napari thread worker; the progress bar
counts blocks done of all blocks, and Cancel stops after the current blocks,
leaving a resumable output (as Ctrl-C does): pressing Segment again with the
same settings continues it. When the run is done the labels layers (and, for
a file input, the image) are added to the viewer.
"""

import threading
from pathlib import Path

import napari
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
    RadioButtons,
    SpinBox,
)
from qtpy.QtCore import QObject, Signal

LAYER, FILE = "image layer", "file"
MODEL_FILE = "model file ..."


class _Progress(QObject):
    """Carries (done, total) from the run's threads to the widget (a queued Qt connection)."""

    changed = Signal(int, int)


class SegmentWidget(Container):
    """Segment an image layer or a file with biounet, in the background."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self.viewer = napari_viewer
        self.source = RadioButtons(choices=[LAYER, FILE], value=LAYER, orientation="horizontal", label="input")
        self.layer = ComboBox(choices=self._image_layers, label="image layer")
        self.path = FileEdit(mode="r", label="image file")
        from biounet.model.names import DEFAULT, SHIPPED, shipped

        names = shipped()
        self.model = ComboBox(choices=[*names, MODEL_FILE], value=DEFAULT if DEFAULT in names else MODEL_FILE,
                              label="model", tooltip="; ".join(f"{n}: {SHIPPED[n]}" for n in names))
        self.model_file = FileEdit(mode="r", label="model file", tooltip="a model file `biounet train` wrote")
        self.device = ComboBox(choices=["auto", "cpu", "cuda"], value="auto", label="device")
        self.tile = SpinBox(value=0, min=0, max=16384, label="tile", tooltip="input tile size; 0: automatic")
        self.block = SpinBox(value=1024, min=16, max=65536, step=16, label="block")
        self.output = FileEdit(mode="w", filter="*.ome.zarr", label="output",
                               tooltip="OME-Zarr to write; empty: beside the input, named after it")
        self.overwrite = CheckBox(value=False, text="replace an existing output")
        self.run_button = PushButton(text="Segment")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1, label="blocks")
        self.status = Label(value="")
        self.status.native.setWordWrap(True)  # long paths and summaries wrap instead of widening the dock
        super().__init__(widgets=[self.source, self.layer, self.path, self.model, self.model_file, self.device,
                                  self.tile, self.block, self.output, self.overwrite, self.run_button,
                                  self.cancel_button, self.progress, self.status])
        self._signals = _Progress()
        self._signals.changed.connect(self._on_progress)
        self._cancel = threading.Event()
        self.worker = None
        self.done = (0, 0)  # blocks done, of all blocks, as last reported
        self.source.changed.connect(self._on_source)
        self.model.changed.connect(self._on_model)
        self.run_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(lambda _=None: self.layer.reset_choices())
        self._on_source()
        self._on_model()

    # --- inputs ---------------------------------------------------------------

    def _image_layers(self, _widget=None) -> list:
        return [layer for layer in self.viewer.layers if isinstance(layer, napari.layers.Image)]

    def _on_source(self, _=None) -> None:
        self.layer.visible = self.source.value == LAYER
        self.path.visible = self.source.value == FILE

    def _on_model(self, _=None) -> None:
        self.model_file.visible = self.model.value == MODEL_FILE

    @staticmethod
    def _text(edit: FileEdit) -> str:
        return edit.line_edit.value.strip()

    def request(self) -> dict:
        """What to run: {"input": path or array, "output": Path, "axes", "options", "layer"}."""
        from biounet.plan.outputs import default_output

        output = Path(self._text(self.output)) if self._text(self.output) else None
        if self.source.value == FILE:
            if not self._text(self.path):
                raise ValueError("choose an image file (or use an image layer)")
            source, layer, axes = Path(self._text(self.path)), None, None
            output = output or default_output(source)
        else:
            layer = self.layer.value
            if layer is None:
                raise ValueError("no image layer: open an image or choose a file")
            source = layer.data[0] if layer.multiscale else layer.data
            axes = layer_axes(layer)
            output = output or Path.cwd() / f"{_safe_name(layer.name)}.ome.zarr"
        model = self.model.value
        if model == MODEL_FILE:
            model = self._text(self.model_file)
            if not model:
                raise ValueError("choose a model file (or a model by name)")
        options = {"model": model, "device": self.device.value, "tile": self.tile.value or None,
                   "block": self.block.value, "overwrite": self.overwrite.value, "axes": axes}
        return {"input": source, "output": output, "options": options, "layer": layer}

    # --- running --------------------------------------------------------------

    def start(self, _=None) -> None:
        """Start segmenting in a thread worker (the Segment button)."""
        from napari.qt.threading import create_worker

        try:
            job = self.request()
        except ValueError as err:
            self.status.value = str(err)
            return
        self._job = job
        self._cancel = threading.Event()
        self.progress.value = 0
        self.status.value = f"segmenting into {job['output']} ..."
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.worker = create_worker(self._segment, job, _start_thread=True, _connect={
            "returned": self._on_done, "errored": self._on_error, "finished": self._on_finished})

    def _segment(self, job: dict):
        """The run (in the worker thread). A cancelled run's Interrupted is returned, not
        raised: it is a KeyboardInterrupt, which the worker would not catch."""
        from biounet.pipeline.errors import Interrupted
        from biounet.pipeline.segment import segment

        try:
            return segment(job["input"], job["output"], progress=self._signals.changed.emit, cancel=self._cancel,
                           **job["options"])
        except Interrupted as err:
            return err

    def cancel(self, _=None) -> None:
        """Stop after the current blocks; the output stays resumable (the Cancel button)."""
        self._cancel.set()
        self.cancel_button.enabled = False
        self.status.value = "cancelling after the current blocks ..."

    def _on_progress(self, done: int, total: int) -> None:
        self.done = (done, total)
        self.progress.max = max(total, 1)
        self.progress.value = done
        self.progress.label = f"blocks {done}/{total}"

    def _on_done(self, result) -> None:
        if isinstance(result, BaseException):  # cancelled
            done, total = self.done
            self.status.value = (f"cancelled with {done} of {total} blocks done: {self._job['output']} is kept; "
                                 "press Segment again (same settings) to continue")
            return
        summary = result.extra.get("summary") or f"{result.extra.get('objects', 0)} objects"
        self.status.value = f"wrote {result.output}: {summary}"
        self.add_result(Path(result.output), self._job["layer"])

    def _on_error(self, err: BaseException) -> None:
        self.status.value = f"error: {' '.join(str(err).split()) or type(err).__name__}"

    def _on_finished(self) -> None:
        self.run_button.enabled, self.cancel_button.enabled = True, False

    def add_result(self, output: Path, layer=None) -> list:
        """Add the output's layers: labels only if the input was a layer (drawn where it is)."""
        from biounet.napari.reader import read

        added = []
        for data, kwargs, kind in read(str(output)):
            if layer is not None:
                if kind != "labels":
                    continue
                kwargs = {**kwargs, "scale": layer.scale[-data_ndim(data):], "translate": layer.translate[-data_ndim(data):]}
                kwargs.pop("units", None)
            added.extend(_as_list(getattr(self.viewer, f"add_{kind}")(data, **kwargs)))
        return added


def data_ndim(data) -> int:
    return (data[0] if isinstance(data, list) else data).ndim


def _as_list(layers) -> list:
    return layers if isinstance(layers, list) else [layers]


def layer_axes(layer) -> str:
    """NGFF axes of an image layer's data: RGB(A) -> yxc; otherwise the last two are y, x and
    the ones before z, then t."""
    ndim = data_ndim(layer.data)
    if layer.rgb:
        return "tzyx"[5 - ndim:] + "c"
    if ndim > 4:
        raise ValueError(f"a {ndim}-D image layer: biounet takes at most t, z, y, x (and RGB channels)")
    return "tzyx"[4 - ndim:]


def _safe_name(name: str) -> str:
    kept = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip("._")
    return kept or "image"
