"""Dock widget "Normalize channels": statistics, histograms and normalized layers.

A thin adapter: :func:`.normalize_task.run_normalization` does the work in a
napari worker thread; this widget collects parameters, shows the diagnosis and
adds ``"<raw layer> [normalized]"`` layers beside the raw ones. Raw layers'
data and display settings are never modified (only hidden, if asked).
"""

from __future__ import annotations

from functools import partial

from napari.layers import Layer
from napari.layers.utils.stack_utils import split_channels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt, Signal
from magicgui.widgets import CheckBox
from qtpy.QtWidgets import QLabel, QPushButton, QSplitter, QVBoxLayout, QWidget

from napari_imc_vae._napari.dock_layout import DOCK_MAX_WIDTH, dock_size_hint, scrolling
from napari_imc_vae._napari.layer_data import NORMALIZED, image_layer_data
from napari_imc_vae._napari.layer_feed import LayerFeed, remove_layers
from napari_imc_vae._napari.layers import LayerImage, imc_info
from napari_imc_vae._napari.normalization_form import NormalizationForm
from napari_imc_vae._napari.normalize_task import NormalizationResult, run_normalization
from napari_imc_vae._napari.picker import ImagePicker
from napari_imc_vae._napari.stats_view import HistogramView, StatsTable
from napari_imc_vae.preprocessing import DEFAULT_NORMALIZATION, NormalizationParams

#: What the widget starts with: the training default (defined with no torch import).
INITIAL_NORMALIZATION = DEFAULT_NORMALIZATION


