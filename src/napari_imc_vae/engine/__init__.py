"""The VAE engine: torch and numpy only (no napari, no Qt). Rooms: docs/architecture.md.

Importing ``napari_imc_vae.engine`` loads nothing heavy: each name below is imported on first use,
so that a numpy-only module (``engine.defaults``, ``engine.apply.tiling``, ``engine.data.cohort``) does not
pull in torch.

Public API
----------
train_model, TrainSettings, StopRequest
    The training use case (CLI ``train`` and the Train widget): one settings object, one merge
    rule on resume, budget, validation policy, report, GPU handed back.
apply_to_image, ApplySettings
    The applying use case (CLI ``reconstruct``/``quality`` and the Reconstruct widget).
PatchVAE, ModelConfig
    The D4-invariant patch VAE (frame selector + MLP or conv encoder/decoder, linear bottleneck).
CriticConfig (and ``engine.model.critic.critic``)
    MSE + cosine + gradient + free-bits KL + permutation consistency, each term reported.
TrainConfig, Trainer, TrainProgress
    The training loop with callbacks and ``stop()``; DDP under ``torchrun``.
TrainingRun, apply_model
    The building blocks of the use cases: normalize → train (or resume); whole-image reconstruction.
TrainedModel
    A model file: weights, configs, channels, normalizer, optimizer state, history.
reconstruct_image, Reconstruction
    Tiled, memory-bounded whole-image reconstruction.
evaluate, QualityReport
    The quality report of DESIGN §4 against PCA-k and the mean predictor.
"""

from napari_imc_vae._lazy import lazy_names

_EXPORTS = {
    "ChannelMismatchError": "model_file.checkpoint", "ModelFileError": "model_file.checkpoint",
    "TrainedModel": "model_file.checkpoint",
    "CriticConfig": "model.critic",
    "available_devices": "device", "resolve_device": "device",
    "Reconstruction": "apply.inference", "reconstruct_image": "apply.inference",
    "ModelConfig": "model.vae", "PatchVAE": "model.vae",
    "QualityReport": "quality.report", "evaluate": "quality.evaluate",
    "TrainConfig": "training.trainer", "Trainer": "training.trainer", "TrainingError": "training.trainer",
    "TrainProgress": "training.trainer",
    "DEFAULT_NORMALIZATION": "training.run", "TrainingRun": "training.run", "apply_model": "apply.inference",
    "ApplySettings": "apply.use_case", "apply_to_image": "apply.use_case",
    "StopRequest": "training", "TrainSettings": "training", "train_model": "training",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_names(__name__, _EXPORTS)
