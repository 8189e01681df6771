"""The training loop: learns, reproducible, stop(), best state, resume, clear errors."""

import math

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from napari_imc_vae.engine.model.critic import CriticConfig
from napari_imc_vae.engine.data.patches import PatchSampler
from napari_imc_vae.engine.device import available_devices, resolve_device
from napari_imc_vae.engine.model.vae import ModelConfig, PatchVAE
from napari_imc_vae.engine.training.trainer import TrainConfig, Trainer, TrainingError, TrainProgress


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
    trainer = make_trainer(steps=120, val_every=60, log_every=1)
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
    trainer = make_trainer(steps=40, warmup_steps=4, log_every=1)
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
    trainer = make_trainer(steps=500, log_every=1)
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
    first = make_trainer(steps=10, log_every=1)
    r1 = first.fit()
    state = first.optimizer.state_dict()
    assert all(int(s["step"]) == 10 for s in state["state"].values())
    resumed = Trainer(r1.model, first.sampler, CriticConfig(),
                      TrainConfig(steps=6, batch_size=32, device="cpu", val_every=100, max_val_patches=64,
                                  log_every=1),
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
                                              ("val_fraction", 1.0), ("val_every", 0),
                                              ("log_every", 0)])
def test_bad_train_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field}"):
        TrainConfig(**{field: value})


# reads every log_every steps, no per-step host sync (issue 11) -------------------------------------
class HostSyncCounter(TorchDispatchMode):
    """Counts reads of tensor values by the host: ``.item()``, ``float()``, ``bool()`` and ``int()``
    of a tensor all dispatch ``aten._local_scalar_dense``; ``.tolist()``, ``.numpy()`` and
    ``.cpu()`` bypass the dispatcher and are counted by wrappers. On a GPU each is a sync."""

    def __init__(self, monkeypatch):
        super().__init__()
        self.count = 0
        for name in ("tolist", "numpy", "cpu"):
            monkeypatch.setattr(torch.Tensor, name, self._counting(getattr(torch.Tensor, name)))

    def _counting(self, method):
        def wrapper(tensor, *args, **kwargs):
            self.count += 1
            return method(tensor, *args, **kwargs)
        return wrapper

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def count_step_syncs(monkeypatch, steps: int, log_every: int) -> tuple[int, list[int]]:
    """Host syncs of ``steps`` training steps outside validation, and the steps reported."""
    trainer = make_trainer(steps=steps, log_every=log_every, val_every=10**6)
    validate = trainer.validate
    counter = HostSyncCounter(monkeypatch)
    in_validation = []

    def uncounted_validate():
        before = counter.count
        try:
            return validate()
        finally:
            in_validation.append(counter.count - before)

    monkeypatch.setattr(trainer, "validate", uncounted_validate)
    reports = []
    with counter:
        trainer.fit(lambda p: reports.append(p.run_step))
    monkeypatch.undo()
    assert in_validation, "the run ends with a validation"
    return counter.count - sum(in_validation), reports


def test_one_host_sync_per_log_window_over_100_steps(monkeypatch):
    syncs, reports = count_step_syncs(monkeypatch, 100, log_every=25)
    assert reports == [25, 50, 75, 100]
    assert syncs == 4
    # the counter sees per-step reads: reading every step shows 100 (the old loop read 2 per step)
    syncs, reports = count_step_syncs(monkeypatch, 100, log_every=1)
    assert syncs == 100 and len(reports) == 100


def test_reads_in_windows_keep_every_step_and_report_window_means():
    reports = []
    sparse = make_trainer(steps=45, log_every=10, val_every=20, seed=2).fit(reports.append)
    dense = make_trainer(steps=45, log_every=1, val_every=20, seed=2).fit()
    # reads at every 10th step, at validations (20, 40) and at the end; the same training
    assert [r.run_step for r in reports] == [10, 20, 30, 40, 45]
    assert [r.step for r in reports if r.validation is not None] == [20, 40, 45]
    for a, b in zip(sparse.model.state_dict().values(), dense.model.state_dict().values()):
        assert torch.equal(a, b)
    # the history still has every step; each report carries the means of its window
    assert sparse.history == dense.history and len(sparse.history) == 45
    for report, lo in zip(reports, [0, 10, 20, 30, 40]):
        window = dense.history[lo:report.run_step]
        for key in ("loss", "mse", "perm_loss", "grad_norm"):
            assert report.metrics[key] == pytest.approx(np.mean([h[key] for h in window]), rel=1e-6), key
        assert report.metrics["step"] == report.step and report.metrics["lr"] == window[-1]["lr"]


def test_stop_between_reads_ends_before_the_next_step():
    trainer = make_trainer(steps=500, log_every=10)
    sample_views = trainer.sampler.sample_views
    calls = []

    def sample_then_stop(*args, **kwargs):  # as if Stop were pressed during step 13
        calls.append(1)
        if len(calls) == 13:
            trainer.stop()
        return sample_views(*args, **kwargs)

    trainer.sampler.sample_views = sample_then_stop
    reports = []
    result = trainer.fit(reports.append)
    assert result.stopped and result.step == 13 and len(calls) == 13
    assert [r.run_step for r in reports] == [10, 13] and reports[-1].validation is not None
    assert [v["step"] for v in result.validation_history] == [13.0]
