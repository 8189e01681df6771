"""Device per torchrun rank on a simulated 4-GPU node, and precision by CPU capability."""

import warnings

import pytest
import torch
from torch import nn

from napari_imc_vae.engine import device as device_module
from napari_imc_vae.engine.device import (
    available_devices,
    init_distributed,
    resolve_device,
    resolve_precision,
    wrap_distributed,
)


@pytest.fixture
def four_gpu_node(monkeypatch):
    """torch.cuda as it looks on a node with 4 GPUs; records set_device calls."""
    current = {"device": None}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: current.update(device=torch.device(d)))
    return current


@pytest.fixture
def ddp_made(monkeypatch):
    """What DistributedDataParallel was asked for (a recording stand-in; no process group)."""
    made = {}

    class RecordingDDP(nn.Module):
        def __init__(self, module, device_ids=None, output_device=None):
            super().__init__()
            made.update(device_ids=device_ids, output_device=output_device)

    monkeypatch.setattr(nn.parallel, "DistributedDataParallel", RecordingDDP)
    return made


def as_rank(monkeypatch, rank: int, world: int = 4) -> None:
    """The environment torchrun gives rank ``rank`` of a one-node job."""
    for name, value in (("LOCAL_RANK", rank), ("RANK", rank), ("WORLD_SIZE", world)):
        monkeypatch.setenv(name, str(value))


@pytest.mark.parametrize("rank", [0, 1, 2, 3])
def test_each_rank_of_a_4_gpu_node_takes_its_own_gpu(monkeypatch, four_gpu_node, ddp_made, rank):
    as_rank(monkeypatch, rank)
    assert available_devices()[:4] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert resolve_device("auto") == torch.device("cuda", rank)
    assert resolve_device("cuda") == torch.device("cuda", rank)
    assert resolve_device(" CUDA ") == torch.device("cuda", rank)
    assert resolve_device("cuda:2") == torch.device("cuda", 2)  # explicit: as written
    assert resolve_device("cpu") == torch.device("cpu")

    # joining the group: the rank's GPU becomes current before NCCL starts
    import torch.distributed as dist

    seen = {}

    def init_process_group(backend):
        seen.update(backend=backend, current=four_gpu_node["device"])

    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", init_process_group)
    monkeypatch.setattr(dist, "get_rank", lambda: rank)
    monkeypatch.setattr(dist, "get_world_size", lambda: 4)
    ctx = init_distributed(resolve_device("auto"))
    assert seen == {"backend": "nccl", "current": torch.device("cuda", rank)}
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main) == (rank, 4, rank, rank == 0)

    # DDP is told the rank's GPU, not cuda:0
    wrap_distributed(nn.Linear(2, 2), resolve_device("auto"))
    assert ddp_made == {"device_ids": [rank], "output_device": rank}


def test_more_ranks_than_gpus_is_an_error_naming_the_count(monkeypatch, four_gpu_node):
    as_rank(monkeypatch, 4, world=8)
    with pytest.raises(ValueError, match=r"LOCAL_RANK 4 but the node has 4 GPU\(s\).*--nproc_per_node=4"):
        resolve_device("auto")
    monkeypatch.setenv("LOCAL_RANK", "-1")
    with pytest.raises(ValueError, match="LOCAL_RANK must be a non-negative integer"):
        resolve_device("cuda")


def test_cpu_ranks_use_gloo_and_no_device_ids(monkeypatch, ddp_made):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    as_rank(monkeypatch, 1, world=2)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="not available"):
        resolve_device("cuda")
    wrap_distributed(nn.Linear(2, 2), torch.device("cpu"))
    assert ddp_made == {"device_ids": None, "output_device": None}


# precision by capability ---------------------------------------------------------------------------
@pytest.fixture
def cpu_with(monkeypatch):
    """Pretend the CPU has these /proc/cpuinfo flags and this torch vector capability."""
    def set_cpu(flags: set[str], vector: str) -> None:
        monkeypatch.setattr(device_module, "_cpu_flags", lambda: frozenset(flags))
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: vector)
    return set_cpu


CPU = torch.device("cpu")


@pytest.mark.parametrize(("flags", "vector"), [({"avx2", "amx_bf16", "amx_tile"}, "AVX512"),
                                               ({"avx2", "avx512f", "avx512_bf16"}, "AVX512")])
def test_auto_is_bf16_on_a_cpu_with_native_bf16(cpu_with, flags, vector):
    cpu_with(flags, vector)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("auto", CPU) is True
        assert resolve_precision("bf16", CPU) is True
    assert resolve_precision("fp32", CPU) is False


def test_auto_is_fp32_on_an_avx2_cpu_and_bf16_warns_naming_it(cpu_with):
    cpu_with({"avx", "avx2", "fma"}, "AVX2")
    assert resolve_precision("auto", CPU) is False
    with pytest.warns(RuntimeWarning, match=r"bf16 on this CPU \(AVX2, no native bf16\) is emulated"):
        assert resolve_precision("bf16", CPU) is True


