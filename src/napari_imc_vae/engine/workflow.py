"""The user-level steps shared by the command line and the napari widgets.

``TrainingRun`` normalizes images, builds (or resumes) a model and trains it with a callback
and ``stop()``; ``apply_model`` reconstructs a whole image with a trained model. The quality
report is :func:`napari_imc_vae.engine.quality.evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, replace

import numpy as np

from napari_imc_vae.engine.checkpoint import TrainedModel
from napari_imc_vae.engine.critic import CriticConfig
from napari_imc_vae.engine.data import PatchSampler
from napari_imc_vae.engine.device import resolve_device
from napari_imc_vae.engine.model import ModelConfig, PatchVAE
from napari_imc_vae.engine.trainer import Trainer, TrainConfig, TrainProgress
from napari_imc_vae.io import ImcImage
from napari_imc_vae.preprocessing import DEFAULT_NORMALIZATION, NormalizationParams, Normalizer



def _as_images(images: ImcImage | Sequence[ImcImage]) -> list[ImcImage]:
    if isinstance(images, ImcImage):
        return [images]
    images = list(images)
    if not images or not all(isinstance(im, ImcImage) for im in images):
        raise TypeError(f"images must be an ImcImage or a non-empty list of them, got {images!r:.80}")
    return images


class TrainingRun:
    """One training run: fit (or reuse) the normalizer, build (or resume) the model, train.

    Parameters
    ----------
    images : ImcImage or list of ImcImage
        Raw images of one panel (channels matched by metal/name across images).
    normalization : NormalizationParams, optional
        Ignored when resuming (the model's own normalizer is reused).
    model_config : dict, optional
        ModelConfig fields other than ``in_channels`` (patch_size, latent_dim, width, depth...).
    critic_config, train_config : optional
    resume : TrainedModel, optional
        Continue this model: same normalizer, weights, optimizer state and step count.
    """

    def __init__(
        self,
        images: ImcImage | Sequence[ImcImage],
        *,
        normalization: NormalizationParams | None = None,
        model_config: dict | None = None,
        critic_config: CriticConfig | None = None,
        train_config: TrainConfig | None = None,
        resume: TrainedModel | None = None,
    ):
        images = _as_images(images)
        self.train_config = train_config or TrainConfig()
        self.critic_config = critic_config or (resume.critic_config if resume else CriticConfig())
        self.device = resolve_device(self.train_config.device)
        if resume is not None:
            self.normalizer = resume.normalizer
            for im in images:  # fail early, naming missing channels; extra ones are left out
                resume.match_channels(im)
            config = resume.model.config
            if model_config:
                changed = {k: v for k, v in model_config.items() if getattr(config, k) != v}
                if changed:
                    raise ValueError(f"cannot change the architecture when resuming: {changed}")
            self.model = resume.model
        else:
            params = normalization or DEFAULT_NORMALIZATION
            self.normalizer = Normalizer.fit(images, **asdict(params))
            options = dict(model_config or {})
            options.pop("in_channels", None)
            config = ModelConfig(in_channels=self.normalizer.n_channels, **options)
            import torch

            torch.manual_seed(self.train_config.seed)
            self.model = PatchVAE(config)
        self.resume = resume
        normalized = [self.normalizer(im) for im in images]
        self.sampler = PatchSampler(
            normalized, config.patch_size, val_fraction=self.train_config.val_fraction, device=self.device
        )
        self.trainer = Trainer(
            self.model,
            self.sampler,
            self.critic_config,
            replace(self.train_config),
            step=resume.step if resume else 0,
            optimizer_state=resume.optimizer_state if resume else None,
            history=resume.history if resume else None,
        )

    def stop(self) -> None:
        """End training after the current step; :meth:`run` then returns the model so far."""
        self.trainer.stop()

    def run(self, on_progress: Callable[[TrainProgress], None] | None = None) -> tuple[TrainedModel, bool]:
        """Train; returns the trained model (best validation state) and whether it was stopped."""
        result = self.trainer.fit(on_progress)
        previous = self.resume.validation_history if self.resume else []
        trained = TrainedModel(
            model=result.model,
            normalizer=self.normalizer,
            critic_config=self.critic_config,
            train_config=self.train_config,
            step=result.step,
            optimizer_state=self.trainer.optimizer.state_dict(),
            history=result.history,
            validation_history=list(previous) + result.validation_history,
        )
        return trained, result.stopped


def ordered_data(trained: TrainedModel, image: ImcImage) -> np.ndarray:
    """The image's data (C, Y, X) in the model's channel order (matched by metal, then name).

    Channels the model does not know are left out (``trained.match_channels(image).ignored``).
    """
    return trained.match_channels(image).take(image.data)


def apply_model(
    trained: TrainedModel,
    image: ImcImage,
    *,
    stride: int | None = None,
    batch_size: int = 2048,
    device: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    out=None,
    on_rows: Callable[[int, np.ndarray], None] | None = None,
):
    """Reconstruct a whole image with a trained model (channels matched by metal, then name).

    ``stride``, ``batch_size``, ``device``, ``on_progress``, ``out`` and ``on_rows`` are
    those of :func:`~napari_imc_vae.engine.inference.reconstruct_image`.

    Returns
    -------
    Reconstruction
        See :func:`napari_imc_vae.engine.inference.reconstruct_image`; its channels are the
        model's, in the model's order. Image channels the model does not know are left out
        (``trained.match_channels(image).ignored`` names them).

    Raises
    ------
    ChannelMismatchError
        When the image lacks channels of the model's panel; names missing and extra channels.
    """
    from napari_imc_vae.engine.inference import reconstruct_image

    data = ordered_data(trained, image)
    dev = resolve_device(device) if device is not None else None
    return reconstruct_image(
        trained.model, data, trained.normalizer, stride=stride, batch_size=batch_size,
        device=dev, on_progress=on_progress, out=out, on_rows=on_rows,
    )


__all__ = ["DEFAULT_NORMALIZATION", "TrainingRun", "apply_model", "ordered_data", "PatchVAE"]
