"""Choosing the torch device and the distributed (torchrun) set-up."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


def available_devices() -> list[str]:
    """Devices this machine can train on, best first (always ends with ``"cpu"``)."""
    found = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` → cuda > mps > cpu; anything else must be available here.

    Raises
    ------
    ValueError
        For an unknown or unavailable device; the message lists the available ones.
    """
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").strip().lower()
    options = available_devices()
    if name == "auto":
        return torch.device(options[0])
    if name == "cuda" and any(o.startswith("cuda") for o in options):
        return torch.device("cuda:0")
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
    """Join the process group set up by ``torchrun`` (NCCL on GPUs, gloo on CPU), if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
