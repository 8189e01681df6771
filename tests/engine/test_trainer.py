"""The training loop: learns, reproducible, stop(), best state, resume, clear errors."""

import math

import numpy as np
import pytest
import torch

from napari_imc_vae.engine.critic import CriticConfig
from napari_imc_vae.engine.data import PatchSampler
from napari_imc_vae.engine.device import available_devices, resolve_device
from napari_imc_vae.engine.model import ModelConfig, PatchVAE
from napari_imc_vae.engine.trainer import TrainConfig, Trainer, TrainingError, TrainProgress


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def smooth_images(n: int = 2, size: int = 32, channels: int = 3, seed: int = 0) -> list[np.ndarray]:
    """Blobs: smooth, structured, roughly zero mean and unit variance like normalized data."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    out = []
    for _ in range(n):
        img = np.zeros((channels, size, size), np.float32)
        for _ in range(12):
            cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(1.5, 4)
            img += rng.normal(size=(channels, 1, 1)) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        out.append(((img - img.mean()) / img.std()).astype(np.float32))
    return out


def make_trainer(steps=40, seed=0, images=None, model_seed=0, **train_kw) -> Trainer:
    images = images if images is not None else smooth_images()
    sampler = PatchSampler(images, 4, device="cpu")
    torch.manual_seed(model_seed)
    model = PatchVAE(ModelConfig(in_channels=images[0].shape[0], patch_size=4, latent_dim=4, width=32, depth=1))
    cfg = dict(steps=steps, batch_size=32, lr=3e-3, warmup_steps=5, seed=seed, device="cpu",
               val_every=20, max_val_patches=64)
    cfg.update(train_kw)
    return Trainer(model, sampler, CriticConfig(), TrainConfig(**cfg))


def test_loss_decreases_and_progress_is_reported():
    trainer = make_trainer(steps=120, val_every=60)
    reports: list[TrainProgress] = []
    result = trainer.fit(reports.append)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 120 and result.step == 120 and not result.stopped
    assert np.mean(losses[-15:]) < 0.8 * np.mean(losses[:15])
    # one report per step, counting up, with every logged term
    assert [r.step for r in reports] == list(range(1, 121))
    assert all(r.run_steps == 120 and r.device == "cpu" for r in reports)
    assert {"loss", "mse", "cosine_loss", "gradient_loss", "kld_loss", "kld_floored", "perm_loss"} <= set(
        reports[0].metrics)
    # validation on steps 60 and 120, with the quality measures of DESIGN §4
    val_steps = [r.step for r in reports if r.validation is not None]
    assert val_steps == [60, 120]
    v = reports[-1].validation
    for key in ("val_loss", "r2", "sharpness_ratio", "diversity_ratio", "active_units", "perm_accuracy"):
        assert math.isfinite(v[key]), key
    assert result.model.training is False


def test_learning_rate_warms_up_then_decays():
    trainer = make_trainer(steps=40, warmup_steps=4)
    result = trainer.fit()
    lrs = [h["lr"] for h in result.history]
    assert lrs[0] < lrs[3] == pytest.approx(3e-3)
    assert lrs[-1] < 0.1 * 3e-3 and lrs[-1] > 0


def test_seeded_runs_are_reproducible_on_cpu():
    a = make_trainer(steps=15, seed=4).fit()
    b = make_trainer(steps=15, seed=4).fit()
    assert a.history == b.history
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    c = make_trainer(steps=15, seed=5).fit()
    assert c.history != a.history


def test_stop_from_the_callback_ends_within_one_step():
    trainer = make_trainer(steps=500)
    seen = []

    def on_progress(p):
        seen.append(p.run_step)
        if p.run_step == 3:
            trainer.stop()

    result = trainer.fit(on_progress)
    assert result.stopped and trainer.stopped
    assert seen == [1, 2, 3] and result.step == 3 and len(result.history) == 3
    # the model is usable: eval mode, finite reconstructions
    x = torch.from_numpy(smooth_images(1)[0][:, :4, :4])[None]
    recon, mu = result.model.reconstruct(x)
    assert not result.model.training
    assert torch.isfinite(recon).all() and torch.isfinite(mu).all()


def test_best_validation_state_is_kept():
    trainer = make_trainer(steps=14, val_every=1)
    snapshots, losses = {}, {}

    def on_progress(p):
        snapshots[p.step] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        losses[p.step] = p.validation["val_loss"]
        if p.step == 6:  # wreck the weights: every later validation is worse
            with torch.no_grad():
                for param in trainer.model.parameters():
                    param.add_(torch.randn_like(param) * 2.0)

    result = trainer.fit(on_progress)
    best = min(losses, key=losses.get)
    assert best < 14, "the test needs a best state before the last step"
    assert result.best_validation["val_loss"] == losses[best] and result.best_validation["step"] == best
    final = result.model.state_dict()
    assert all(torch.equal(final[k], snapshots[best][k]) for k in final)
    assert not all(torch.equal(final[k], snapshots[14][k]) for k in final)
    assert len(result.validation_history) == 14


def test_resume_continues_step_count_and_optimizer_state():
    first = make_trainer(steps=10)
    r1 = first.fit()
    state = first.optimizer.state_dict()
    assert all(int(s["step"]) == 10 for s in state["state"].values())
    resumed = Trainer(r1.model, first.sampler, CriticConfig(),
                      TrainConfig(steps=6, batch_size=32, device="cpu", val_every=100, max_val_patches=64),
                      step=r1.step, optimizer_state=state, history=r1.history)
    # the optimizer's moments are carried over, not restarted
    loaded = resumed.optimizer.state_dict()["state"]
    for key, s in state["state"].items():
        assert torch.equal(loaded[key]["exp_avg"], s["exp_avg"])
    r2 = resumed.fit()
    assert r2.step == 16 and len(r2.history) == 16
    assert [h["step"] for h in r2.history[-6:]] == [11.0, 12.0, 13.0, 14.0, 15.0, 16.0]
    assert all(int(s["step"]) == 16 for s in resumed.optimizer.state_dict()["state"].values())


def test_unknown_device_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"available: auto, .*cpu") as e:
        make_trainer(device="tpu")
    assert "'tpu'" in str(e.value)
    with pytest.raises(ValueError, match="not available"):
        resolve_device("cuda:97")
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device("CPU ") == torch.device("cpu")
    assert available_devices()[-1] == "cpu"
    assert resolve_device("auto") == torch.device(available_devices()[0])


def test_non_finite_loss_is_a_training_error():
    images = smooth_images()
    images[0] = images[0] * np.float32(1e30)  # squares overflow float32
    with pytest.raises(TrainingError, match=r"the loss became (inf|nan) at step 1; try a lower learning rate"):
        make_trainer(steps=5, images=images).fit()


def test_huge_learning_rate_is_a_training_error():
    trainer = make_trainer(steps=200, lr=1e30, warmup_steps=1, grad_clip=1e30)
    with pytest.raises(TrainingError, match="lower learning rate"):
        trainer.fit()
    assert trainer.step < 200


def test_infinite_pixels_are_excluded_not_fatal():
    images = smooth_images()
    images[0][1, 5:9, 5:9] = np.inf
    images[1][0, 2, 2] = np.nan
    result = make_trainer(steps=10, images=images, val_fraction=0.3).fit()
    assert all(math.isfinite(h["loss"]) for h in result.history)


@pytest.mark.parametrize(("field", "value"), [("steps", 0), ("batch_size", -1), ("lr", 0.0), ("precision", "fp8"),
                                              ("val_fraction", 1.0), ("val_every", 0)])
def test_bad_train_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field}"):
        TrainConfig(**{field: value})
