"""On a CUDA GPU: the rank's device, training without host syncs between reads, bf16 autocast,
GPU memory reported and handed back, reconstruction matching the CPU. Skipped without a GPU;
``bench/gpu_check.sh`` runs them (``pytest -m cuda``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_imc_vae.engine.model.critic import CriticConfig
from napari_imc_vae.engine.data.patches import PatchSampler
from napari_imc_vae.engine.device import release_cuda_memory, resolve_device
from napari_imc_vae.engine.model.vae import ModelConfig, PatchVAE
from napari_imc_vae.engine.training.trainer import TrainConfig, Trainer
from test_trainer import smooth_images

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="no CUDA GPU here: bench/gpu_check.sh runs these on a GPU machine")]

GPU = torch.device("cuda", 0)


def gpu_trainer(steps: int, **kw) -> Trainer:
    sampler = PatchSampler(smooth_images(size=48, channels=5), 8, device=GPU)
    torch.manual_seed(0)
    model = PatchVAE(ModelConfig(in_channels=5, patch_size=8, latent_dim=8, width=64, depth=1))
    cfg = dict(steps=steps, batch_size=128, lr=3e-3, warmup_steps=5, device=str(GPU), val_every=10**6,
               max_val_patches=128)
    cfg.update(kw)
    return Trainer(model, sampler, CriticConfig(), TrainConfig(**cfg))


def test_auto_is_this_ranks_gpu(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert resolve_device("auto") == GPU == resolve_device("cuda")
    monkeypatch.setenv("LOCAL_RANK", str(torch.cuda.device_count()))
    with pytest.raises(ValueError, match="but the node has"):
        resolve_device("auto")


def test_no_host_sync_between_reads():
    """CUDA's own sync detector raises on any sync outside the reads and validation."""
    trainer = gpu_trainer(60, log_every=20)
    read, validate = trainer._read_window, trainer._record_validation  # the reads, and validation

    def allowed(fn):
        def wrapper(*args, **kwargs):
            torch.cuda.set_sync_debug_mode(0)
            try:
                return fn(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode("error")
        return wrapper

    gpu_trainer(30, log_every=10).fit()  # warm-up: lazy CUDA initialisation and caches may sync once
    trainer._read_window, trainer._record_validation = allowed(read), allowed(validate)
    reports = []
    torch.cuda.set_sync_debug_mode("error")
    try:
        result = trainer.fit(reports.append)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert result.step == 60 and [r.run_step for r in reports] == [20, 40, 60]


def test_trains_in_bf16_reports_and_hands_back_memory():
    torch.cuda.empty_cache()
    allocated, reserved = torch.cuda.memory_allocated(GPU), torch.cuda.memory_reserved(GPU)
    trainer = gpu_trainer(150, log_every=10, val_every=75)
    assert trainer.bf16  # "auto" on CUDA
    reports = []
    result = trainer.fit(reports.append)
    losses = [h["loss"] for h in result.history]
    assert np.mean(losses[-15:]) < 0.8 * np.mean(losses[:15])
    in_tensors, held, total = reports[-1].gpu_memory
    assert in_tensors > allocated and held >= in_tensors and total == torch.cuda.get_device_properties(GPU).total_memory
    model = result.model
    del trainer, result, reports
    assert release_cuda_memory(model)
    assert next(model.parameters()).device.type == "cpu"
    assert torch.cuda.memory_allocated(GPU) <= allocated + 1024 * 1024
    assert torch.cuda.memory_reserved(GPU) <= reserved + 8 * 1024 * 1024


def test_reconstruction_on_the_gpu_matches_the_cpu():
    from napari_imc_vae.engine.apply.inference import reconstruct_image

    torch.manual_seed(0)
    model = PatchVAE(ModelConfig(in_channels=5, patch_size=8, latent_dim=8, width=64, depth=1)).eval()
    image = smooth_images(1, size=64, channels=5)[0]
    cpu = reconstruct_image(model, image, None, device="cpu")
    gpu = reconstruct_image(model, image, None, device=GPU)
    np.testing.assert_allclose(gpu.normalized, cpu.normalized, rtol=1e-3, atol=1e-3)
