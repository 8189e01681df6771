"""Dock widget "Reconstruct": apply a model to a whole image and show what it explains and misses.

Uses the model just trained in "Train VAE" (the viewer's model store) or one loaded from
a file. When the reconstruction ends, the comparison view (:mod:`.comparison_view`) shows,
by default, the best and the worst explained marker as measured | model | missed panels;
a list picks other markers, a check box or "Back to my layout" returns to the user's own
layout. The raw layers are never changed. Also added, hidden, on the raw layers:

- ``error (noise SD)`` (per-pixel error, magma), ``high-error regions`` (also in the table
  below), ``hot pixels``;
- ``latent map (RGB)``, the first three principal components of the latent map as one RGB
  layer on the stride grid (2-D, so napari adds no slider; the full map is in its metadata,
  see :mod:`.latent_view`); ``tissue motifs``, k-means clusters of the latent map as Labels;
- on request, ``"<raw layer> [model]"`` and ``"<raw layer> [missed]"`` for every marker the
  model knows (image channels it does not know are left out, and the widget says which).

With several images in the viewer the whole-image layers' names end in the image's short
tag (``"error (noise SD) · 003"``, see :func:`.layer_data.image_tags`); earlier results are
renamed when another image comes in, so the names stay unique and short.

Below, the quality report of the model on that image (``result.report_text``). The form
scrolls, so the dock fits a 1080p screen beside a canvas of most of its width.

The layers are built in :mod:`.result_layers` and placed among the viewer's in
:mod:`.viewer_results`. Running again replaces that image's result layers (found by
``metadata["imc"]``: kind, image and marker, not by name); every layer's ``metadata["imc"]
["provenance"]`` records model hash (or "unsaved"), normalization, training step, stride.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

from magicgui.widgets import CheckBox
from napari.layers import Layer
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from napari_imc_vae._napari.cells_layer import CellsPanel
from napari_imc_vae._napari.compare_panel import ComparePanel
from napari_imc_vae._napari.fold import Fold
from napari_imc_vae._napari.layer_data import image_tags
from napari_imc_vae._napari.layer_feed import LayerFeed
from napari_imc_vae._napari.layers import LayerImage, imc_info
from napari_imc_vae._napari.model_file import open_model_file
from napari_imc_vae._napari.model_store import RunState, RunStatus, model_label, model_store
from napari_imc_vae._napari.normalization_form import int_spin, labelled
from napari_imc_vae._napari.picker import ImagePicker
from napari_imc_vae._napari.quiet_scene import quiet_scene, redraw_scene
from napari_imc_vae._napari.reconstruct_task import REGIONS, ReconstructResult, default_markers, reconstruct_updates
from napari_imc_vae._napari.regions_table import RegionsTable
from napari_imc_vae._napari.report_view import ReportView
from napari_imc_vae._napari.result_layers import comparison_rows, reconstruction_layers
from napari_imc_vae._napari.viewer_results import images_in, raw_display, result_key, retag
from napari_imc_vae.engine.model_file.checkpoint import TrainedModel


class ReconstructWidget(QWidget):
    """Reconstruct an IMC image with a trained model and add the overlay layers.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer

    Attributes
    ----------
    result : ReconstructResult or None
    finished : Signal(object)
        The list of layers added, or None when the run failed.
    """

    finished = Signal(object)

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.status = RunStatus()
        self.result: ReconstructResult | None = None
        self.worker = None
        self._feed: LayerFeed | None = None
        self._pbar = None
        self.store = model_store(napari_viewer)
        self.store.changed.connect(self._show_model)

        self.model_label = QLabel()
        self.model_label.setWordWrap(True)
        self.model_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.load_button = QPushButton("Load model…")
        self.load_button.clicked.connect(lambda: self.load_model())
        self.picker = ImagePicker(napari_viewer)
        self.k = int_spin(6, 1, 64, label="Tissue motifs, k",
                          tip="number of tissue motifs (k-means clusters of the latent map)")
        self.stride = int_spin(0, 0, 256, label="Stride, px (0: auto)",
                               tip="tile step in pixels; 0 = auto, half the patch")
        self.all_markers = CheckBox(text="Model and missed layers of every marker", label="",
                                    tooltip="also add, hidden, '<marker> [model]' and '<marker> [missed]' "
                                            "for every marker the model knows")
        self.options = labelled([self.k, self.stride, self.all_markers])
        self.cells = CellsPanel(napari_viewer)  # a Labels layer gets the per-cell table
        # folded: most users have no segmentation, and the panel took a tall empty area
        self.cells_fold = Fold("Cells (needs a segmentation mask)", self.cells,
                               tip="Pick a segmentation (Labels layer) before Reconstruct: each cell gets "
                                   "its row (error, motifs, markers) and can be coloured")
        self.compare = ComparePanel(napari_viewer)
        self.run_button = QPushButton("Reconstruct")
        self.run_button.clicked.connect(self.reconstruct)
        self.progress_bar = QProgressBar()
        self.message = QLabel("Train a model (Train VAE) or load one, pick an image, press Reconstruct.")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.report = ReportView("The quality report of the model on the image appears here "
                                 "after Reconstruct.")
        self.report.setMinimumHeight(220)
        self.regions = RegionsTable(self.viewer)
        self.regions.setMinimumHeight(120)

        row = QHBoxLayout()
        row.addWidget(self.model_label, 1)
        row.addWidget(self.load_button)
        form = QWidget()
        layout = QVBoxLayout(form)
        layout.addLayout(row)
        layout.addWidget(self.picker)
        layout.addWidget(self.options.native)
        layout.addWidget(self.cells_fold)
        layout.addWidget(self.run_button)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.message)
        layout.addWidget(self.compare)
        layout.addWidget(QLabel("Quality report"))
        layout.addWidget(self.report, 1)
        layout.addWidget(QLabel("Regions of high error (click to go there)"))
        layout.addWidget(self.regions)
        # a dock taller than the screen pushes napari's window past it: scroll instead
        scroll = QScrollArea()
        scroll.setWidget(form)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.status.changed.connect(self._update_buttons)
        self._show_model(self.store.model)

    @property
    def model(self) -> TrainedModel | None:
        return self.store.model

    def _show_model(self, trained) -> None:
        try:
            self.model_label.setText("Model: " + (model_label(trained) if trained else "none yet"))
        except RuntimeError:  # the widget was closed; the store outlives it
            return
        self._update_buttons(self.status.state)

    def _update_buttons(self, state: RunState) -> None:
        self.run_button.setEnabled(not state.busy and self.model is not None)
        self.load_button.setEnabled(not state.busy)

    def load_model(self, path: str | None = None) -> TrainedModel | None:
        """Load a model file (asks for one when ``path`` is None) and use it from now on."""
        loaded = open_model_file(self, "Load model", path, "Reconstruct")
        if loaded is None:
            return None
        _, trained = loaded
        self.store.set(trained)
        return trained

    def reconstruct(self):
        """Start reconstructing the picked image in a worker thread.

        Returns
        -------
        napari worker or None
            None when the input is unusable (no model, no image, channels of the model
            missing): an error notification names the problem and nothing in the viewer
            changes. Image channels the model does not know are left out: an info
            notification and the status line name them.
        """
        trained = self.model
        try:
            if trained is None:
                raise ValueError("no model: train one in 'Train VAE' or use 'Load model…'")
            source = self.picker.current()
            image = source.image
            try:
                note = trained.match_channels(image).note()
            except ValueError as e:
                raise ValueError(f"the model does not fit {source.name}: {e}") from e
            labels = self.cells.labels_for(image)
        except (ValueError, TypeError) as e:
            show_error(f"Reconstruct: {e}")
            return None
        k, stride = self.k.value, self.stride.value or None
        # contrast limits are computed in the worker too: percentiles of every channel on the
        # GUI thread would freeze napari for large images
        worker = create_worker(reconstruct_updates, trained, image, k=k, stride=stride,
                               raw_limits=source.is_multichannel_layer, labels=labels,
                               _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(lambda result: self._on_returned(source, result, note))
        worker.errored.connect(self._on_errored)
        self.worker = worker
        self._pbar = progress(total=0, desc=f"Reconstructing {source.name}")
        self.progress_bar.setRange(0, 0)
        self.message.setText(f"Reconstructing {source.name} …" + (f" ({note})" if note else ""))
        self.report.set_report("")
        if note:
            show_info(f"Reconstruct {source.name}: {note}")
        self.status.state = RunState.TRAINING
        worker.start()
        return worker

    def _on_yielded(self, done_total: tuple[int, int]) -> None:
        done, total = done_total
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(done)
        if self._pbar is not None:
            self._pbar.total = total
            self._pbar.update(done - self._pbar.n)

    def _close_progress(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None

    def _on_errored(self, exc: Exception) -> None:
        self._close_progress()
        self.status.state = RunState.FAILED
        self.progress_bar.setRange(0, 1)
        self.message.setText(f"Failed: {exc}")
        show_error(f"Reconstruct failed: {exc}")
        self.finished.emit(None)

    def _on_returned(self, source: LayerImage, result: ReconstructResult, note: str | None = None) -> None:
        """Add the result layers and open the comparison a step per event-loop turn; then ``finished``."""
        self._close_progress()
        added: list = []
        self._feed = LayerFeed(self._result_steps(source, result, note, added), self)
        self._feed.finished.connect(lambda _results: self.finished.emit(added))
        self._feed.failed.connect(self._on_errored)
        self._feed.start()

    def _result_steps(self, source: LayerImage, result: ReconstructResult, note: str | None,
                      added: list) -> Iterator[Callable[[], object]]:
        """Small steps (one layer each at most) that show ``result``; ``added`` gets the new layers.

        napari rebuilds its scene after each layer change; these steps hold that back
        (:func:`.quiet_scene.quiet_scene`) and rebuild once at the end.
        """
        names, colormaps, contrast = raw_display(source, result)
        placement = {"scale": tuple(source.layers[0].scale[-2:]), "translate": source.translate}
        tags = image_tags([*images_in(self.viewer), source.name])
        tuples = reconstruction_layers(
            result, base_names=names, image_name=source.name, colormaps=colormaps, contrast=contrast,
            all_markers=self.all_markers.value, image_tag=tags[source.name], **placement)
        replaced = {result_key(kwargs["metadata"]) for _, kwargs, _ in tuples}

        def clear() -> None:  # an earlier run's layers of this image; earlier images' tags may change
            stale = [layer for layer in self.viewer.layers
                     if layer not in source.layers and result_key(layer.metadata) in replaced]
            with quiet_scene(self.viewer):
                for layer in stale:
                    self.viewer.layers.remove(layer)
                retag(self.viewer, tags)
        yield clear
        n_markers = 2 * len(result.channel_index) if self.all_markers.value else 0
        for offset, layer_tuple in enumerate(tuples):
            yield partial(self._insert, source, layer_tuple, offset if offset < n_markers else None, added)
        yield lambda: self._list_markers(result, names, contrast, placement, source.name)
        yield from self.compare.changes()
        yield lambda: redraw_scene(self.viewer)  # the comparison off: the new layers still go in
        yield lambda: self._show_result(source, result, note, added)

    def _insert(self, source: LayerImage, layer_tuple: tuple, offset: int | None, added: list) -> None:
        """Add one result layer: per marker (``offset``) right above the raw layers, else on top."""
        layer = Layer.create(*layer_tuple)
        with quiet_scene(self.viewer):
            if offset is None:
                self.viewer.layers.append(layer)
            else:
                top = max(self.viewer.layers.index(raw) for raw in source.layers)
                self.viewer.layers.insert(top + 1 + offset, layer)
        added.append(layer)

    def _show_result(self, source: LayerImage, result: ReconstructResult, note: str | None,
                     added: list) -> None:
        self.result = result
        self.status.state = RunState.DONE
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1)
        self.message.setText(
            f"Done. Also in hidden layers: the error map ({result.error_unit}), the latent map "
            f"({result.latent.shape[0]} dims as 3 principal components in RGB), {result.k} tissue motifs, "
            f"regions of high error, hot pixels." + (f" Note: {note}." if note else ""))
        # a result without a report (the reconstruction alone) shows the placeholder
        self.report.set_report(getattr(result, "report_text", "") or "")
        points = next((layer for layer in added if (imc_info(layer) or {}).get("kind") == REGIONS), None)
        self.regions.set_regions(result.regions, scale=tuple(source.layers[0].scale[-2:]),
                                 translate=tuple(source.translate), layer=points)
        if getattr(result, "cells", None) is not None:
            self.cells_fold.set_open(True)
        self.cells.show(result.cells)

    def _list_markers(self, result: ReconstructResult, names: list[str], contrast: list, placement: dict,
                      image_name: str) -> None:
        """Fill the comparison's marker list (best explained first); the caller shows the pick."""
        items = []
        for j in result.ranking or range(len(result.channel_index)):
            name = names[result.channel_index[j]]
            # the engine's sentence names the marker by its panel label; the list, by its layer
            sentence = result.markers[j].sentence if result.markers else ""
            words = sentence.partition(": ")[2]
            items.append((f"{name}: {words}" if words else name, j, sentence or name))
        self.compare.set_markers(
            items, default_markers(result),
            lambda picked: comparison_rows(result, picked, base_names=names, image_name=image_name,
                                           contrast=contrast, **placement), show=False)
