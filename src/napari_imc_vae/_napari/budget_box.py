"""The "Estimated: …" line of the "Train VAE" widget: what the budget buys on this machine.

The step rate comes from :func:`.train_task.estimate_step_rate` (a throwaway model of the run's
shape timed for a few steps, 1-3 s on a CPU) in a napari worker, never on the GUI thread. It is
measured again only when something it depends on changes (channels, model, critic, batch,
device); a new budget or step count is only a new line of text.

A timing is never taken while other work of the plugin runs (training, normalizing,
reconstructing: any napari worker, which all run in Qt's global thread pool): it would time a
busy machine. It waits for that work to end, and a timing that other work overlapped is
thrown away. After a training run, the line uses the rate that run achieved
(:meth:`EstimateBox.show_achieved`), so that it never contradicts the run shown above it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, astuple, dataclass

import threading

from napari.qt.threading import create_worker
from qtpy.QtCore import QThreadPool, QTimer, Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from napari_imc_vae._napari.train_task import estimate_step_rate
from napari_imc_vae.engine.training.budget import StepRate, describe_plan, format_duration
from napari_imc_vae.engine.model.critic import CriticConfig
from napari_imc_vae.engine.training.trainer import TrainConfig

#: Wait this long after the last change before timing (typing a number is several changes).
DEBOUNCE_MS = 500
#: How often a timing that waits for other work looks again, and how often a running timing
#: checks that no other work started beside it.
BUSY_POLL_MS = 250
#: The helper thread a training run steps in (``train_task.stream_calls``).
TRAINING_THREAD = "imc-vae-worker"


def other_work_running(own_workers: int = 0) -> bool:
    """Work of the plugin is running besides ``own_workers`` of the caller's napari workers.

    napari workers (``create_worker``) run in Qt's global thread pool; a training run steps in
    a helper thread of its worker.
    """
    if QThreadPool.globalInstance().activeThreadCount() > own_workers:
        return True
    return any(t.name == TRAINING_THREAD and t.is_alive() for t in threading.enumerate())


def time_alone(n_channels: int, model_config: dict, critic_config: CriticConfig,
               train_config: TrainConfig) -> tuple[StepRate, bool]:
    """The step rate (a worker's body), and whether other work ran as it started or ended."""
    before = other_work_running(own_workers=1)
    rate = estimate_step_rate(n_channels, model_config, critic_config, train_config)
    return rate, before or other_work_running(own_workers=1)


@dataclass(frozen=True)
class EstimateInputs:
    """What the estimate is for; ``minutes`` None means exactly ``train_config.steps`` steps."""

    n_channels: int
    model_config: dict
    critic_config: CriticConfig
    train_config: TrainConfig
    minutes: float | None

    def rate_key(self) -> tuple:
        """What the step rate depends on (not the budget, not the step count)."""
        tc = self.train_config
        return (self.n_channels, tuple(sorted(self.model_config.items())), astuple(self.critic_config),
                tc.batch_size, tc.device, tc.precision)


def estimate_inputs(images, form, resume=None) -> EstimateInputs:
    """What the estimate is for: the checked images' channels (or the resumed model's) and the form.

    Parameters
    ----------
    images : ImageChecklist
    form : TrainForm
    resume : TrainedModel, optional

    Raises
    ------
    ValueError
        Nothing to estimate (no image checked) or bad settings.
    """
    sources = images.checked()  # channel names only: no pixels are read
    if resume is not None:
        model_config = asdict(resume.model.config)
        n_channels = model_config.pop("in_channels")
    else:
        model_config, n_channels = form.model_config(), len(sources[0].channel_names)
    return EstimateInputs(n_channels, model_config, form.critic_config(), form.train_config(),
                          form.budget_minutes())


class EstimateBox(QWidget):
    """A line with the estimated training, and an "Estimate" button to time it again.

    Parameters
    ----------
    inputs : callable
        Returns the :class:`EstimateInputs` the widget describes now; raises ValueError (its
        message is shown) when there is nothing to estimate, e.g. no image checked.

    Attributes
    ----------
    rate : StepRate or None
        The last step rate measured, or achieved by the last run (``rate_source``).
    rate_source : str
        ``"measured"`` (a few steps timed here) or ``"achieved"`` (by the last training run).
    timings_started : int
        How many timings were started (the tests read it).
    planned_steps : int or None
        The steps of the line shown (what the budget buys, or the exact steps).
    estimated : Signal(str)
        The line, each time a new one is shown.
    """

    estimated = Signal(str)

    def __init__(self, inputs: Callable[[], EstimateInputs], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._inputs = inputs
        self.rate: StepRate | None = None
        self.rate_source = "measured"
        self.timings_started = 0
        self.planned_steps: int | None = None
        self._rate_key: tuple | None = None  # what ``rate`` was measured for
        self._measuring: tuple | None = None
        self._worker = None
        self._waiting: list[Callable[[], None]] = []  # called when the running timing ends
        self._blocked = False
        self._images = None  # the checklist whose "selected layers" box makes selections count
        self.label = QLabel("Estimated: check an image to see how long training takes.")
        self.label.setWordWrap(True)
        self.button = QPushButton("Estimate")
        self.button.setToolTip("Time a few training steps on this machine now")
        self.button.clicked.connect(lambda: self.estimate(measure=True))
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.estimate)
        # waiting for other work to end (single shot), and watching a running timing (repeats)
        self._wait_timer = QTimer(self)
        self._wait_timer.setSingleShot(True)
        self._wait_timer.setInterval(BUSY_POLL_MS)
        self._wait_timer.timeout.connect(self._retry)
        self._measure_requested = False
        self._watch_timer = QTimer(self)
        self._watch_timer.setInterval(BUSY_POLL_MS)
        self._watch_timer.timeout.connect(self._watch)
        self._disturbed = False  # other work ran beside the timing: its rate is not kept
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.button)

    @property
    def busy(self) -> bool:
        """A step rate is being measured."""
        return self._worker is not None

    def follow(self, viewer, images, form) -> None:
        """Estimate again after the checked images, the layer selection or the form change."""
        self._images = images
        images.changed.connect(self.schedule)
        form.changed.connect(self.schedule)
        viewer.layers.selection.events.changed.connect(self._selection_changed)

    def _selection_changed(self, event=None) -> None:
        try:
            if self._images.use_selection.isChecked():
                self.schedule()
        except RuntimeError:  # the Qt side is gone (widget closed); the viewer lives on
            pass

    def schedule(self, *_) -> None:
        """Estimate once the settings have stopped changing for :data:`DEBOUNCE_MS`."""
        if not self._blocked:
            self._timer.start()

    def set_blocked(self, blocked: bool) -> None:
        """No estimates while training runs (it would slow training and measure a busy machine)."""
        was_blocked, self._blocked = self._blocked, blocked
        self.button.setEnabled(not blocked)
        if blocked:
            self._timer.stop()
            self._wait_timer.stop()
        elif was_blocked:
            self.schedule()  # the settings may have changed while training ran

    def when_idle(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` now, or when the step rate being measured is known (training waits for it)."""
        if self._worker is None:
            fn()
        else:  # decided on the GUI thread, where _on_finished clears _worker: no missed signal
            self._waiting.append(fn)

    def estimate(self, *, measure: bool = False) -> None:
        """Show the line for the settings now; time the steps if the rate is not known for them.

        ``measure`` times them again even if it is (the "Estimate" button).
        """
        self._timer.stop()
        self._wait_timer.stop()
        try:
            inputs = self._inputs()
        except (ValueError, TypeError) as e:
            self._show_text(f"Estimated: {e}", None)
            return
        if inputs.rate_key() == self._rate_key and not measure:
            self._show(inputs)
        elif self._blocked:
            self._show_text("Estimated: timed again when this run ends.", None)
        elif self._worker is not None:  # again when the one running ends
            return
        elif other_work_running():
            self._measure_requested = self._measure_requested or measure
            self._show_text("Estimated: timed when the work running now ends.", None)
            self._wait_timer.start()
        else:
            self._measure_requested = False
            self._measure(inputs)

    def current_key(self) -> tuple | None:
        """What a step rate measured now would be for (None: nothing to estimate)."""
        try:
            return self._inputs().rate_key()
        except (ValueError, TypeError):
            return None

    def show_achieved(self, key: tuple | None, steps: int, seconds: float, batch_size: int,
                      device: str) -> None:
        """Use the rate a training run achieved (``steps`` in ``seconds``) for the settings ``key``."""
        if key is None or steps < 1 or seconds <= 0:
            return
        bf16 = self.rate.bf16 if self.rate is not None else False
        self.rate = StepRate(steps / seconds, device, bf16, batch_size)
        self.rate_source, self._rate_key = "achieved", key

    def _retry(self) -> None:
        self.estimate(measure=self._measure_requested)

    def _watch(self) -> None:
        if other_work_running(own_workers=1):
            self._disturbed = True

    def show_plan(self, text: str, steps: int) -> None:
        """Show the plan of the run that has started (timed on the run itself)."""
        self._show_text(f"Planned: {text}", steps)

    def _measure(self, inputs: EstimateInputs) -> None:
        worker = create_worker(time_alone, inputs.n_channels, inputs.model_config,
                               inputs.critic_config, inputs.train_config, _start_thread=False,
                               _ignore_errors=True)
        # bound methods, not lambdas: Qt drops them if this widget is deleted first
        worker.returned.connect(self._on_rate)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker, self._measuring = worker, inputs.rate_key()
        self._disturbed = False
        self.label.setText("Estimated: timing a few training steps on this machine …")
        self.timings_started += 1
        worker.start()
        self._watch_timer.start()

    def _on_rate(self, timed: tuple[StepRate, bool]) -> None:
        rate, overlapped = timed
        if overlapped or self._disturbed:  # other work shared the machine: time again once it ends
            self._rate_key, self._disturbed = None, True
            return
        self.rate, self.rate_source, self._rate_key = rate, "measured", self._measuring

    def _on_error(self, exc: Exception) -> None:
        self._rate_key = None
        self._show_text(f"Estimate failed: {type(exc).__name__}: {exc}", None)

    def _on_finished(self) -> None:
        self._watch_timer.stop()
        self._worker = None
        waiting, self._waiting = self._waiting, []
        for fn in waiting:
            fn()
        if self._rate_key is not None or self._disturbed:
            self.estimate()  # the settings may have changed meanwhile: then it measures again

    def _show(self, inputs: EstimateInputs) -> None:
        rate = self.rate
        if inputs.minutes is None:
            steps = inputs.train_config.steps
        else:
            steps = rate.steps_for(60.0 * inputs.minutes)
        if self.rate_source == "measured":
            self._show_text(f"Estimated: {describe_plan(steps, rate, inputs.minutes)}", steps)
            return
        head = (f"{steps:,} steps: about {format_duration(rate.seconds_for(steps))}"
                if inputs.minutes is None else f"budget {inputs.minutes:g} min: {steps:,} steps")
        self._show_text(f"Estimated: {head} at {rate.steps_per_s:.1f} steps/s, the rate the last "
                        f"run achieved", steps)

    def _show_text(self, text: str, steps: int | None) -> None:
        self.planned_steps = steps
        self.label.setText(text)
        self.estimated.emit(text)
