"""A checkable list of the IMC images in a viewer (train on one image or several)."""

from __future__ import annotations

from collections.abc import Collection

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from napari_imc_vae._napari.layer_data import RAW
from napari_imc_vae._napari.layers import LayerImage, find_imc_images, imc_image_from_layers
from napari_imc_vae._napari.picker import SELECTED_LAYERS


class ImageChecklist(QWidget):
    """Check the IMC images to use; "Selected layers" builds one from the layer selection.

    The list follows the viewer's layers (refreshed on insert/remove), keeping each
    image's check state by name and kind. The first image is checked when it appears
    in an otherwise unchecked list.

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
        self.list.setToolTip("Check the images to train on (one panel). "
                             f"'{SELECTED_LAYERS}' uses the layer list's selection.")
        self.list.setMaximumHeight(110)
        self.list.itemChanged.connect(lambda _: self.changed.emit())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self.refresh)
        self.refresh()

    @property
    def images(self) -> list[LayerImage]:
        return list(self._images)

    def _checked_keys(self) -> set:
        keys = set()
        for row in range(self.list.count()):
            if self.list.item(row).checkState() == Qt.CheckState.Checked:
                keys.add(self._key(row))
        return keys

    def _key(self, row: int):
        if row < len(self._images):
            im = self._images[row]
            return (im.name, im.kind)
        return SELECTED_LAYERS

    def refresh(self, event=None) -> None:
        """Re-scan the viewer's layers, keeping check states."""
        try:
            checked = self._checked_keys()
        except RuntimeError:  # the Qt side is gone (widget closed)
            return
        self._images = find_imc_images(self.viewer.layers, kinds=self.kinds)
        if not checked and self._images:
            checked = {(self._images[0].name, self._images[0].kind)}
        self.list.blockSignals(True)
        self.list.clear()
        for im in self._images:
            self._add_item(im.label, (im.name, im.kind) in checked)
        self._add_item(SELECTED_LAYERS, SELECTED_LAYERS in checked)
        self.list.blockSignals(False)
        self.changed.emit()

    def _add_item(self, text: str, checked: bool) -> None:
        item = QListWidgetItem(text)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        self.list.addItem(item)

    def set_checked(self, labels: Collection[str]) -> None:
        """Check exactly the entries with these texts (image labels or "Selected layers")."""
        texts = [self.list.item(r).text() for r in range(self.list.count())]
        unknown = set(labels) - set(texts)
        if unknown:
            raise ValueError(f"No entries {sorted(unknown)} in the image list; it offers {texts}")
        for row, text in enumerate(texts):
            self.list.item(row).setCheckState(
                Qt.CheckState.Checked if text in labels else Qt.CheckState.Unchecked)

    def checked(self) -> list[LayerImage]:
        """The checked images, in list order.

        Raises
        ------
        ValueError
            Nothing checked, or "Selected layers" checked with a selection that is
            not one IMC image (the message names the layer and the problem).
        """
        out = []
        for row in range(self.list.count()):
            if self.list.item(row).checkState() != Qt.CheckState.Checked:
                continue
            if row < len(self._images):
                out.append(self._images[row])
            else:
                selection = self.viewer.layers.selection
                out.append(imc_image_from_layers(
                    [layer for layer in self.viewer.layers if layer in selection]))
        if not out:
            raise ValueError("No image checked: open an IMC image (File > Open) and check it in "
                             "the list, or select its channel layers and check "
                             f"'{SELECTED_LAYERS}'")
        names = [im.name for im in out]
        if len(set(map(id, (lay for im in out for lay in im.layers)))) < sum(
                len(im.layers) for im in out):
            raise ValueError(f"The checked entries share layers ({names}); check each image once")
        return out
