"""Training budgets in plain words: Quick / Standard / Thorough or minutes, and how long steps take.

A budget is wall-clock time. Before training, a few real training steps are timed on this
machine (:func:`measure_step_rate`) and the budget becomes a step count for that rate
(:func:`plan_budget`), which the model file records. The budget is also the run's time limit:
validation and reads are not in the timed steps, so a run often ends on the clock a little
before its planned steps (docs/benchmarks.md), with the schedule then following the clock.

The presets come from the capacity sweep (docs/capacity.md): on the shared ROIs the default
model still gained R² up to 8× the old 2,000-step default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from napari_imc_vae.engine.defaults import BUDGET_PRESETS as PRESETS  # minutes of each named budget
from napari_imc_vae.engine.defaults import DEFAULT_BUDGET


class BudgetError(ValueError):
    """A budget that is neither a preset name nor a positive number of minutes."""


def parse_budget(text: str | float) -> float:
    """Minutes for a preset name (``quick``, ``standard``, ``thorough``) or a number of minutes.

    Raises
    ------
    BudgetError
        Naming the accepted values.
    """
    if isinstance(text, str) and text.strip().lower() in PRESETS:
        return PRESETS[text.strip().lower()]
    try:
        minutes = float(text)
    except (TypeError, ValueError):
        minutes = math.nan
    if not 0 < minutes < math.inf:
        names = ", ".join(f"{k} ({v:g} min)" for k, v in PRESETS.items())
        raise BudgetError(f"a budget is {names} or a number of minutes > 0, got {text!r}")
    return minutes


@dataclass(frozen=True)
class StepRate:
    """Training steps per second measured on this machine, and what they were measured on."""

    steps_per_s: float
    device: str
    bf16: bool
    batch_size: int

    def seconds_for(self, steps: int) -> float:
        return steps / self.steps_per_s

    def steps_for(self, seconds: float) -> int:
        return max(1, int(self.steps_per_s * seconds))

    def __str__(self) -> str:
        return (f"{self.steps_per_s:.1f} steps/s ({self.steps_per_s * self.batch_size:,.0f} patches/s) on "
                f"{self.device}, {'bf16' if self.bf16 else 'fp32'}, measured now")


def measure_step_rate(trainer, *, steps: int = 6, warmup: int = 2) -> StepRate:
    """Time ``steps`` real training steps of ``trainer`` (after ``warmup``); they are undone
    (:meth:`~napari_imc_vae.engine.training.trainer.Trainer.time_steps`).

    Raises
    ------
    TrainingError
        The device ran out of memory at this batch size (the message names a smaller one).
    """
    seconds = trainer.time_steps(steps, warmup)
    return StepRate(steps / max(seconds, 1e-9), str(trainer.device), bool(trainer.bf16), trainer.config.batch_size)


def probe_step_rate(n_channels: int, model_config: dict | None = None, critic_config=None, train_config=None,
                    *, steps: int = 6, warmup: int = 2) -> StepRate:
    """The step rate of a model not built yet: a throwaway model on random patches of its shape.

    A step's cost does not depend on the pixel values, so the widget can show the duration
    before any normalizer is fitted.
    """
    import torch

    from napari_imc_vae.engine.model.critic import CriticConfig
    from napari_imc_vae.engine.data.patches import PatchSampler
    from napari_imc_vae.engine.device import resolve_device
    from napari_imc_vae.engine.model.vae import ModelConfig, PatchVAE
    from napari_imc_vae.engine.training.trainer import TrainConfig, Trainer

    options = dict(model_config or {})
    options.pop("in_channels", None)
    config = ModelConfig(in_channels=int(n_channels), **options)
    train_config = train_config or TrainConfig()
    side = max(64, 4 * config.patch_size)
    pixels = np.random.default_rng(0).standard_normal((config.in_channels, side, side)).astype(np.float32)
    device = resolve_device(train_config.device)
    sampler = PatchSampler([pixels], config.patch_size, val_fraction=0.0, device=device)
    with torch.random.fork_rng(devices=[]):
        trainer = Trainer(PatchVAE(config), sampler, critic_config or CriticConfig(),
                          replace(train_config, device=str(device)))
        return measure_step_rate(trainer, steps=steps, warmup=warmup)


def plan_budget(train_config, minutes: float, rate: StepRate):
    """``train_config`` with the steps this budget buys at ``rate`` and the budget as time limit."""
    seconds = 60.0 * minutes
    return replace(train_config, steps=rate.steps_for(seconds), time_limit_s=seconds)


@dataclass(frozen=True)
class RunPlan:
    """What a run will do, from a few of its steps timed here; the run itself is not changed.

    Attributes
    ----------
    steps : int
        The budget's steps at the measured rate, or the run's own steps without a budget.
    time_limit_s : float or None
        The budget in seconds (the run's own limit without a budget).
    rate : StepRate
    text : str
        The line to show the user before training starts.
    """

    steps: int
    time_limit_s: float | None
    rate: StepRate
    text: str


def plan_run(run, minutes: float | None) -> RunPlan:
    """Time a few steps of a :class:`~napari_imc_vae.engine.training.run.TrainingRun` (undone) and say
    what ``minutes`` buy, or how long its steps take when ``minutes`` is None.

    The caller applies the plan (:meth:`TrainingRun.use_train_config`); this function changes
    nothing. Under ``torchrun`` the ranks measure different rates but must run the same steps:
    every rank plans from the slowest rank's rate.
    """
    trainer = run.trainer
    rate = _slowest_rank(measure_step_rate(trainer), trainer)
    config = trainer.config if minutes is None else plan_budget(trainer.config, minutes, rate)
    passes = config.steps * config.batch_size / max(1, run.sampler.n_train)
    return RunPlan(config.steps, config.time_limit_s, rate, describe_plan(config.steps, rate, minutes, passes))


def _slowest_rank(rate: StepRate, trainer) -> StepRate:
    """Under ``torchrun``, the lowest rate over the ranks (the same on every rank); else ``rate``."""
    if not trainer.dist.active:
        return rate
    import torch
    import torch.distributed as dist

    value = torch.tensor([rate.steps_per_s], dtype=torch.float64, device=trainer.device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return replace(rate, steps_per_s=float(value.item()))


def describe_plan(steps: int, rate: StepRate, minutes: float | None = None, passes: float | None = None) -> str:
    """One line for the user: what the budget buys, or how long the steps will take."""
    duration = format_duration(rate.seconds_for(steps))
    head = f"budget {minutes:g} min: {steps:,} steps" if minutes is not None else f"{steps:,} steps: about {duration}"
    seen = f", {passes:.1f} passes over the training patches" if passes is not None else ""
    hint = ""
    if passes is not None and passes < 1:  # the sweep's gains came within the first passes
        hint = "; under one pass over the patches: a longer budget may fit better"
    return f"{head}{seen} at {rate}{hint}"


def format_duration(seconds: float) -> str:
    """``45 s``, ``3.5 min``, ``1 h 20 min``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{int(seconds // 3600)} h {round(seconds % 3600 / 60):d} min"


__all__ = ["BudgetError", "DEFAULT_BUDGET", "PRESETS", "RunPlan", "StepRate", "describe_plan", "format_duration",
           "measure_step_rate", "parse_budget", "plan_budget", "plan_run", "probe_step_rate"]
