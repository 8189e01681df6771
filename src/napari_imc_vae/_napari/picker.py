"""A combo box of the IMC images in a viewer, shared by the plugin's widgets."""

from __future__ import annotations

from collections.abc import Collection

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QWidget

from napari_imc_vae._napari.layer_data import RAW
from napari_imc_vae._napari.layers import LayerImage, find_imc_images, imc_image_from_layers

SELECTED_LAYERS = "Selected layers"


class ImagePicker(QWidget):
    """Pick one IMC image: a detected image, or whatever layers are selected.

    The entries are the images :func:`find_imc_images` finds (the channel
    layers of one image, or a multi-channel layer), refreshed whenever layers
    are added or removed, plus "Selected layers", which builds the image from
    the layer list's selection (and so reports RGB, Labels, … selections).

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    kinds : collection of str or None
        Image kinds to offer (default raw data only; None for all).
    label : str
        Text shown left of the combo box.
    """

    changed = Signal()

    def __init__(self, viewer, *, kinds: Collection[str] | None = (RAW,),
                 label: str = "Image", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.kinds = kinds
        self._images: list[LayerImage] = []
        self.combo = QComboBox()
        self.combo.setToolTip("An IMC image: its channel layers, or one multi-channel layer. "
                              f"'{SELECTED_LAYERS}' uses the layer list's selection.")
        self.combo.currentIndexChanged.connect(lambda _: self.changed.emit())
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel(label))
        layout.addWidget(self.combo, 1)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self.refresh)
        self.refresh()

    @property
    def images(self) -> list[LayerImage]:
        """The images offered, in combo-box order (without "Selected layers")."""
        return list(self._images)

    def refresh(self, event=None) -> None:
        """Re-scan the viewer's layers, keeping the current choice where it still exists.

        An image is recognised again by its name and kind (its label changes while
        channel layers are being added). "Selected layers" stays chosen only if
        there were images to choose from: an empty viewer falls back to it, and
        the first image that appears replaces it.
        """
        try:
            index = self.combo.currentIndex()
        except RuntimeError:  # the Qt side is gone (widget closed): nothing to refresh
            return
        old = self._images
        previous = old[index] if 0 <= index < len(old) else None
        keep_selected = previous is None and bool(old) and index >= 0
        self._images = find_imc_images(self.viewer.layers, kinds=self.kinds)
        new_index = 0
        if previous is not None:
            same = [k for k, im in enumerate(self._images)
                    if (im.name, im.kind) == (previous.name, previous.kind)]
            new_index = same[0] if same else 0
        elif keep_selected:
            new_index = len(self._images)
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItems([im.label for im in self._images] + [SELECTED_LAYERS])
        self.combo.setCurrentIndex(new_index)
        self.combo.blockSignals(False)
        self.changed.emit()

    def select(self, label: str) -> None:
        """Choose an entry by its text (an image label or :data:`SELECTED_LAYERS`)."""
        index = self.combo.findText(label)
        if index < 0:
            raise ValueError(f"No image {label!r} in the picker; it offers "
                             f"{[self.combo.itemText(i) for i in range(self.combo.count())]}")
        self.combo.setCurrentIndex(index)

    def current(self) -> LayerImage:
        """The chosen image.

        Raises
        ------
        ValueError
            "Selected layers" with no selection, or a selection that is not
            one IMC image (the message names the layer and the problem).
        """
        index = self.combo.currentIndex()
        if 0 <= index < len(self._images):
            return self._images[index]
        selection = self.viewer.layers.selection
        return imc_image_from_layers([layer for layer in self.viewer.layers if layer in selection])
