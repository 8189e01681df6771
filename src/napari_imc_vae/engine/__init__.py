"""The VAE engine: torch and numpy only (no napari, no Qt).

Public API
----------
PatchVAE, ModelConfig
    The D4-invariant patch VAE (frame selector + MLP or conv encoder/decoder, linear bottleneck).
CriticConfig, critic
    MSE + cosine + gradient + free-bits KL + permutation consistency, each term reported.
TrainConfig, Trainer, TrainProgress
    The training loop with callbacks and ``stop()``; DDP under ``torchrun``.
TrainingRun, apply_model
    Normalize → train (or resume) → model file; whole-image reconstruction by tiles.
TrainedModel
    A model file: weights, configs, channels, normalizer, optimizer state, history.
reconstruct_image, Reconstruction
    Tiled, memory-bounded whole-image reconstruction.
evaluate, QualityReport
    The quality report of DESIGN §4 against PCA-k and the mean predictor.
"""

from napari_imc_vae.engine.checkpoint import ChannelMismatchError, ModelFileError, TrainedModel
from napari_imc_vae.engine.critic import CriticConfig, critic
from napari_imc_vae.engine.device import available_devices, resolve_device
from napari_imc_vae.engine.inference import Reconstruction, reconstruct_image
from napari_imc_vae.engine.model import ModelConfig, PatchVAE
from napari_imc_vae.engine.quality import QualityReport, evaluate
from napari_imc_vae.engine.trainer import TrainConfig, Trainer, TrainingError, TrainProgress
from napari_imc_vae.engine.workflow import DEFAULT_NORMALIZATION, TrainingRun, apply_model

__all__ = [
    "DEFAULT_NORMALIZATION", "ChannelMismatchError", "CriticConfig", "ModelConfig", "ModelFileError",
    "PatchVAE", "QualityReport", "Reconstruction", "TrainConfig", "TrainedModel", "Trainer",
    "TrainingError", "TrainingRun", "TrainProgress", "apply_model", "available_devices", "critic",
    "evaluate", "reconstruct_image", "resolve_device",
]
