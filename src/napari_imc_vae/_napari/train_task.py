"""The work behind the "Train VAE" widget, as plain functions (no Qt): a few dozen lines over
:func:`napari_imc_vae.engine.training.train_model`.

:func:`training_updates` is the body of the widget's napari ``thread_worker``: it turns the
widget's :class:`TrainRequest` into :class:`~napari_imc_vae.engine.training.TrainSettings`, runs
the use case in a helper thread and yields its :class:`TrainPlan` (once, before the first step)
and :class:`TrainUpdate` batches of progress records at most every :data:`YIELD_INTERVAL_S`
seconds (a fast GPU does hundreds of steps a second; one Qt signal per step would flood the
event loop). It returns the use case's :class:`TrainOutcome`. :func:`estimate_step_rate` times a
model before there is a run.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass

# Imported here, on the main thread, not lazily in the worker: a first import holds the
# GIL for ~100 ms, which would freeze the GUI while the worker starts.
from napari_imc_vae.engine.quality import measures as _measures  # noqa: F401 - see above
from napari_imc_vae.engine.quality import evaluate as _quality  # noqa: F401
from napari_imc_vae.engine.training.budget import StepRate, probe_step_rate
from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
from napari_imc_vae.engine.model.critic import CriticConfig
from napari_imc_vae.engine.defaults import validation_interval
from napari_imc_vae.engine.device import (
    apply_thread_policy,
    describe_precision,
    omp_wait_policy,
    resolve_device,
    resolve_precision,
)
from napari_imc_vae.engine.training.trainer import TrainConfig, TrainProgress
from napari_imc_vae.engine.training.control import StopRequest
from napari_imc_vae.engine.training.outcome import TrainOutcome, TrainPlan
from napari_imc_vae.engine.training.settings import TrainSettings
from napari_imc_vae.engine.training.use_case import train_model
from napari_imc_vae.io import ImcImage
from napari_imc_vae.preprocessing import NormalizationParams

__all__ = ["TrainRequest", "TrainPlan", "TrainUpdate", "TrainOutcome", "TrainJob", "check_request",
           "training_updates", "stream_calls", "describe_device", "format_report", "estimate_step_rate",
           "validation_interval"]

YIELD_INTERVAL_S = 0.1


@dataclass
class TrainRequest:
    """Everything one training run needs; built by the widget on the main thread."""

    images: list[ImcImage]
    normalization: NormalizationParams | None
    model_config: dict | None
    critic_config: CriticConfig
    train_config: TrainConfig
    resume: TrainedModel | None = None
    #: Minutes of training (the steps follow from a timing of the run); None: exact steps.
    budget_minutes: float | None = None

    def settings(self) -> TrainSettings:
        """The use case's settings: the form's values are the caller's choice (on resume the form
        shows the model's); the validation interval is the engine's policy."""
        train = {k: v for k, v in asdict(self.train_config).items() if k != "val_every"}
        return TrainSettings(model=self.model_config or {}, critic=asdict(self.critic_config), train=train,
                             normalization=self.normalization, budget_minutes=self.budget_minutes)


@dataclass
class TrainUpdate:
    """Progress records gathered since the last update (at least one)."""

    records: list[TrainProgress]

    @property
    def last(self) -> TrainProgress:
        return self.records[-1]


class TrainJob(StopRequest):
    """The widget's stop request, shared between the GUI thread and the worker (thread-safe)."""

    def stop(self) -> None:
        """End training after the current step; the model so far is kept."""
        self.set()

    @property
    def stop_requested(self) -> bool:
        return self.is_set()


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
        patch = int((request.model_config or {}).get("patch_size", 8))
    for im in request.images:
        _, h, w = im.shape
        if min(h, w) < patch:
            raise ValueError(f"image {im.name} is {h} × {w} px, smaller than the {patch} × {patch} px "
                             f"patch; choose a patch size of at most {min(h, w)}")


def estimate_step_rate(n_channels: int, model_config: dict, critic_config: CriticConfig,
                       train_config: TrainConfig) -> StepRate:
    """Time a throwaway model of this shape with the threads training would use (a worker's body)."""
    if resolve_device(train_config.device).type == "cpu":
        apply_thread_policy()
    return probe_step_rate(n_channels, model_config, critic_config, train_config)


def training_updates(request: TrainRequest, job: TrainJob) -> Iterator[TrainPlan | TrainUpdate]:
    """Train (:func:`~napari_imc_vae.engine.training.train_model`), yielding the plan, then progress
    batches; return its :class:`TrainOutcome`. :meth:`TrainJob.stop` ends it within one step.

    Raises
    ------
    Exception
        Whatever the engine raised (bad parameters, out of memory, a diverging loss).
    """
    def work(report: Callable) -> TrainOutcome:
        return train_model(request.images, request.settings(), resume=request.resume, on_progress=report,
                           stop=job)

    batches = stream_calls(work, on_close=job.stop)
    try:
        while True:
            batch = next(batches)
            records = [r for r in batch if isinstance(r, TrainProgress)]
            yield from (r for r in batch if isinstance(r, TrainPlan))
            if records:
                yield TrainUpdate(records)
    except StopIteration as done:
        return done.value
    finally:
        batches.close()


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
    """The quality report in plain language, verdicts first (as the CLI prints it)."""
    return outcome.report_text()
