"""What a training run announces before it trains (:class:`TrainPlan`) and hands back (:class:`TrainOutcome`).

Both carry their text for the user, so that the CLI and the widget show the same words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from napari_imc_vae.engine.model.critic import CriticConfig
from napari_imc_vae.engine.training.trainer import TrainConfig

#: Validation measures the summary shows, in this order.
_VALIDATION_KEYS = ("r2", "sharpness_ratio", "diversity_ratio", "active_units", "perm_accuracy")
#: Loss terms of the last step the summary shows.
_LOSS_KEYS = ("loss", "mse", "cosine_loss", "gradient_loss", "kld_loss", "kld_floored", "perm_loss")


@dataclass(frozen=True)
class TrainPlan:
    """The run about to start: given to ``on_progress`` once, before the first step.

    Attributes
    ----------
    text : str
        What the budget buys at the rate measured here, or how long the steps take.
    steps : int
        Steps this run will do (unless stopped or out of time).
    val_every : int
        Steps between validations (the validation policy).
    data : str
        The images, channels, positions and model, in words.
    compute : str
        The device, CPU threads and precision, in words.
    notes : tuple of str
        Settings that were ignored, and why.
    model_config : dict
    critic_config : CriticConfig
    train_config : TrainConfig
        What the model file will record.
    resumed_from : int or None
        The step a resumed model starts from.
    """

    text: str
    steps: int
    val_every: int
    data: str
    compute: str
    model_config: dict
    critic_config: CriticConfig
    train_config: TrainConfig
    notes: tuple[str, ...] = ()
    resumed_from: int | None = None

    def lines(self) -> list[str]:
        """The plan as the CLI prints it: the data, the compute policy, what the budget buys."""
        return [f"training on {self.data}", f"compute: {self.compute}",
                f"{self.text}; validation every {self.val_every} steps"]


@dataclass
class TrainOutcome:
    """What a finished run hands back.

    Attributes
    ----------
    trained : TrainedModel or None
        The model (its best validation state); None when only an estimate was asked for.
    stopped : bool
        Ended by a stop request (or Ctrl-C) before its steps were done.
    report : QualityReport or None
        The quality report on the run's held-out patches, on the main process.
    report_error : str or None
        Why there is no report, when there is none.
    seconds : float
        From the call to the return.
    plan : TrainPlan or None
    is_main : bool
        This process writes files and prints (rank 0 under ``torchrun``, or a single process).
    """

    trained: object | None  # engine.model_file.checkpoint.TrainedModel
    stopped: bool
    report: object | None = None  # engine.quality.report.QualityReport
    report_error: str | None = None
    seconds: float = 0.0
    plan: TrainPlan | None = None
    is_main: bool = True

    def ending(self) -> str:
        """How the run ended, in words: done, stopped, or its time budget used up before its planned steps."""
        total, plan = self.trained.step, self.plan
        limit = plan.train_config.time_limit_s if plan is not None else None
        ran = total - (plan.resumed_from or 0) if plan is not None else total
        if not self.stopped and limit is not None and ran < plan.steps:
            # the trainer ends a run early only on a stop request or on its time limit
            resumed = f", {total:,} in total" if plan.resumed_from else ""
            return (f"the time budget ({_duration(limit)}) ran out after {ran:,} of the {plan.steps:,} planned "
                    f"steps{resumed} ({self.seconds:.1f} s)")
        return f"{'stopped' if self.stopped else 'done'} after {total} steps in total ({self.seconds:.1f} s)"

    def summary(self) -> str:
        """How the run ended (:meth:`ending`), the last step's loss terms, the best validation."""
        trained = self.trained
        last = trained.history[-1] if trained.history else {}
        val = trained.validation_history
        best = min(val, key=lambda v: v.get("val_loss", math.inf)) if val else None
        d = trained.model.config.latent_dim
        lines = [self.ending(),
                 "last step:   " + "  ".join(f"{k}={_fmt(last.get(k))}" for k in _LOSS_KEYS)]
        if best is None:
            lines.append("validation: none (the images are too small for a validation region)")
        else:
            lines.append(f"validation (best, step {int(best['step'])}): loss={_fmt(best.get('val_loss'))}  "
                         + "  ".join(f"{k}={int(best.get(k, 0))}/{d}" if k == "active_units"
                                     else f"{k}={_fmt(best.get(k))}" for k in _VALIDATION_KEYS))
        return "\n".join(lines)

    def report_text(self) -> str:
        """The quality report, plain sentences first then the numbers, or why there is none."""
        report = self.report
        if report is not None:  # plain sentences, then the numbers (engine.quality.summary)
            from napari_imc_vae.engine.quality.summary import quality_text

            # the held-out patches come from every training image: "these images" for several
            n_images = max(1, len(self.trained.baseline_info.get("images", ())))
            return quality_text(report, "held-out patches the model did not train on", n_images=n_images)
        lines = [f"No quality report: {self.report_error or 'no held-out patches (image too small)'}"]
        history = self.trained.validation_history if self.trained is not None else []
        val = history[-1] if history else None
        if val:  # figures with ML names go behind the fold (engine.quality.summary's second layer)
            from napari_imc_vae.engine.quality.summary import two_layer_text

            return two_layer_text(lines, "Last validation: " + ", ".join(
                f"{k} {val[k]:.3f}" for k in _VALIDATION_KEYS if k in val))
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    """``12 s`` under two minutes, else ``1.5 min``: a budget as the user gave it."""
    return f"{seconds:.3g} s" if seconds < 120 else f"{seconds / 60:.3g} min"


def _fmt(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.4g}"


__all__ = ["TrainOutcome", "TrainPlan"]
