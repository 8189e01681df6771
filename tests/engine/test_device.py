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
    from napari_imc_vae.engine.critic import CriticConfig
    from napari_imc_vae.engine.data import PatchSampler
    from napari_imc_vae.engine.model import ModelConfig, PatchVAE
    from napari_imc_vae.engine.trainer import TrainConfig, Trainer

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
