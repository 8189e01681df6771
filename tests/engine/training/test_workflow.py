"""TrainingRun and apply_model: defaults, resume through a file, bad input with clear results."""

import math

import numpy as np
import pytest
import torch

from napari_imc_vae.engine.model_file.checkpoint import ChannelMismatchError, TrainedModel
from napari_imc_vae.engine.model.critic import CriticConfig
from napari_imc_vae.engine.data.patches import PatchSizeError
from napari_imc_vae.engine.training.trainer import TrainConfig
from napari_imc_vae.engine.apply.inference import apply_model
from napari_imc_vae.engine.training.run import DEFAULT_NORMALIZATION, TrainingRun
from napari_imc_vae.io import ImcImage

NAMES = ["CD3", "CD8", "Ki67"]
TINY = {"patch_size": 4, "latent_dim": 4, "width": 32, "depth": 1}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def image(seed=0, size=(24, 24), names=NAMES, data=None) -> ImcImage:
    rng = np.random.default_rng(seed)
    if data is None:
        data = rng.gamma(1.0, 10.0, size=(len(names), *size)).astype(np.float32)
    return ImcImage(data, list(names), source=f"img{seed}.tiff")


def config(steps=6, **kw) -> TrainConfig:
    return TrainConfig(**{"steps": steps, "batch_size": 16, "device": "cpu", "val_every": 3,
                          "max_val_patches": 32, **kw})


def test_defaults_normalize_and_build_the_model():
    run = TrainingRun([image(0), image(1)], model_config=TINY, train_config=config())
    assert run.normalizer.params == DEFAULT_NORMALIZATION
    assert DEFAULT_NORMALIZATION.hot_pixel_threshold == 50 and DEFAULT_NORMALIZATION.arcsinh_cofactor == 5
    assert run.model.config.in_channels == 3 and run.model.config.patch_size == 4
    assert run.critic_config == CriticConfig()
    trained, stopped = run.run()
    assert not stopped and trained.step == 6 and trained.channel_names == NAMES
    assert len(trained.validation_history) == 2


def test_resume_from_a_file_continues_steps_and_optimizer(tmp_path):
    first, _ = TrainingRun([image(0)], model_config=TINY, train_config=config(steps=5)).run()
    path = first.save(tmp_path / "m.pt")
    loaded = TrainedModel.load(path)
    run = TrainingRun([image(1)], train_config=config(steps=4), resume=loaded)
    assert run.normalizer is loaded.normalizer  # the model's own normalization is kept
    exp_avg = {k: s["exp_avg"].clone() for k, s in run.trainer.optimizer.state_dict()["state"].items()}
    saved = first.optimizer_state["state"]
    assert all(torch.equal(exp_avg[k], saved[k]["exp_avg"]) for k in saved)
    second, _ = run.run()
    assert second.step == 5 + 4 and len(second.history) == 9
    assert [h["step"] for h in second.history] == [float(s) for s in range(1, 10)]
    assert all(int(s["step"]) == 9 for s in second.optimizer_state["state"].values())
    assert len(second.validation_history) == len(first.validation_history) + 2


def test_resume_refuses_another_architecture_and_another_panel(tmp_path):
    first, _ = TrainingRun([image(0)], model_config=TINY, train_config=config(steps=2)).run()
    with pytest.raises(ValueError, match="cannot change the architecture.*latent_dim"):
        TrainingRun([image(0)], model_config={"latent_dim": 8}, train_config=config(), resume=first)
    # same values are fine
    TrainingRun([image(0)], model_config={"latent_dim": 4}, train_config=config(), resume=first)
    with pytest.raises(ChannelMismatchError, match=r"missing Ki67; extra CD20 "):
        TrainingRun([image(0, names=["CD3", "CD8", "CD20"])], train_config=config(), resume=first)


def test_a_model_fitted_on_panels_with_an_extra_channel_applies_to_either():
    """Pooled fitting drops a channel only some images have; applying the model does the same."""
    wide_names = ["CD3", "CD20", "CD8", "Ki67"]
    wide = image(1, names=wide_names)
    trained, _ = TrainingRun([image(0), wide], model_config=TINY, train_config=config(steps=3)).run()
    assert trained.channel_names == NAMES and trained.model.config.in_channels == 3
    match = trained.match_channels(wide)
    assert match.index == (0, 2, 3) and match.ignored == ("CD20",)
    rec = apply_model(trained, wide, stride=2)
    assert rec.raw.shape == (3, 24, 24)
    narrow = ImcImage(wide.data[[0, 2, 3]], NAMES, source="narrow.tiff")
    np.testing.assert_array_equal(rec.raw, apply_model(trained, narrow, stride=2).raw)
    # the same channels in another order give the same reconstruction
    shuffled = ImcImage(wide.data[[3, 1, 0, 2]], [wide_names[i] for i in (3, 1, 0, 2)], source="s.tiff")
    np.testing.assert_array_equal(apply_model(trained, shuffled, stride=2).raw, rec.raw)
    # resuming on the image with the extra channel trains on the model's channels
    resumed, _ = TrainingRun([wide], train_config=config(steps=2), resume=trained).run()
    assert resumed.step == 5 and resumed.channel_names == NAMES
    # a channel the model needs is missing: named, with the extra one and the panel
    lacking = image(2, names=["CD3", "CD20", "Ki67"])
    with pytest.raises(ChannelMismatchError,
                       match=r"missing CD8; extra CD20 \(expected 3 channels: CD3, CD8, Ki67; "):
        apply_model(trained, lacking)
    with pytest.raises(ChannelMismatchError, match=r"missing CD8; "):
        TrainingRun([lacking], train_config=config(), resume=trained)


