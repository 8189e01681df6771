"""The Train VAE widget's *Export for the BioImage Model Zoo…* button: thin over the engine's export."""

from __future__ import annotations

from pathlib import Path

from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication, QFileDialog, QPushButton, QWidget

PACKAGE_FILTER = "BioImage Model Zoo package (*.zip)"


def zoo_export_button(widget: QWidget) -> QPushButton:
    """A button that exports ``widget.trained`` with the first checked image as the sample.

    Enabled when the widget holds a trained model and is not busy (follows ``widget.status``).
    """
    button = QPushButton("Export for the BioImage Model Zoo…")
    button.setToolTip("Write the model as a bioimage.io package (zip) that the zoo's tools run without this "
                      "plugin; its test input, cover and quality figures come from the first checked image. "
                      "Every napari-imc-vae command and the Reconstruct widget open it like a model file.")
    button.clicked.connect(lambda: export_for_zoo(widget))

    def follow(state) -> None:
        button.setEnabled(not state.busy and widget.trained is not None)

    widget.status.changed.connect(follow)
    follow(widget.status.state)
    return button


def export_for_zoo(widget: QWidget, path: str | None = None) -> Path | None:
    """Export the widget's model; asks for the file when ``path`` is None.

    Returns
    -------
    pathlib.Path or None
        The package, or None when there was nothing to export, the dialog was cancelled or
        the export failed (an error notification names why).
    """
    from napari_imc_vae.engine.bmz.export import export_package
    from napari_imc_vae.io.output_guard import check_output_apart

    if widget.trained is None:
        show_error("Train VAE: no model to export yet; train one first")
        return None
    checked = widget.images.checked()
    if not checked:
        show_error("Train VAE: check an image of the model's panel (ideally one it was trained on): the "
                   "package's test input, cover and quality figures come from it")
        return None
    sample = checked[0].image
    if path is None:
        path, _ = QFileDialog.getSaveFileName(widget, "Export for the BioImage Model Zoo", "imc_vae_model.zip",
                                              PACKAGE_FILTER)
        if not path:
            return None
    if not path.lower().endswith(".zip"):
        path += ".zip"
    QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
    try:
        check_output_apart(path, [s.image.source for s in checked], what="package")
        result = export_package(widget.trained, sample, path)
    except (OSError, ValueError) as e:  # OutputError, ChannelMismatchError: the message names the problem
        show_error(f"Train VAE: could not export the model to {path}: {e}")
        return None
    finally:
        QApplication.restoreOverrideCursor()
    show_info(f"Zoo package written to {result.path}; check it with 'bioimageio test {result.path}'")
    return result.path
