"""The model files of "Train VAE": save the trained model, resume from a file, start a new model.

:class:`TrainModelFiles` is mixed into :class:`.train_widget.TrainWidget`; its methods use the
widget's ``trained``, ``resume``, ``images``, ``form``, ``estimate``, ``status`` and
``resume_label``.
"""

from __future__ import annotations

from dataclasses import asdict

from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QFileDialog

from napari_imc_vae._napari.model_file import MODEL_FILTER, open_model_file
from napari_imc_vae._napari.model_store import model_store
from napari_imc_vae.engine.model_file.checkpoint import TrainedModel

__all__ = ["TrainModelFiles"]


class TrainModelFiles:
    """Save, resume-from and new-model actions of the "Train VAE" widget (a mixin)."""

    def save_model(self, path: str | None = None):
        """Save the trained model (atomic write); asks for a file when ``path`` is None.

        Returns
        -------
        pathlib.Path or None
        """
        if self.trained is None:
            show_error("Train VAE: no model to save yet; train one first")
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save model", "imc_vae_model.pt", MODEL_FILTER)
            if not path:
                return None
        try:
            from napari_imc_vae.io.output_guard import check_output_apart

            # never over an image it was trained on (or its panel): OutputError names it
            check_output_apart(path, [s.image.source for s in self.images.checked()], what="model file")
            saved = self.trained.save(path)
        except OSError as e:
            show_error(f"Train VAE: could not save the model to {path}: {e}")
            return None
        model_store(self.viewer).set(self.trained)  # its label now names the file
        show_info(f"Model saved to {saved}")
        return saved

    def resume_from(self, path: str | None = None) -> TrainedModel | None:
        """Load a model file to continue training (same normalization and architecture)."""
        loaded = open_model_file(self, "Resume from model", path, "Train VAE")
        if loaded is None:
            return None
        path, trained = loaded
        self._set_resume(trained, f"Resuming {path} at step {trained.step} "
                                  f"({len(trained.channel_names)} channels: {', '.join(trained.channel_names)})",
                         model_config=asdict(trained.model.config), critic=trained.critic_config,
                         train=trained.train_config)
        return trained

    def clear_resume(self) -> None:
        # a new model: no setting of the resumed one's is kept
        self._set_resume(None, "New model", critic=None)

    def _set_resume(self, trained: TrainedModel | None, label: str, **values) -> None:
        """Resume ``trained`` (None: a new model): its settings in the form, its architecture locked."""
        self.resume = trained
        self.form.set_values(**values)
        self.form.set_architecture_locked(trained is not None)
        self.resume_label.setText(label)
        self._update_buttons(self.status.state)
        self.estimate.schedule()  # the model's channels and architecture, or the form's
