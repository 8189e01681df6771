"""Opening a model file from a widget: the file dialog's filter and a load that reports errors."""

from __future__ import annotations

from napari.utils.notifications import show_error
from qtpy.QtWidgets import QFileDialog, QWidget

from napari_imc_vae.engine.model_file.checkpoint import ModelFileError, TrainedModel

# a BioImage Model Zoo package exported by this plugin opens wherever a model file does
MODEL_FILTER = "napari-imc-vae model (*.pt);;BioImage Model Zoo package from napari-imc-vae (*.zip);;All files (*)"


def open_model_file(parent: QWidget, caption: str, path: str | None,
                    error_prefix: str) -> tuple[str, TrainedModel] | None:
    """Load a model file, asking for one when ``path`` is None.

    Parameters
    ----------
    parent : QWidget
        The file dialog's parent.
    caption : str
        The file dialog's title.
    path : str or None
        The file; None opens the dialog.
    error_prefix : str
        Starts the error notification (the widget's name).

    Returns
    -------
    (str, TrainedModel) or None
        The path and the model; None when the dialog was cancelled or the file is not a
        usable model (an error notification then names the problem).
    """
    if path is None:
        path, _ = QFileDialog.getOpenFileName(parent, caption, "", MODEL_FILTER)
        if not path:
            return None
    try:
        return path, TrainedModel.load(path)
    except ModelFileError as e:
        show_error(f"{error_prefix}: {e}")
        return None
