"""The training loop: AdamW, warm-up then cosine, clipping, bf16 where it pays, callbacks, stop().

The trainer knows nothing of a GUI: it reports :class:`TrainProgress` records to a callback and
honours :meth:`Trainer.stop` before the next step (under DDP within ``log_every`` steps). Loss
terms stay on the device and are read every ``log_every`` steps, so a GPU's queue of kernels is
not drained each step. Under ``torchrun`` the model is wrapped in DistributedDataParallel on the
rank's own GPU; each rank samples its own patches, and only rank 0 should write files.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from napari_imc_vae.engine.model.critic import CriticConfig, base_logits_from_views, critic, permutation_consistency
from napari_imc_vae.engine.data.patches import PatchSampler
from napari_imc_vae.engine.defaults import MAX_VAL_PATCHES, MAX_VALIDATION_INTERVAL
from napari_imc_vae.engine.device import (
    DistributedContext,
    cuda_memory,
    init_distributed,
    resolve_device,
    resolve_precision,
    wrap_distributed,
)
from napari_imc_vae.engine.model.vae import PatchVAE
from napari_imc_vae.engine.training.validation import validate_model


class TrainingError(RuntimeError):
    """Training could not go on (for example the GPU ran out of memory)."""


@dataclass
class TrainConfig:
    """How to train; stored in model files beside the model and critic configs."""

    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    #: "auto" = bf16 autocast on CUDA and on CPUs with native bf16 (AMX, AVX512-BF16), fp32
    #: elsewhere; or "bf16" / "fp32".
    precision: str = "auto"
    #: Steps between validations; train_model sets it from the run's steps (defaults.validation_interval).
    val_every: int = MAX_VALIDATION_INTERVAL
    #: Read the loss terms back (and report progress) every this many steps: each read waits
    #: for the GPU to finish its queue.
    log_every: int = 10
    val_fraction: float = 0.15
    max_val_patches: int = MAX_VAL_PATCHES
    #: Stop after this many seconds even if ``steps`` are not done; the schedule follows
    #: whichever of steps and time runs out first.
    time_limit_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "val_every", "max_val_patches", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"TrainConfig.precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"TrainConfig.val_fraction must be in [0, 1), got {self.val_fraction!r}")


@dataclass
class TrainProgress:
    """A report every ``log_every`` steps: ``metrics`` are means over the steps since the last one.

    ``validation`` is set on validation steps only.
    """

    step: int  # steps done, counting earlier runs this model was resumed from
    run_step: int  # steps done in this run
    run_steps: int  # steps this run will do
    metrics: dict[str, float]
    validation: dict[str, float] | None = None
    patches_per_s: float = 0.0
    device: str = "cpu"
    #: On CUDA: bytes in tensors, bytes held by torch's allocator, the GPU's total.
    gpu_memory: tuple[int, int, int] | None = None


@dataclass
class TrainResult:
    model: PatchVAE
    step: int
    stopped: bool
    history: list[dict[str, float]] = field(default_factory=list)
    validation_history: list[dict[str, float]] = field(default_factory=list)
    best_validation: dict[str, float] | None = None


def lr_factor(run_step: int, run_steps: int, warmup: int, progress: float | None = None) -> float:
    """Linear warm-up to 1, then cosine to 0.05 over the run.

    ``progress`` (0..1) overrides the step-based progress, for time-limited runs.
    """
    warmup = min(warmup, max(1, run_steps // 10))
    if run_step < warmup:
        return (run_step + 1) / warmup
    if progress is None:
        progress = (run_step - warmup) / max(1, run_steps - warmup)
    return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class Trainer:
    """Train a :class:`PatchVAE` on patches from a :class:`PatchSampler`.

    Parameters
    ----------
    model : PatchVAE
    sampler : PatchSampler
    critic_config : CriticConfig
    train_config : TrainConfig
    step : int
        Steps already done (when resuming).
    optimizer_state : dict, optional
        AdamW state from a model file (when resuming).
    """

    def __init__(
        self,
        model: PatchVAE,
        sampler: PatchSampler,
        critic_config: CriticConfig,
        train_config: TrainConfig,
        *,
        step: int = 0,
        optimizer_state: dict | None = None,
        history: list[dict[str, float]] | None = None,
    ):
        self.device = resolve_device(train_config.device)
        if resolve_device(sampler.device) != self.device:  # "cuda" is this rank's GPU, as in resolve_device
            raise ValueError(f"sampler is on {sampler.device} but training runs on {self.device}")
        self.model = model.to(self.device)
        self.sampler, self.critic_config, self.config = sampler, critic_config, train_config
        self.step = step
        self.history: list[dict[str, float]] = list(history or [])
        self.validation_history: list[dict[str, float]] = []
        self.dist: DistributedContext = init_distributed(self.device)
        self._stop = threading.Event()
        fused = self.device.type in ("cuda", "cpu")  # one kernel for all parameters, not ~15 per tensor
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay, fused=fused
        )
        if optimizer_state:
            self.optimizer.load_state_dict(optimizer_state)
            for group in self.optimizer.param_groups:
                group["lr"] = train_config.lr
        self.bf16 = resolve_precision(train_config.precision, self.device)
        self._term_names: list[str] | None = None  # set by the first step

    # control ---------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to end after the current step (under DDP: at the next read; thread-safe)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _out_of_memory(self) -> TrainingError:
        """The error for a step that ran out of device memory: it names a batch that may fit."""
        batch = self.config.batch_size
        return TrainingError(f"out of memory on {self.device} at batch size {batch}; "
                             f"try a smaller batch, e.g. --batch {max(1, batch // 2)}")

    def time_steps(self, steps: int, warmup: int) -> float:
        """Seconds that ``steps`` training steps take here (after ``warmup``), then undo them.

        The weights, the optimizer's state and the step count are as before; :meth:`fit`
        reseeds its random numbers, so for images held in RAM the run that follows is the one it
        would have been (a cohort's bounded pool may have drawn other tiles meanwhile).
        """
        model_state = copy.deepcopy(self.model.state_dict())
        optimizer_state = copy.deepcopy(self.optimizer.state_dict())
        generator = torch.Generator(device=self.device).manual_seed(12345)
        was_training = self.model.training
        self.model.train()
        try:
            for _ in range(warmup):
                self._train_step(self.model, generator)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            elif self.device.type == "mps":
                torch.mps.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                last = self._train_step(self.model, generator)
            float(last[0])  # waits for the device
            return time.perf_counter() - start
        except torch.OutOfMemoryError as e:
            raise self._out_of_memory() from e
        finally:
            self.model.load_state_dict(model_state)
            self.optimizer.load_state_dict(optimizer_state)
            self.model.train(was_training)

    # one step --------------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _train_step(self, net: nn.Module, generator: torch.Generator) -> torch.Tensor:
        """One optimizer step; returns its loss terms and grad norm as one tensor on the device.

        Nothing here is read back to the host: on a GPU a read would drain the queue of kernels
        every step. :meth:`fit` sums these tensors and reads them every ``log_every`` steps.
        """
        views, transforms = self.sampler.sample_views(self.config.batch_size, generator)
        finite = self.sampler.all_finite  # then no masks and no NaN replacement: most of the
        x = views if finite else torch.nan_to_num(views, nan=0.0, posinf=0.0, neginf=0.0)  # elementwise cost
        with self._autocast():
            out = net(x)
            # the selector is equivariant, so the untransformed patches' logits are the views'
            # logits permuted: no second pass through it
            base_logits = base_logits_from_views(out.orientation_logits.detach(), transforms)
            perm = permutation_consistency(out.orientation_logits, base_logits, transforms)
            terms = critic(out.recon, views, out.mu, out.logvar, self.critic_config,
                           all_finite=finite, perm_loss=perm)
        self.optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip, foreach=True)
        self.optimizer.step()
        if self._term_names is None:
            self._term_names = [*vars(terms), "grad_norm"]
        return torch.stack([*(v.detach().float() for v in vars(terms).values()), grad_norm.float()])

    # validation ------------------------------------------------------------------------------------
    def validate(self) -> dict[str, float] | None:
        """Critic terms and the quality measures of DESIGN §4 on the validation patches.

        See :func:`~napari_imc_vae.engine.training.validation.validate_model`.
        """
        return validate_model(self.model, self.sampler, self.critic_config,
                              max_patches=self.config.max_val_patches, autocast=self._autocast)

    def _out_of_time(self, tick: float) -> bool:
        limit = self.config.time_limit_s
        return limit is not None and time.perf_counter() - tick >= limit

    def _read_window(self, window: list[torch.Tensor], tick: float) -> tuple[list[dict[str, float]], bool]:
        """Read the terms of the steps since the last read: the one host sync of a window.

        Under DDP the terms and the stop and time-up flags travel in one all-reduce, so every
        rank logs the ranks' mean and all of them end at the same step (a stop asked of one rank
        counts as asked of all).

        Returns
        -------
        rows : list of dict
            Each step's terms (the mean over the ranks).
        end : bool
            Some rank was asked to stop or ran out of time.
        """
        stacked = torch.stack(window).reshape(-1)  # (steps × terms)
        stop, out_of_time = float(self._stop.is_set()), float(self._out_of_time(tick))
        world = 1
        if self.dist.active:
            import torch.distributed as dist

            packed = torch.cat([stacked, torch.tensor([stop, out_of_time], device=stacked.device)])
            dist.all_reduce(packed, op=dist.ReduceOp.SUM)
            world = self.dist.world_size
            *values, stop, out_of_time = packed.tolist()
            if stop > 0:
                self._stop.set()
        else:
            values = stacked.tolist()
        n = len(self._term_names)
        rows = [{k: v / world for k, v in zip(self._term_names, values[i:i + n])} for i in range(0, len(values), n)]
        return rows, stop > 0 or out_of_time > 0

    def _record_validation(self, best: dict) -> dict[str, float] | None:
        validation = self.validate()
        if validation is not None:
            validation["step"] = float(self.step)
            self.validation_history.append(validation)
            if validation["val_loss"] < best["loss"]:
                best.update(loss=validation["val_loss"], val=validation,
                            state=copy.deepcopy(self.model.state_dict()))
        return validation

    # the loop --------------------------------------------------------------------------------------
    def fit(self, on_progress: Callable[[TrainProgress], None] | None = None) -> TrainResult:
        """Run ``config.steps`` steps (or until :meth:`stop`), keep the best validation state.

        Loss terms stay on the device and are read every ``log_every`` steps, on validation
        steps and at the end; :attr:`history` still gets one record per step, and ``on_progress``
        one report per read with the means since the previous one. A single process honours
        :meth:`stop` before the next step; under DDP the ranks agree on stopping at the reads.
        """
        cfg = self.config
        torch.manual_seed(cfg.seed + self.step)
        generator = torch.Generator(device=self.device).manual_seed(cfg.seed + 7919 * self.dist.rank + self.step)
        net: nn.Module = wrap_distributed(self.model, self.device) if self.dist.active else self.model
        self.model.train()
        best: dict = {"loss": math.inf, "state": None, "val": None}
        run_start, tick = self.step, time.perf_counter()
        window: list[torch.Tensor] = []  # each step's terms, on the device until the next read
        lrs: list[float] = []
        validated_at = -1

        def read_and_report(run_step: int, validate: bool) -> bool:
            nonlocal window, lrs, validated_at
            rows, end = self._read_window(window, tick)
            first = self.step - len(rows) + 1
            for i, (row, lr) in enumerate(zip(rows, lrs)):
                if not math.isfinite(row["loss"]):
                    raise TrainingError(
                        f"the loss became {row['loss']} at step {first + i}; "
                        "try a lower learning rate or check the input for extreme values"
                    )
                row["step"], row["lr"] = float(first + i), lr
            self.history.extend(rows)
            window, lrs = [], []
            validation = None
            if validate or end or run_step == cfg.steps:
                validation, validated_at = self._record_validation(best), self.step
            if on_progress is not None:
                means = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
                means["step"], means["lr"] = rows[-1]["step"], rows[-1]["lr"]
                rate = run_step * cfg.batch_size * self.dist.world_size / max(time.perf_counter() - tick, 1e-9)
                on_progress(TrainProgress(self.step, run_step, cfg.steps, means, validation, rate,
                                          str(self.device), cuda_memory(self.device)))
            return end

        for run_step in range(cfg.steps):
            # a single process checks its own flags each step (no sync); DDP ranks only at reads
            if not self.dist.active and (self._stop.is_set() or self._out_of_time(tick)):
                break
            elapsed = time.perf_counter() - tick
            progress = None
            if cfg.time_limit_s is not None:
                progress = max(run_step / cfg.steps, elapsed / cfg.time_limit_s)
            lr = cfg.lr * lr_factor(run_step, cfg.steps, cfg.warmup_steps, progress)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            try:
                window.append(self._train_step(net, generator))
            except torch.OutOfMemoryError as e:
                raise self._out_of_memory() from e
            lrs.append(lr)
            self.step += 1
            done = run_step + 1
            validate = done % cfg.val_every == 0
            if (len(window) >= cfg.log_every or validate or done == cfg.steps) and read_and_report(done, validate):
                break
        if window:  # a single process stopped (or ran out of time) between reads
            read_and_report(self.step - run_start, validate=True)
        if self.step > run_start and validated_at != self.step:  # stopped from the callback after a read
            self._record_validation(best)
        if best["state"] is not None:
            self.model.load_state_dict(best["state"])
        self.model.eval()
        return TrainResult(
            self.model, self.step, self._stop.is_set(), self.history, self.validation_history, best["val"]
        )
