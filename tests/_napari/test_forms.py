"""The magicgui parameter forms: engine defaults shown exactly, values back as config objects."""

from __future__ import annotations

import pytest

from napari_imc_vae._napari.normalization_form import NormalizationForm
from napari_imc_vae._napari.train_form import TrainForm
from napari_imc_vae.engine.model.critic import CriticConfig
from napari_imc_vae.engine.model.vae import ModelConfig
from napari_imc_vae.engine.training.trainer import TrainConfig
from napari_imc_vae.preprocessing import DEFAULT_NORMALIZATION, NormalizationParams


@pytest.fixture
def form(qapp):
    return TrainForm(DEFAULT_NORMALIZATION, ["cpu"])


def test_defaults_are_the_engines_to_the_last_digit(form):
    assert form.critic_config() == CriticConfig()  # kld_scale 0.001 not rounded to 0.00
    mc = ModelConfig(in_channels=1)
    assert form.model_config() == {"patch_size": mc.patch_size, "latent_dim": mc.latent_dim,
                                   "width": mc.width, "depth": mc.depth, "arch": mc.arch}
    tc, default = form.train_config(), TrainConfig()
    assert (tc.steps, tc.batch_size, tc.lr, tc.seed, tc.device) == (
        default.steps, default.batch_size, default.lr, default.seed, "auto")
    assert form.normalization() == DEFAULT_NORMALIZATION
    assert form.device.choices == ("auto", "cpu")


def test_a_models_settings_shown_and_locked(form):
    critic = CriticConfig(cosine_weight=0.25, gradient_weight=1.0, kld_scale=0.0005,
                          free_bits=1.5, perm_loss_scale=0.0)
    form.set_values(model_config={"patch_size": 16, "latent_dim": 12, "width": 96, "depth": 3,
                                  "arch": "conv", "in_channels": 5},
                    critic=critic, train=TrainConfig(batch_size=64, lr=3e-4))
    assert form.critic_config() == critic
    # a setting without a box (the KL target) is kept for the resumed model, dropped for a new one
    form.set_values(critic=CriticConfig(kl_target=40.0))
    assert form.critic_config().kl_target == 40.0
    form.set_values(critic=None)
    assert form.critic_config().kl_target == 0.0
    form.set_values(critic=critic)
    assert form.model_config() == {"patch_size": 16, "latent_dim": 12, "width": 96, "depth": 3,
                                   "arch": "conv"}
    assert form.batch.value == 64 and form.lr.value == pytest.approx(3e-4)
    form.set_architecture_locked(True)
    assert not any(w.enabled for w in (form.patch, form.latent, form.hidden_width, form.depth,
                                       form.arch, form.normalization_form))
    assert form.steps.enabled and form.lr.enabled  # training settings stay editable
    form.set_architecture_locked(False)
    assert form.patch.enabled and form.normalization_form.enabled


def test_advanced_settings_hidden_until_asked(form):
    form.native.show()
    assert not form.advanced.visible
    form.show_advanced.value = True
    assert form.advanced.visible


def test_normalization_form_skips_unchecked_steps(qapp):
    norm = NormalizationForm("Normalization", NormalizationParams(
        hot_pixel_threshold=None, arcsinh_cofactor=1.0, clip_percentile=99.0, zscore=False))
    assert not norm.hot_threshold.enabled and norm.cofactor.enabled
    assert norm.params() == NormalizationParams(hot_pixel_threshold=None, arcsinh_cofactor=1.0,
                                                clip_percentile=99.0, zscore=False)
    norm.hot_on.value = True
    norm.arcsinh_on.value = False
    assert norm.hot_threshold.enabled and not norm.cofactor.enabled
    assert norm.params().hot_pixel_threshold == 50.0 and norm.params().arcsinh_cofactor is None
