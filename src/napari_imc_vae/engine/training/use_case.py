"""Training a model: the one home of the CLI's ``train`` and of the Train widget.

:func:`train_model` goes down once and comes back once: settings merged (one rule, see
:mod:`.settings`), thread policy, data, a few steps timed and the run planned, training,
the quality report, the GPU handed back. The callers parse input and show progress and outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace

from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
from napari_imc_vae.engine.data.cohort import CohortOptions
from napari_imc_vae.engine.defaults import validation_interval
from napari_imc_vae.engine.device import (
    compute_policy,
    leaving_process_group,
    release_cuda_memory,
    resolve_device,
    resolve_precision,
    to_cpu,
)
from napari_imc_vae.engine.training.control import StopRequest
from napari_imc_vae.engine.training.outcome import TrainOutcome, TrainPlan
from napari_imc_vae.engine.training.settings import TrainSettings, merge_settings
from napari_imc_vae.engine.training.trainer import TrainProgress
from napari_imc_vae.engine.training.run import TrainingRun
from napari_imc_vae.io import ImcImage


def train_model(
    images: ImcImage | Sequence[ImcImage],
    settings: TrainSettings | None = None,
    *,
    resume: TrainedModel | None = None,
    on_progress: Callable[[TrainPlan | TrainProgress], None] | None = None,
    stop: StopRequest | None = None,
    data: CohortOptions | None = None,
) -> TrainOutcome:
    """Train a new model on ``images``, or continue ``resume``; measure it; hand the GPU back.

    Parameters
    ----------
    images : ImcImage, list of ImcImage or ImageStream
        Raw images of one panel; a stream is read file by file (twice: fit, then normalize).
    settings : TrainSettings, optional
        What the caller chose. Merged with the engine's defaults for a new model, and with the
        resumed model's own settings otherwise: the architecture and normalization are the
        model's; loss weights, batch size, learning rate, seed and the other carried training
        fields are the model's unless given; steps (or the budget), time limit, device and
        precision are this run's (:func:`~napari_imc_vae.engine.training.settings.merge_settings`).
    resume : TrainedModel, optional
        Continue this model: its normalizer, weights, optimizer state and step count.
    on_progress : callable, optional
        Called with one :class:`TrainPlan` after the data are ready and a few steps were timed
        (also under ``estimate_only``), then with a
        :class:`~napari_imc_vae.engine.training.trainer.TrainProgress` every ``log_every`` steps. It runs
        in the training thread; an exception it raises ends the run (``KeyboardInterrupt`` too).
    stop : StopRequest, optional
        The caller's: once set, the run ends after the current step and the model so far is
        kept (set before training starts, no step is trained).
    data : CohortOptions, optional
        How the normalized pixels are held (default from the environment).

    Returns
    -------
    TrainOutcome
        The model, whether it was stopped, the quality report on the run's held-out patches
        (the same patches validation used; main process only), the plan.

    Raises
    ------
    ValueError
        Bad settings (naming the field), an image the run cannot use, another architecture
        asked of a resumed model.
    TrainingError
        Out of memory (the message names a smaller batch), a loss that became NaN.

    Notes
    -----
    Policies applied here and nowhere else: the CPU thread policy, once, before the data are
    prepared; a few steps timed to plan every run (a budget's steps, or how long exact steps
    take); the validation interval from the run's steps (:func:`~napari_imc_vae.engine.defaults.
    validation_interval`) unless ``settings.train`` gives ``val_every``; the report after training;
    optimizer state to the CPU and GPU memory released, however the run ends; under ``torchrun``
    the process group is left at the end (unless the caller had joined it before the call).
    """
    start = time.perf_counter()
    settings = settings if settings is not None else TrainSettings()
    stop = stop if stop is not None else StopRequest()
    merged = merge_settings(settings, resume)
    device = resolve_device(merged.train.device)
    compute = compute_policy(device, resolve_precision(merged.train.precision, device))
    run = model = forget_stop = None
    # a group the caller joined stays joined; one the Trainer joined is left after the memory is released
    with leaving_process_group():
        try:
            # inside the try: the Trainer joins the process group and can fail after that
            # (a resumed optimizer state that does not load), which must leave it again
            run = TrainingRun(images, normalization=merged.normalization, model_config=merged.model or None,
                              critic_config=merged.critic, train_config=merged.train, resume=resume, data=data)
            model, is_main = run.model, run.trainer.dist.is_main
            forget_stop = stop.on_set(run.stop)
            plan = _plan(run, settings, merged, compute, resume, stopped=stop.is_set())
            run.use_train_config(plan.train_config)
            if on_progress is not None:
                on_progress(plan)
            if settings.estimate_only:
                return TrainOutcome(None, False, seconds=time.perf_counter() - start, plan=plan, is_main=is_main)
            trained, stopped = run.run(on_progress)
            report, report_error = _report(run, trained) if is_main else (None, "not the main process")
            trained.optimizer_state = to_cpu(trained.optimizer_state)
        finally:
            # ended, stopped, failed or the caller went away: hand the GPU memory back (micro-sam's
            # napari trainer kept it, their issue 952); the model lives on in the CPU's memory
            if forget_stop is not None:
                forget_stop()
            del run
            # a run that failed while being built leaves no model here but a resumed one
            model = model if model is not None else getattr(resume, "model", None)
            release_cuda_memory(*(() if model is None else (model,)))
    return TrainOutcome(trained, stopped, report, report_error, time.perf_counter() - start, plan, is_main)


def _plan(run: TrainingRun, settings: TrainSettings, merged, compute: str, resume, *, stopped: bool) -> TrainPlan:
    """Time a few steps (not when already stopped) and fix the run's steps and validation interval."""
    from napari_imc_vae.engine.training.budget import plan_run

    config = merged.train
    if stopped:
        text = "stopped before training started"
    else:
        planned = plan_run(run, settings.budget_minutes)
        config = replace(config, steps=planned.steps, time_limit_s=planned.time_limit_s)
        text = planned.text
    if "val_every" not in settings.train:
        config = replace(config, val_every=validation_interval(config.steps))
    cfg, sampler = run.model.config, run.sampler
    data = (f"{run.device}: {len(run.image_names)} image(s), {cfg.in_channels} channels, "
            f"{sampler.n_train} training / {sampler.n_val} validation positions, patch {cfg.patch_size}, "
            f"latent {cfg.latent_dim}, {cfg.arch}"
            + (f", resuming from step {resume.step}" if resume is not None else ""))
    return TrainPlan(text, config.steps, config.val_every, data, compute, asdict(cfg), merged.critic, config,
                     merged.notes, resume.step if resume is not None else None)


def _report(run: TrainingRun, trained: TrainedModel):
    """The DESIGN §4 quality report on the patches validation used, against the stored baseline.

    Returns ``(report, None)``, or ``(None, why)``: images too small to hold out patches, or the
    report failed (the model is still good).
    """
    from napari_imc_vae.engine.quality.evaluate import evaluate

    val = run.sampler.validation_patches(run.train_config.max_val_patches)
    if val.shape[0] == 0:
        return None, "no held-out patches (image too small)"
    try:
        return evaluate(trained.model, val, baseline=trained.baseline,
                        baseline_source=trained.baseline_source), None
    except Exception as e:  # noqa: BLE001 - the model is still good; say why there is no report
        return None, f"{type(e).__name__}: {e}"


__all__ = ["train_model"]
