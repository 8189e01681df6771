"""A checkable list of the IMC images in a viewer (train on one image or several)."""

from __future__ import annotations

from collections.abc import Collection

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QCheckBox, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from napari_imc_vae._napari.layer_data import RAW
from napari_imc_vae._napari.layers import LayerImage, find_imc_images, imc_image_from_layers
from napari_imc_vae._napari.picker import SELECTED_LAYERS


class ImageChecklist(QWidget):
    """Check the IMC images to use; a check box below adds the layer list's selection.

    The list holds only the images found among the viewer's layers (refreshed on
    insert/remove), keeping each image's check state by name and kind; the first image
    is checked when it appears in an otherwise unchecked list. "Selected layers" is a
    separate check box under the list, not a list entry, so it does not read as an image.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    kinds : collection of str or None
        Image kinds to offer (default raw data only).
    """

    changed = Signal()

    def __init__(self, viewer, *, kinds: Collection[str] | None = (RAW,),
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer, self.kinds = viewer, kinds
        self._images: list[LayerImage] = []
        self.list = QListWidget()
        self.list.setToolTip("Check the images to train on (one panel).")
        self.list.setMaximumHeight(90)
        self.list.itemChanged.connect(lambda _: self.changed.emit())
        self.use_selection = QCheckBox(f"Also the {SELECTED_LAYERS.lower()} in the layer list")
        self.use_selection.setToolTip("Builds one image from the layers selected in napari's "
                                      "layer list (e.g. layers opened without this plugin)")
        self.use_selection.toggled.connect(lambda _: self.changed.emit())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.list)
        layout.addWidget(self.use_selection)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self.refresh)
        self.refresh()

    @property
    def images(self) -> list[LayerImage]:
        return list(self._images)

    def _checked_keys(self) -> set:
        return {(im.name, im.kind) for row, im in enumerate(self._images)
                if self.list.item(row).checkState() == Qt.CheckState.Checked}

    def refresh(self, event=None) -> None:
        """Re-scan the viewer's layers, keeping check states."""
        try:
            checked = self._checked_keys()
        except RuntimeError:  # the Qt side is gone (widget closed)
            return
        self._images = find_imc_images(self.viewer.layers, kinds=self.kinds)
        if not checked and self._images and not self.use_selection.isChecked():
            checked = {(self._images[0].name, self._images[0].kind)}
        self.list.blockSignals(True)
        self.list.clear()
        for im in self._images:
            self._add_item(im.label, (im.name, im.kind) in checked)
        self.list.blockSignals(False)
        self.changed.emit()

    def _add_item(self, text: str, checked: bool) -> None:
        item = QListWidgetItem(text)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        self.list.addItem(item)

    def set_checked(self, labels: Collection[str]) -> None:
        """Check exactly these images (their labels) and, if named, :data:`SELECTED_LAYERS`."""
        texts = [self.list.item(r).text() for r in range(self.list.count())]
        unknown = set(labels) - set(texts) - {SELECTED_LAYERS}
        if unknown:
            raise ValueError(f"No entries {sorted(unknown)} in the image list; it offers "
                             f"{[*texts, SELECTED_LAYERS]}")
        for row, text in enumerate(texts):
            self.list.item(row).setCheckState(
                Qt.CheckState.Checked if text in labels else Qt.CheckState.Unchecked)
        self.use_selection.setChecked(SELECTED_LAYERS in labels)

    def checked(self) -> list[LayerImage]:
        """The checked images, in list order.

        Raises
        ------
        ValueError
            Nothing checked, or "Selected layers" checked with a selection that is
            not one IMC image (the message names the layer and the problem).
        """
        out = [im for row, im in enumerate(self._images)
               if self.list.item(row).checkState() == Qt.CheckState.Checked]
        if self.use_selection.isChecked():
            selection = self.viewer.layers.selection
            out.append(imc_image_from_layers(
                [layer for layer in self.viewer.layers if layer in selection]))
        if not out:
            raise ValueError("No image checked: open an IMC image (File > Open) and check it in "
                             "the list, or select its channel layers and check "
                             f"'{self.use_selection.text()}'")
        names = [im.name for im in out]
        if len(set(map(id, (lay for im in out for lay in im.layers)))) < sum(
                len(im.layers) for im in out):
            raise ValueError(f"The checked entries share layers ({names}); check each image once")
        return out
