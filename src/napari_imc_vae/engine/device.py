"""Where and how training computes: the device, torchrun, precision, CPU threads, GPU memory.

Under ``torchrun`` every process of a node sees all of its GPUs; ``LOCAL_RANK`` says which
one is this process's. ``"auto"`` and ``"cuda"`` therefore mean ``cuda:LOCAL_RANK`` there
(and ``cuda:0`` in a single process); an explicit ``"cuda:K"`` is taken as written.
Precision ``"auto"`` is bf16 where the hardware multiplies it natively (CUDA; AMX or
AVX512-BF16 CPUs). The CPU thread policy and the release of GPU memory after a run are here
too, so that the command line and the napari widgets apply the same ones.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
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


def process_context() -> DistributedContext:
    """This process's place in a ``torchrun`` job, from the variables torchrun sets.

    The one place ``RANK`` and ``WORLD_SIZE`` are read (``LOCAL_RANK``: :func:`local_rank`);
    works before the process group is joined, e.g. to let only rank 0 check an output path.
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return DistributedContext()
    return DistributedContext(int(os.environ.get("RANK", "0") or 0), world, local_rank())


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group set up by ``torchrun`` (NCCL on GPUs, gloo on CPU), if any.

    On a GPU the process's current CUDA device is set first: NCCL and every ``.cuda()``
    without an index use it, and left at 0 all ranks would crowd onto the first GPU.
    """
    if not process_context().active:
        return DistributedContext()
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank())


@contextlib.contextmanager
def leaving_process_group() -> Iterator[None]:
    """Leave the ``torchrun`` process group at the end, even on error, if it was joined inside.

    A group the process had already joined is left joined: its caller still needs it afterwards
    (:func:`init_distributed` reuses it).
    """
    import torch.distributed as dist

    def joined() -> bool:
        return dist.is_available() and dist.is_initialized()

    joined_before = joined()
    try:
        yield
    finally:
        if not joined_before and joined():
            dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[DistributedContext]:
    """Join the ``torchrun`` job's process group (if any) and leave it at the end, even on error.

    A group the process had already joined is used and left joined.

    Yields
    ------
    DistributedContext
        This process's rank and the world size (rank 0 of 1 without ``torchrun``).
    """
    with leaving_process_group():
        yield init_distributed(device)


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


def precision_autocast(precision: str, device: torch.device):
    """The bf16 autocast context for ``precision`` on ``device`` (a no-op context for fp32).

    Raises
    ------
    ValueError
        For a precision other than ``fp32``, ``bf16`` or ``auto``.
    """
    if precision not in ("fp32", "bf16", "auto"):
        raise ValueError(f"precision must be 'fp32', 'bf16' or 'auto', got {precision!r}")
    bf16 = resolve_precision(precision, device) and device.type in ("cpu", "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def describe_precision(bf16: bool, device: torch.device) -> str:
    """One line for the user: which precision and why."""
    if device.type == "cuda":
        return "bf16 autocast" if bf16 else "fp32"
    if device.type == "cpu":
        return f"{'bf16 autocast' if bf16 else 'fp32'} (CPU: {cpu_capability()})"
    return "bf16 autocast" if bf16 else "fp32"


# CPU threads -----------------------------------------------------------------------------------
def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs from /proc/stat, or None off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user..steal


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def free_cores(sample_s: float = 0.25) -> float:
    """Cores left idle by other processes, measured over ``sample_s`` seconds from /proc/stat.

    The load average would lag a process started a second ago by a minute; this does not.
    Falls back to the load average where /proc/stat is missing.
    """
    import time

    usable, online = usable_cores(), os.cpu_count() or 1
    first = _cpu_times()
    if first is None:
        try:
            return max(0.0, usable - os.getloadavg()[0])
        except (AttributeError, OSError):
            return float(usable)
    time.sleep(sample_s)
    second = _cpu_times()
    total = second[1] - first[1]
    if total <= 0:
        return float(usable)
    busy = online * (1.0 - (second[0] - first[0]) / total)
    return max(0.0, min(float(usable), usable - busy))


def omp_wait_policy() -> str:
    """How idle OpenMP threads wait: ``OMP_WAIT_POLICY`` as torch's OpenMP read it at import."""
    return os.environ.get("OMP_WAIT_POLICY", "default (spin, then sleep)").lower()