def test_cuda_keeps_bf16_autocast_whatever_the_cpu(cpu_with):
    cpu_with({"avx2"}, "AVX2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("auto", torch.device("cuda", 0)) is True
        assert resolve_precision("bf16", torch.device("cuda", 1)) is True
    assert resolve_precision("fp32", torch.device("cuda", 0)) is False


def test_trainer_follows_the_capability(cpu_with):
    from napari_imc_vae.engine.model.critic import CriticConfig
    from napari_imc_vae.engine.data.patches import PatchSampler
    from napari_imc_vae.engine.model.vae import ModelConfig, PatchVAE
    from napari_imc_vae.engine.training.trainer import TrainConfig, Trainer

    sampler = PatchSampler([torch.randn(2, 16, 16).numpy()], 4, device="cpu")

    def trainer(precision: str) -> Trainer:
        model = PatchVAE(ModelConfig(in_channels=2, patch_size=4, latent_dim=2, width=8, depth=1))
        return Trainer(model, sampler, CriticConfig(), TrainConfig(device="cpu", precision=precision))

    cpu_with({"avx2"}, "AVX2")
    assert trainer("auto").bf16 is False
    with pytest.warns(RuntimeWarning, match=r"\(AVX2, no native bf16\)"):
        assert trainer("bf16").bf16 is True
    cpu_with({"avx512_bf16"}, "AVX512")
    assert trainer("auto").bf16 is True


def test_this_machine_reports_its_capability():
    text = device_module.cpu_capability()
    assert text.startswith(torch.backends.cpu.get_cpu_capability() + ", ")
    assert text.endswith("bf16")


# CPU threads ---------------------------------------------------------------------------------------
@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture
def two_cores(monkeypatch):
    """A 2-core machine with nothing asked for; ``free`` sets the cores other processes leave idle."""
    for name in ("IMC_VAE_THREADS", "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(device_module, "usable_cores", lambda: 2)
    return lambda free: monkeypatch.setattr(device_module, "free_cores", lambda: free)


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("free", [0.0, 1.0, 2.0])
def test_passive_waiting_takes_every_core_whatever_the_load(monkeypatch, two_cores, free):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    two_cores(free)
    assert device_module.apply_thread_policy() == "2 CPU threads (one per usable core), OpenMP wait passive"
    assert torch.get_num_threads() == 2


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize(("free", "threads"), [(0.0, 1), (0.6, 1), (0.8, 1), (1.8, 2), (2.0, 2), (7.5, 2)])
def test_spinning_threads_keep_off_busy_cores(monkeypatch, two_cores, free, threads):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)  # torch came first: libgomp spins
    two_cores(free)
    text = device_module.apply_thread_policy()
    assert torch.get_num_threads() == threads
    assert text.startswith(f"{threads} CPU thread{'s' if threads > 1 else ''} ({free:.1f} of 2 cores free; ")
    assert text.endswith("OpenMP wait default (spin, then sleep)")


@pytest.mark.usefixtures("restore_threads")
def test_threads_asked_for_or_shared_by_ranks(monkeypatch):
    monkeypatch.setattr(device_module, "usable_cores", lambda: 8)
    monkeypatch.setattr(device_module, "free_cores", lambda: pytest.fail("not measured when given"))
    monkeypatch.setenv("IMC_VAE_THREADS", "3")
    assert device_module.apply_thread_policy().startswith("3 CPU threads (IMC_VAE_THREADS)")
    assert torch.get_num_threads() == 3
    assert device_module.apply_thread_policy(1).startswith("1 CPU thread (as asked)")
    monkeypatch.delenv("IMC_VAE_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert device_module.apply_thread_policy().startswith("2 CPU threads (8 cores shared by 4 ranks)")
    with pytest.raises(ValueError, match="at least 1, got 0"):
        device_module.apply_thread_policy(0)


def test_free_cores_come_from_two_readings_of_proc_stat(monkeypatch):
    readings = iter([(1000, 4000), (1150, 4400)])  # idle, total jiffies: 150 of 400 idle
    monkeypatch.setattr(device_module, "_cpu_times", lambda: next(readings))
    monkeypatch.setattr(device_module, "usable_cores", lambda: 4)
    monkeypatch.setattr(device_module.os, "cpu_count", lambda: 4)
    # 62.5% of 4 CPUs busy = 2.5 cores: 1.5 left
    assert device_module.free_cores(sample_s=0) == pytest.approx(1.5)


@pytest.mark.parametrize(("code", "env", "expected"), [
    ("import napari_imc_vae", {}, "PASSIVE"),
    ("import napari_imc_vae", {"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),  # the user's choice stays
    ("import torch, napari_imc_vae", {}, "None"),  # too late to matter: not pretended
])
def test_openmp_waits_passively_when_the_package_comes_before_torch(code, env, expected):
    import os
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", f"{code}; import os; print(os.environ.get('OMP_WAIT_POLICY'))"],
                         capture_output=True, text=True, env={**base, **env}, timeout=120, check=True)
    assert out.stdout.split() == [expected]


@pytest.mark.usefixtures("restore_threads")
def test_compute_policy_names_threads_and_precision(monkeypatch, cpu_with):
    monkeypatch.setenv("IMC_VAE_THREADS", "1")
    cpu_with({"avx2"}, "AVX2")
    text = device_module.compute_policy(CPU, False)
    assert text.startswith("cpu, 1 CPU thread (IMC_VAE_THREADS), OpenMP wait ")
    assert text.endswith(", fp32 (CPU: AVX2, no native bf16)")
    assert device_module.compute_policy(torch.device("cuda", 1), True) == "cuda:1, bf16 autocast"