def test_stop_during_a_run_returns_the_model_so_far():
    run = TrainingRun([image(0)], model_config=TINY, train_config=config(steps=1000, log_every=1))
    trained, stopped = run.run(lambda p: run.stop() if p.run_step == 2 else None)
    assert stopped and trained.step == 2
    rec = apply_model(trained, image(3, size=(9, 9)))
    assert np.isfinite(rec.raw).all()


def test_apply_model_shapes_and_units():
    trained, _ = TrainingRun([image(0)], model_config=TINY, train_config=config(steps=3)).run()
    img = image(4, size=(11, 17))
    rec = apply_model(trained, img, stride=2)
    assert rec.raw.shape == rec.normalized.shape == rec.channel_error.shape == (3, 11, 17)
    assert rec.error.shape == (11, 17) and rec.latent.shape[0] == 4
    factors = np.asarray(trained.rate_factors, dtype=np.float32)[:, None, None]  # the model's rate calibration
    expected = np.maximum(trained.normalizer.inverse(rec.normalized) * factors, 0)
    np.testing.assert_allclose(rec.raw, expected, rtol=1e-5, atol=1e-4)
    # per channel, the squared error in normalized units; the map, in noise SDs of the counts as read
    np.testing.assert_allclose(rec.channel_error, (rec.normalized - trained.normalizer(img.data)) ** 2,
                               rtol=1e-4, atol=1e-5)
    from napari_imc_vae.engine.apply.error_unit import count_residual, dead_area_error
    from napari_imc_vae.engine.apply.multiscale_error import multiscale_error, pooling_inflation

    residual = count_residual(img.data, rec.raw, rec.dispersion, scale=rec.noise_scale)
    np.testing.assert_allclose(rec.residual, residual, rtol=1e-5, atol=1e-5)
    expected = multiscale_error(residual, dead_area_error(img.data, scale=rec.noise_scale),
                                inflation=pooling_inflation(residual, rec.raw))
    np.testing.assert_allclose(rec.error, expected, rtol=1e-5, atol=1e-5)
    # any image of at least 1×1 px reconstructs, even below the patch size
    assert apply_model(trained, image(5, size=(1, 1))).raw.shape == (3, 1, 1)


def test_image_smaller_than_a_patch_is_a_clear_error():
    with pytest.raises(PatchSizeError, match="patch size 8 is larger than every image"):
        TrainingRun([image(0, size=(6, 30))], model_config={**TINY, "patch_size": 8}, train_config=config())


def test_nan_pixels_train_with_finite_losses():
    img = image(0)
    img.data[1, 3:7, 2:9] = np.nan
    img.data[0, 20, 20] = np.inf
    trained, _ = TrainingRun([img], model_config=TINY, train_config=config(steps=6)).run()
    assert all(math.isfinite(h["loss"]) for h in trained.history)
    rec = apply_model(trained, img)
    assert np.isfinite(rec.raw).all()
    assert np.isnan(rec.channel_error[1, 4, 4]) and np.isfinite(rec.error[4, 4])


def test_a_constant_channel_trains_and_a_constant_image_is_refused():
    data = np.random.default_rng(1).poisson(4.0, (3, 20, 20)).astype(np.float32)
    data[1] = 7.0
    mixed = image(0, data=data)
    run = TrainingRun([mixed], model_config=TINY, train_config=config(steps=6))
    assert run.normalizer.constant == [False, True, False]
    trained, _ = run.run()
    assert all(math.isfinite(h["loss"]) for h in trained.history)
    rec = apply_model(trained, mixed)
    np.testing.assert_allclose(rec.raw[1], 7.0, rtol=1e-5)  # a constant channel maps back to its value
    flat = image(0, data=np.full((3, 20, 20), 7.0, np.float32))
    with pytest.raises(ValueError, match="is constant .* nothing to learn"):
        TrainingRun([flat], model_config=TINY, train_config=config(steps=6))


def test_bad_images_argument():
    with pytest.raises(TypeError, match="ImcImage"):
        TrainingRun([np.zeros((3, 10, 10))], train_config=config())
    with pytest.raises(TypeError, match="ImcImage"):
        TrainingRun([], train_config=config())