def waits_passively() -> bool:
    """Whether idle OpenMP threads sleep (``OMP_WAIT_POLICY=PASSIVE``, set by importing this package
    before torch) rather than spin."""
    return omp_wait_policy() == "passive"


def apply_thread_policy(threads: int | None = None) -> str:
    """Set torch's intra-op threads for CPU training; returns the policy in words.

    ``threads`` given, or ``IMC_VAE_THREADS`` / ``OMP_NUM_THREADS`` set: that many. Under torchrun
    the node's ranks share its cores. Otherwise, with passive OpenMP waiting (the package's
    default): one thread per usable core, which measured best both quiet and beside a busy
    process. With spinning OpenMP threads (torch imported before this package): one thread per
    core other processes leave free right now, since a spinning thread on a busy core stalls
    every parallel region (see docs/benchmarks.md, "CPU threads").
    """
    import torch

    usable = usable_cores()
    chosen = os.environ.get("IMC_VAE_THREADS") or os.environ.get("OMP_NUM_THREADS")
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    if threads is not None or chosen:
        n = int(threads if threads is not None else chosen)
        if n < 1:
            raise ValueError(f"the number of CPU threads must be at least 1, got {n}")
        why = "as asked" if threads is not None else (
            "IMC_VAE_THREADS" if os.environ.get("IMC_VAE_THREADS") else "OMP_NUM_THREADS")
    elif ranks > 1:  # torchrun on CPUs: the node's ranks share its cores (they start together)
        n = max(1, usable // ranks)
        why = f"{usable} cores shared by {ranks} ranks"
    elif waits_passively():
        n, why = usable, "one per usable core"
    else:
        free = free_cores()
        n = max(1, min(usable, int(free + 0.25)))  # a core 75% free counts: its thread mostly runs
        why = f"{free:.1f} of {usable} cores free; spinning OpenMP threads must not share a busy core"
    torch.set_num_threads(n)
    return f"{n} CPU thread{'s' if n != 1 else ''} ({why}), OpenMP wait {omp_wait_policy()}"


# GPU memory ------------------------------------------------------------------------------------
def cuda_memory(device: torch.device) -> tuple[int, int, int] | None:
    """(bytes in tensors, bytes held by torch's allocator, the GPU's total) or None off CUDA.

    Read from the allocator's own counters: no sync with the GPU.
    """
    if device.type != "cuda":
        return None
    total = torch.cuda.get_device_properties(device).total_memory
    return torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device), total


def format_cuda_memory(memory: tuple[int, int, int]) -> str:
    allocated, reserved, total = (v / 1e9 for v in memory)
    return f"GPU memory: {allocated:.2f} GB in tensors, {reserved:.2f} GB held by torch, of {total:.1f} GB"


def to_cpu(value):
    """``value`` with every tensor in it (dicts, lists, tuples) moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value


def release_cuda_memory(*modules: nn.Module) -> bool:
    """Move ``modules`` to the CPU and hand torch's cached GPU memory back to the driver.

    Other programs (and napari's other plugins) can then use the GPU; the caller must drop its
    own references to GPU tensors first. Returns whether the CUDA cache was emptied.
    """
    import gc

    for module in modules:
        module.cpu()
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return False
    gc.collect()  # tensors kept alive only by reference cycles (e.g. a finished generator's frame)
    torch.cuda.empty_cache()
    return True


def compute_policy(device: torch.device, bf16: bool) -> str:
    """Apply the thread policy when training on the CPU; the device, threads and precision in words."""
    how = describe_precision(bf16, device)
    if device.type == "cpu":
        return f"cpu, {apply_thread_policy()}, {how}"
    return f"{device}, {how}"
