"""Choosing the torch device, the distributed (torchrun) set-up and the numeric precision.

Under ``torchrun`` every process of a node sees all of its GPUs; ``LOCAL_RANK`` says which
one is this process's. ``"auto"`` and ``"cuda"`` therefore mean ``cuda:LOCAL_RANK`` there
(and ``cuda:0`` in a single process); an explicit ``"cuda:K"`` is taken as written.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn


def available_devices() -> list[str]:
    """Devices this machine can train on, best first (always ends with ``"cpu"``)."""
    found = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def local_rank() -> int:
    """This process's index on its node under ``torchrun`` (``LOCAL_RANK``), else 0."""
    value = os.environ.get("LOCAL_RANK", "0").strip() or "0"
    try:
        rank = int(value)
    except ValueError:
        raise ValueError(f"LOCAL_RANK must be a non-negative integer, got {value!r}") from None
    if rank < 0:
        raise ValueError(f"LOCAL_RANK must be a non-negative integer, got {value!r}")
    return rank


def _rank_gpu() -> torch.device:
    """``cuda:LOCAL_RANK``, or an error naming how many GPUs the node has."""
    rank, count = local_rank(), torch.cuda.device_count()
    if rank >= count:
        raise ValueError(
            f"this process has LOCAL_RANK {rank} but the node has {count} GPU(s): start torchrun with "
            f"--nproc_per_node={count} or fewer, or pass --device cpu"
        )
    return torch.device("cuda", rank)


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` → cuda > mps > cpu; anything else must be available here.

    ``"auto"`` and ``"cuda"`` pick the GPU of this process's ``LOCAL_RANK`` (0 outside torchrun).

    Raises
    ------
    ValueError
        For an unknown or unavailable device (the message lists the available ones), or a
        ``LOCAL_RANK`` beyond the node's GPUs.
    """
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").strip().lower()
    options = available_devices()
    if name in ("auto", "cuda") and options[0].startswith("cuda"):
        return _rank_gpu()
    if name == "auto":
        return torch.device(options[0])
    if name in options:
        return torch.device(name)
    raise ValueError(f"device {name!r} is not available on this machine; available: auto, {', '.join(options)}")


@dataclass
class DistributedContext:
    """Where this process stands in a ``torchrun`` job (a single process is rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group set up by ``torchrun`` (NCCL on GPUs, gloo on CPU), if any.

    On a GPU the process's current CUDA device is set first: NCCL and every ``.cuda()``
    without an index use it, and left at 0 all ranks would crowd onto the first GPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank())


def wrap_distributed(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel on this rank's own GPU (or on the CPU, gloo)."""
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)


# precision -------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def cpu_capability() -> str:
    """What this CPU offers torch, e.g. ``"AVX512, avx512_bf16"`` or ``"AVX2, no native bf16"``."""
    vector = torch.backends.cpu.get_cpu_capability()
    native = [f for f in ("amx_bf16", "avx512_bf16") if f in _cpu_flags()]
    return f"{vector}, {' + '.join(native) if native else 'no native bf16'}"


def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bf16 in hardware (AMX or AVX512-BF16, from /proc/cpuinfo).

    Elsewhere oneDNN emulates bf16 with conversions, which made training ~15× slower than fp32
    on an AVX2-only AMD EPYC.
    """
    return bool({"amx_bf16", "avx512_bf16"} & _cpu_flags())


def resolve_precision(precision: str, device: torch.device) -> bool:
    """Whether to train in bf16 autocast: ``"auto"`` → CUDA, or a CPU with native bf16; else fp32.

    Asking for ``"bf16"`` on a CPU without native bf16 warns (naming the CPU's capability) and
    still uses bf16: the user asked for it, e.g. to compare.
    """
    if precision == "fp32":
        return False
    native = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
    if precision == "bf16":
        if device.type == "cpu" and not native:
            warnings.warn(
                f"bf16 on this CPU ({cpu_capability()}) is emulated and much slower than fp32; "
                "use precision 'auto' or 'fp32'", RuntimeWarning, stacklevel=2)
        return True
    return native


def describe_precision(bf16: bool, device: torch.device) -> str:
    """One line for the user: which precision and why."""
    if device.type == "cuda":
        return "bf16 autocast" if bf16 else "fp32"
    if device.type == "cpu":
        return f"{'bf16 autocast' if bf16 else 'fp32'} (CPU: {cpu_capability()})"
    return "bf16 autocast" if bf16 else "fp32"
