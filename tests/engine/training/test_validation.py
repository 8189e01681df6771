"""Validation during training measures as the quality report does, on real IMC data with NaN pixels."""

import contextlib
import math

import numpy as np
import pytest
import torch

from napari_imc_vae.engine.data.patches import PatchSampler
from napari_imc_vae.engine.defaults import PERM_PATCHES
from napari_imc_vae.engine.model.critic import CriticConfig
from napari_imc_vae.engine.model.vae import ModelConfig, PatchVAE
from napari_imc_vae.engine.quality.evaluate import evaluate
from napari_imc_vae.engine.quality.measures import finite_patches
from napari_imc_vae.engine.training.trainer import TrainConfig, Trainer
from napari_imc_vae.engine.training.validation import validate_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_validation_figures_are_the_reports_on_the_same_patches(imc_normalized):
    train, _ = imc_normalized
    images = [im.copy() for im in train]
    for im in images:  # scattered NaN and Inf pixels: some validation patches touch one, most do not
        im[0].reshape(-1)[::997] = np.nan
        im[3].reshape(-1)[500::1499] = np.inf
    sampler = PatchSampler(images, 8, val_fraction=0.3, device="cpu")
    torch.manual_seed(0)
    model = PatchVAE(ModelConfig(in_channels=5, patch_size=8, latent_dim=8, width=32, depth=1))
    config = TrainConfig(steps=5, batch_size=32, device="cpu", precision="fp32", val_every=5, max_val_patches=2048)
    trainer = Trainer(model, sampler, CriticConfig(), config)
    trainer.fit()
    validation = trainer.validate()

    patches = sampler.validation_patches(config.max_val_patches)
    left_out = int((~finite_patches(patches)).sum())
    assert 0 < left_out < len(patches) // 2
    with torch.no_grad():  # the reconstruction validation made: eval mode, mu, fp32, NaN read as 0
        out = model.eval()(torch.nan_to_num(patches, nan=0.0, posinf=0.0, neginf=0.0), sample=False)
    report = evaluate(model, patches, predictions=(out.recon, out.mu), perm_patches=PERM_PATCHES)
    assert report.n_skipped_nonfinite == left_out and report.n_val == len(patches) - left_out
    for key in ("r2", "sharpness_ratio", "diversity_ratio", "active_units", "perm_accuracy", "perm_left_out"):
        assert validation[key] == getattr(report.model, key), key
        assert math.isfinite(validation[key]), key
    assert math.isfinite(validation["val_loss"])
    assert validation["n_skipped_nonfinite"] == left_out


def test_every_patch_touching_nan_gives_nan_measures_not_an_error(imc_normalized):
    train, _ = imc_normalized
    images = [im.copy() for im in train]
    for im in images:  # a NaN every 4 pixels both ways: every 8×8 patch holds four
        im[0, ::4, ::4] = np.nan
    sampler = PatchSampler(images, 8, val_fraction=0.3, device="cpu")
    n = len(sampler.validation_patches(256))
    assert n > 0 and not bool(finite_patches(sampler.validation_patches(256)).any())
    torch.manual_seed(0)
    model = PatchVAE(ModelConfig(in_channels=5, patch_size=8, latent_dim=8, width=32, depth=1))
    validation = validate_model(model, sampler, CriticConfig(), max_patches=256, autocast=contextlib.nullcontext)
    for key in ("r2", "sharpness_ratio", "diversity_ratio", "perm_accuracy"):
        assert math.isnan(validation[key]), key
    assert validation["active_units"] == 0 and validation["perm_left_out"] == 0
    assert validation["n_skipped_nonfinite"] == n
    assert math.isfinite(validation["val_loss"])  # the critic masks the NaN pixels, as in training
