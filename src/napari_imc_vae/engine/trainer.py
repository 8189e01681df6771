"""The training loop: AdamW, warm-up then cosine, clipping, bf16 where it pays, callbacks, stop().

The trainer knows nothing of a GUI: it reports :class:`TrainProgress` records to a callback and
honours :meth:`Trainer.stop` within one step. Under ``torchrun`` the model is wrapped in
DistributedDataParallel; each rank samples its own patches, and only rank 0 should write files.
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

from napari_imc_vae.engine.critic import CriticConfig, base_logits_from_views, critic, permutation_consistency
from napari_imc_vae.engine.data import PatchSampler
from napari_imc_vae.engine.device import DistributedContext, init_distributed, resolve_device
from napari_imc_vae.engine.model import PatchVAE


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
    #: "auto" = bf16 autocast on CUDA, fp32 elsewhere; or "bf16" / "fp32".
    precision: str = "auto"
    val_every: int = 200
    val_fraction: float = 0.15
    max_val_patches: int = 2048
    #: Stop after this many seconds even if ``steps`` are not done; the schedule follows
    #: whichever of steps and time runs out first.
    time_limit_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "val_every", "max_val_patches"):
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
    """One step's report. ``validation`` is set on validation steps only."""

    step: int  # steps done, counting earlier runs this model was resumed from
    run_step: int  # steps done in this run
    run_steps: int  # steps this run will do
    metrics: dict[str, float]
    validation: dict[str, float] | None = None
    patches_per_s: float = 0.0
    device: str = "cpu"


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
        if sampler.device != self.device:
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
        self.bf16 = train_config.precision == "bf16" or (
            train_config.precision == "auto" and self.device.type == "cuda"
        )

    # control ---------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to end after the current step (thread-safe)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # one step --------------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _train_step(self, net: nn.Module, generator: torch.Generator) -> dict[str, float]:
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
        metrics = terms.as_floats()
        metrics["grad_norm"] = float(grad_norm)
        return metrics

    # validation ------------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float] | None:
        """Critic terms and the quality measures of DESIGN §4 on the validation patches."""
        from napari_imc_vae.engine import metrics as m

        patches = self.sampler.validation_patches(self.config.max_val_patches)
        if patches.shape[0] == 0:
            return None
        was_training = self.model.training
        self.model.eval()
        try:
            x = torch.nan_to_num(patches, nan=0.0, posinf=0.0, neginf=0.0)
            recon, mu, logvar = [], [], []
            for chunk in x.split(1024):
                with self._autocast():
                    out = self.model(chunk, sample=False)
                recon.append(out.recon.float())
                mu.append(out.mu.float())
                logvar.append(out.logvar.float())
            recon_t, mu_t, logvar_t = torch.cat(recon), torch.cat(mu), torch.cat(logvar)
            terms = critic(recon_t, patches, mu_t, logvar_t, self.critic_config,
                           all_finite=self.sampler.all_finite).as_floats()
            accuracy, _, left_out = m.permutation_accuracy(self.model, x)
            result = {f"val_{k}": v for k, v in terms.items()}
            measures = m.reconstruction_measures(patches, recon_t)  # one float64 copy, not three
            result.update(
                r2=float(measures["r2"]),
                sharpness_ratio=float(measures["sharpness_ratio"]),
                diversity_ratio=float(measures["diversity_ratio"]),
                active_units=float(m.active_units(mu_t)),
                perm_accuracy=float(accuracy),
                perm_left_out=float(left_out),
            )
            return result
        finally:
            self.model.train(was_training)

    def _should_end(self, elapsed: float) -> bool:
        """Stop requested or time up; under DDP every rank ends at the same step (or they would hang)."""
        limit = self.config.time_limit_s
        end = self._stop.is_set() or (limit is not None and elapsed >= limit)
        if self.dist.active:
            import torch.distributed as dist

            flag = torch.tensor([float(end)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            end = bool(flag.item())
        return end

    # the loop --------------------------------------------------------------------------------------
    def fit(self, on_progress: Callable[[TrainProgress], None] | None = None) -> TrainResult:
        """Run ``config.steps`` steps (or until :meth:`stop`), keep the best validation state."""
        cfg = self.config
        torch.manual_seed(cfg.seed + self.step)
        generator = torch.Generator(device=self.device).manual_seed(cfg.seed + 7919 * self.dist.rank + self.step)
        net: nn.Module = self.model
        if self.dist.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.model.train()
        best_loss, best_state, best_val = math.inf, None, None
        run_start, tick = self.step, time.perf_counter()
        for run_step in range(cfg.steps):
            elapsed = time.perf_counter() - tick
            if self._should_end(elapsed):
                break
            progress = None
            if cfg.time_limit_s is not None:
                progress = max(run_step / cfg.steps, elapsed / cfg.time_limit_s)
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(run_step, cfg.steps, cfg.warmup_steps, progress)
            try:
                metrics = self._train_step(net, generator)
            except torch.OutOfMemoryError as e:
                raise TrainingError(
                    f"out of memory on {self.device} at batch size {cfg.batch_size}; "
                    f"try a smaller batch, e.g. --batch {max(1, cfg.batch_size // 2)}"
                ) from e
            if not math.isfinite(metrics["loss"]):
                raise TrainingError(
                    f"the loss became {metrics['loss']} at step {self.step + 1}; "
                    "try a lower learning rate or check the input for extreme values"
                )
            self.step += 1
            metrics["step"], metrics["lr"] = float(self.step), self.optimizer.param_groups[0]["lr"]
            self.history.append(metrics)
            validation = None
            out_of_time = cfg.time_limit_s is not None and time.perf_counter() - tick >= cfg.time_limit_s
            last = run_step == cfg.steps - 1 or self._stop.is_set() or out_of_time
            if (run_step + 1) % cfg.val_every == 0 or last:
                validation = self.validate()
                if validation is not None:
                    validation["step"] = float(self.step)
                    self.validation_history.append(validation)
                    if validation["val_loss"] < best_loss:
                        best_loss, best_val = validation["val_loss"], validation
                        best_state = copy.deepcopy(self.model.state_dict())
            if on_progress is not None:
                elapsed = time.perf_counter() - tick
                rate = (run_step + 1) * cfg.batch_size * self.dist.world_size / max(elapsed, 1e-9)
                on_progress(TrainProgress(self.step, run_step + 1, cfg.steps, metrics, validation, rate, str(self.device)))
        validated = self.validation_history and self.validation_history[-1].get("step") == float(self.step)
        if self.step > run_start and not validated:  # stopped from the callback after its step
            validation = self.validate()
            if validation is not None:
                validation["step"] = float(self.step)
                self.validation_history.append(validation)
                if validation["val_loss"] < best_loss:
                    best_loss, best_val, best_state = validation["val_loss"], validation, None
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.model.eval()
        return TrainResult(
            self.model, self.step, self._stop.is_set(), self.history, self.validation_history, best_val
        )
