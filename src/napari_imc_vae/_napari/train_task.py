"""The work behind the "Train VAE" widget, as plain functions (no Qt).

:func:`training_updates` is the body of the widget's napari ``thread_worker``: it runs a
:class:`~napari_imc_vae.engine.workflow.TrainingRun` in a helper thread and yields
:class:`TrainUpdate` batches of progress records at most every :data:`YIELD_INTERVAL_S`
seconds (a fast GPU does hundreds of steps a second; one Qt signal per step would flood
the event loop). With a budget, a :class:`TrainPlan` comes first: the steps the budget buys,
from a few steps of the run timed on this machine. It returns a :class:`TrainOutcome` with
the model and the quality report. :func:`estimate_step_rate` times a model before there is a run.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field, replace

# Imported here, on the main thread, not lazily in the worker: a first import holds the
# GIL for ~100 ms, which would freeze the GUI while the worker starts.
from napari_imc_vae.engine import metrics as _metrics  # noqa: F401 - see above
from napari_imc_vae.engine import quality as _quality  # noqa: F401
from napari_imc_vae.engine import workflow as _workflow  # noqa: F401
from napari_imc_vae.engine.budget import StepRate, plan_run, probe_step_rate
from napari_imc_vae.engine.checkpoint import TrainedModel
from napari_imc_vae.engine.critic import CriticConfig
from napari_imc_vae.engine.device import (
    apply_thread_policy,
    describe_precision,
    omp_wait_policy,
    release_cuda_memory,
    resolve_device,
    resolve_precision,
    to_cpu,
)
from napari_imc_vae.engine.trainer import TrainConfig, TrainProgress
from napari_imc_vae.io import ImcImage
from napari_imc_vae.preprocessing import NormalizationParams

__all__ = ["TrainRequest", "TrainPlan", "TrainUpdate", "TrainOutcome", "TrainJob", "check_request",
           "training_updates", "quality_report", "stream_calls", "describe_device",
           "format_report", "estimate_step_rate", "validation_interval"]

YIELD_INTERVAL_S = 0.1
#: Held-out patches for the quality report (bounds its time on big images).
QUALITY_VAL_PATCHES = 2048


@dataclass
class TrainRequest:
    """Everything one training run needs; built by the widget on the main thread."""

    images: list[ImcImage]
    normalization: NormalizationParams | None
    model_config: dict
    critic_config: CriticConfig
    train_config: TrainConfig
    resume: TrainedModel | None = None
    #: Minutes of training (the steps follow from a timing of the run); None: exact steps.
    budget_minutes: float | None = None


@dataclass
class TrainPlan:
    """What a budget buys, yielded once before training: the line to show and the steps."""

    text: str
    steps: int


@dataclass
class TrainUpdate:
    """Progress records gathered since the last update (at least one)."""

    records: list[TrainProgress]

    @property
    def last(self) -> TrainProgress:
        return self.records[-1]


@dataclass
class TrainOutcome:
    """What a finished run hands back: the model, whether it was stopped, its quality."""

    trained: TrainedModel
    stopped: bool
    report: object | None = None  # engine.quality.QualityReport
    report_error: str | None = None
    seconds: float = 0.0


@dataclass
class TrainJob:
    """Stop handle shared between the GUI thread and the worker (thread-safe)."""

    _stop: threading.Event = field(default_factory=threading.Event)
    _run: object | None = None

    def stop(self) -> None:
        """End training after the current step; the model so far is kept."""
        self._stop.set()
        if self._run is not None:
            self._run.stop()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()


def check_request(request: TrainRequest) -> None:
    """Fail fast, on the main thread, for input the engine would reject later.

    Raises
    ------
    ValueError
        An image smaller than the patch in either direction, or (when resuming) an
        image that lacks channels of the model's panel (names missing and extra ones).
    """
    if request.resume is not None:
        for im in request.images:
            try:
                request.resume.match_channels(im)  # extra channels are left out
            except ValueError as e:
                raise ValueError(f"cannot resume on {im.name}: {e}") from e
        patch = request.resume.model.config.patch_size
    else:
        patch = int(request.model_config.get("patch_size", 8))
    for im in request.images:
        _, h, w = im.shape
        if min(h, w) < patch:
            raise ValueError(f"image {im.name} is {h} × {w} px, smaller than the {patch} × {patch} px "
                             f"patch; choose a patch size of at most {min(h, w)}")


def validation_interval(steps: int) -> int:
    """Validate ~10 times a run, so that the plot and the final report have figures."""
    return max(1, min(TrainConfig().val_every, steps // 10 or 1))


def estimate_step_rate(n_channels: int, model_config: dict, critic_config: CriticConfig,
                       train_config: TrainConfig) -> StepRate:
    """Time a throwaway model of this shape with the threads training would use (a worker's body)."""
    if resolve_device(train_config.device).type == "cpu":
        apply_thread_policy()
    return probe_step_rate(n_channels, model_config, critic_config, train_config)


def quality_report(run, trained: TrainedModel):
    """The DESIGN §4 quality report of ``trained`` on the run's held-out patches.

    The baseline is the one stored in the model (PCA-k and the mean patch fitted on the
    training patches at the end of training), as in every later report of this model.

    Returns
    -------
    QualityReport or None
        None when the images were too small to hold out validation patches.
    """
    from napari_imc_vae.engine.quality import evaluate

    val = run.sampler.validation_patches(QUALITY_VAL_PATCHES)
    if val.shape[0] == 0:
        return None
    return evaluate(trained.model, val, baseline=trained.baseline, baseline_source=trained.baseline_source)


def training_updates(request: TrainRequest, job: TrainJob) -> Iterator[TrainPlan | TrainUpdate]:
    """Train, yielding progress batches; return a :class:`TrainOutcome`.

    With a budget, a few steps of the run are timed first (weights and step count restored)
    and a :class:`TrainPlan` yielded; the run then does those steps, within the budget's time.
    Training runs in a helper thread so that this generator can yield on a clock
    rather than once per step; :meth:`TrainJob.stop` ends it within one step.

    Raises
    ------
    Exception
        Whatever the engine raised (bad parameters, out of memory, a diverging loss).
    """
    from napari_imc_vae.engine.workflow import TrainingRun

    start = time.perf_counter()
    if resolve_device(request.train_config.device).type == "cpu":
        apply_thread_policy()
    run = TrainingRun(
        request.images, normalization=request.normalization, model_config=request.model_config,
        critic_config=request.critic_config, train_config=request.train_config, resume=request.resume,
    )
    job._run = run
    if job.stop_requested:  # Stop pressed while the data were being prepared
        run.stop()
    model = run.model
    try:
        if request.budget_minutes is not None and not job.stop_requested:
            text = plan_run(run, request.budget_minutes)
            steps = run.trainer.config.steps
            run.trainer.config = replace(run.trainer.config, val_every=validation_interval(steps))
            run.train_config = run.trainer.config  # the model file records the run that was made
            yield TrainPlan(text, steps)
        trained, stopped = yield from stream_calls(run.run, wrap=TrainUpdate, on_close=run.stop)
        report, report_error = None, None
        try:
            report = quality_report(run, trained)
        except Exception as e:  # noqa: BLE001 - the model is still good; say why there is no report
            report_error = f"{type(e).__name__}: {e}"
        trained.optimizer_state = to_cpu(trained.optimizer_state)
    finally:
        # ended, stopped, failed or the widget closed: hand the GPU memory back (micro-sam's
        # napari trainer kept it, their issue 952); the model lives on in the CPU's memory
        job._run = None
        del run
        release_cuda_memory(model)
    return TrainOutcome(trained, stopped, report, report_error, time.perf_counter() - start)


def stream_calls(fn: Callable[[Callable], object], *, wrap: Callable[[list], object] = list,
                 on_close: Callable[[], None] | None = None,
                 interval: float = YIELD_INTERVAL_S) -> Generator[object, None, object]:
    """Run ``fn(callback)`` in a helper thread; yield what the callback got, in batches.

    A generator cannot yield from inside a callback, so the work runs beside it and
    the callback's arguments go through a queue; every ``interval`` seconds the
    arguments gathered so far are yielded as ``wrap(list)``.

    Returns
    -------
    object
        What ``fn`` returned (``yield from`` hands it to the caller).

    Raises
    ------
    Exception
        What ``fn`` raised. If the generator is closed early (the worker was quit),
        ``on_close`` is called and the helper thread joined before it exits.
    """
    records: queue.SimpleQueue = queue.SimpleQueue()
    result: dict = {}

    def target() -> None:
        try:
            result["value"] = fn(records.put)
        except BaseException as e:  # noqa: BLE001 - re-raised in the generator
            result["error"] = e

    thread = threading.Thread(target=target, name="imc-vae-worker", daemon=True)
    thread.start()
    done = False
    try:
        while thread.is_alive() or not records.empty():
            thread.join(interval)
            batch = []
            while not records.empty():
                batch.append(records.get_nowait())
            if batch:
                yield wrap(batch)
        done = True
    finally:
        if not done and on_close is not None:
            on_close()
        thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def describe_device(name: str, precision: str = "auto") -> str:
    """'cuda:0 (NVIDIA H100 …), bf16 autocast' / 'cpu (2 threads, OpenMP wait passive), fp32 (…)'.

    For the device a choice resolves to, with the thread policy and the precision in use.
    """
    import warnings

    import torch

    try:
        dev = resolve_device(name)
    except ValueError as e:
        return str(e)
    with warnings.catch_warnings():  # the warning comes when training starts, not per redraw
        warnings.simplefilter("ignore")
        how = describe_precision(resolve_precision(precision, dev), dev)
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)}), {how}"
    if dev.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads, OpenMP wait {omp_wait_policy()}), {how}"
    return f"{dev}, {how}"


def format_report(outcome: TrainOutcome) -> str:
    """The quality report in plain language, verdicts first."""
    report = outcome.report
    if report is not None:
        verdicts = "\n".join(f"• {v}" for v in report.verdicts())
        return f"{verdicts}\n\n{report.format_text()}"
    lines = [f"No quality report: {outcome.report_error or 'no held-out patches (image too small)'}"]
    val = outcome.trained.validation_history[-1] if outcome.trained.validation_history else None
    if val:
        lines.append("Last validation: " + ", ".join(
            f"{k} {val[k]:.3f}" for k in ("r2", "sharpness_ratio", "diversity_ratio",
                                          "active_units", "perm_accuracy") if k in val))
    return "\n".join(lines)