class NormalizeWidget(QWidget):
    """Normalize the channels of an IMC image and show what changed.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        Injected by napari when docked from Plugins > IMC VAE.

    Attributes
    ----------
    result : NormalizationResult or None
        The last successful run.
    finished : Signal(object)
        Emitted after a run: the result, or None when it failed.
    """

    finished = Signal(object)

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.result: NormalizationResult | None = None
        self._worker = None
        self._feed: LayerFeed | None = None

        self.picker = ImagePicker(napari_viewer)
        settings = NormalizationForm("Normalization (applied in this order)", INITIAL_NORMALIZATION)
        self.hot_on, self.hot_threshold = settings.hot_on, settings.hot_threshold
        self.arcsinh_on, self.cofactor = settings.arcsinh_on, settings.cofactor
        self.clip_on, self.clip_percentile = settings.clip_on, settings.clip_percentile
        self.zscore = settings.zscore
        self.hide_raw = CheckBox(text="Hide the raw layers afterwards", value=True)
        settings.append(self.hide_raw)
        self.normalization_box = settings

        self.run_button = QPushButton("Normalize and add layers")
        self.run_button.clicked.connect(self.normalize)
        self.status = QLabel("Pick an image and press Normalize.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table = StatsTable()
        self.histograms = HistogramView()
        self.histograms.plots.setMinimumHeight(140)  # the dock fits a 1080p screen (issue 17)
        self.table.channelSelected.connect(self.histograms.channel.setCurrentIndex)
        results = QSplitter(Qt.Orientation.Vertical)
        results.addWidget(self.table)
        results.addWidget(self.histograms)

        # the settings scroll and the verdicts (a line per problem channel) scroll in a few
        # lines, so the dock asks for little height; the button stays in view between them
        lines = self.status.fontMetrics().lineSpacing()
        self.status_area = scrolling(self.status, min_height=2 * lines + 8)
        self.status_area.setMaximumHeight(7 * lines + 8)
        self.settings_area = scrolling(settings.native)
        lower = QWidget()
        below = QVBoxLayout(lower)
        below.setContentsMargins(0, 0, 0, 0)
        below.addWidget(self.run_button)
        below.addWidget(self.status_area)
        below.addWidget(results, 1)
        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.setChildrenCollapsible(False)
        self.split.addWidget(self.settings_area)
        self.split.addWidget(lower)
        self.split.setStretchFactor(1, 1)  # the results grow with the dock; the settings scroll

        layout = QVBoxLayout(self)
        layout.addWidget(self.picker)
        layout.addWidget(self.split, 1)
        self.setMaximumWidth(DOCK_MAX_WIDTH)

    def sizeHint(self):  # noqa: N802 - Qt API; the dock's first width
        return dock_size_hint(self)

    def params(self) -> NormalizationParams:
        """The normalization chosen in the widget."""
        return self.normalization_box.params()

    def normalize(self):
        """Start normalizing the picked image in a worker thread.

        Returns
        -------
        napari worker or None
            None when the input is unusable: an error notification names the
            problem and nothing in the viewer changes.
        """
        try:
            source = self.picker.current()
            params = self.params()
            image = source.image  # copied here, on the main thread, from the layers
        except (ValueError, TypeError) as e:
            show_error(f"Normalize channels: {e}")
            return None
        self.run_button.setEnabled(False)
        self.status.setText(f"Normalizing {source.name} ({params.describe()}) …")
        # Errors go to _on_errored (a notification), not re-raised in the event loop.
        worker = create_worker(run_normalization, image, params, _start_thread=False,
                               _ignore_errors=True)
        worker.returned.connect(lambda result: self._on_returned(source, params, result))
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._worker_done)
        self._worker = worker
        worker.start()
        return worker

    def _on_errored(self, exc: Exception) -> None:
        self.run_button.setEnabled(True)
        self.status.setText(f"Failed: {exc}")
        show_error(f"Normalize channels failed: {exc}")
        self.finished.emit(None)

    def _on_returned(self, source: LayerImage, params: NormalizationParams,
                     result: NormalizationResult) -> None:
        try:
            steps = self._layer_steps(source, params, result)
        except Exception as e:  # noqa: BLE001 - a Qt slot must not raise; report instead
            self._on_errored(e)
            return
        # the layers go in a few per event-loop turn: all 32 at once froze napari for seconds
        self.run_button.setEnabled(False)
        self.status.setText(f"Adding the layers '… [{NORMALIZED}]' …")
        self._feed = LayerFeed(steps, self)
        self._feed.finished.connect(lambda added: self._on_added(params, result, added))
        self._feed.failed.connect(self._on_errored)
        self._feed.start()

    def _on_added(self, params: NormalizationParams, result: NormalizationResult, added: list) -> None:
        layers = [layer for layer in added if isinstance(layer, Layer)]
        self.run_button.setEnabled(True)
        self.result = result
        d = result.diagnosis
        self.table.set_stats(d.before, d.after)
        self.histograms.set_histograms(result.raw.channel_names, result.before, result.after)
        verdicts = [line for line in d.format_text().splitlines() if line.startswith("[")]
        self.status.setText(
            f"Added {len(layers)} layers '… [{NORMALIZED}]' ({params.describe()}).\n"
            + "\n".join(verdicts)
        )
        self.finished.emit(result)

    def _worker_done(self) -> None:
        if self._feed is None or not self._feed.running:  # else: when the layers are in
            self.run_button.setEnabled(True)

    def _layer_steps(self, source: LayerImage, params: NormalizationParams,
                     result: NormalizationResult) -> list:
        """The changes to the layer list, one small step each: remove an earlier run's layers (in
        one batch), then per channel add its normalized layer above the raw ones and hide the raw."""
        raw = result.raw
        key = (raw.source, raw.acquisition, source.name)
        earlier = [layer for layer in self.viewer.layers
                   if layer not in source.layers and (info := imc_info(layer))
                   and info.get("kind") == NORMALIZED
                   and (info.get("source"), info.get("acquisition"), info.get("image")) == key]

        per_channel = not source.is_multichannel_layer
        base = ([layer.name for layer in source.layers] if per_channel else raw.channel_names)
        normalization = {
            "parameters": params.to_dict(),
            "normalizer": result.normalizer.to_dict(),
            "raw_layers": [layer.name for layer in source.layers],
        }
        data, kwargs, _ = image_layer_data(
            result.normalized,
            kind=NORMALIZED,
            colormaps=[layer.colormap for layer in source.layers] if per_channel else None,
            translate=source.translate,
            normalization=normalization,
        )
        kwargs["name"] = [f"{name} [{NORMALIZED}]" for name in base]
        kwargs["metadata"] = [{**m, "imc": {**m["imc"], "image": source.name}}
                              for m in kwargs["metadata"]]
        kwargs["scale"] = tuple(float(s) for s in source.layers[0].scale[-2:])
        channels = split_channels(data, kwargs.pop("channel_axis"), **kwargs)

        hide = list(source.layers) if self.hide_raw.value else []
        steps: list = [partial(remove_layers, self.viewer, earlier)]
        for offset, layer_data in enumerate(channels):
            steps.append(partial(self._add_one, source, offset, layer_data))
            if per_channel and offset < len(hide):  # right after: napari draws as many as before
                steps.append(partial(setattr, hide[offset], "visible", False))
        if hide and not per_channel:
            steps.append(partial(setattr, hide[0], "visible", False))
        return steps

    def _add_one(self, source: LayerImage, offset: int, layer_data: tuple) -> Layer:
        """Make the layer of ``layer_data`` (data, kwargs, type); put it at ``offset`` above the
        image's raw layers."""
        layer = Layer.create(*layer_data)
        top = max(self.viewer.layers.index(raw) for raw in source.layers)
        self.viewer.layers.insert(top + 1 + offset, layer)
        return layer
