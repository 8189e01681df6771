"""The "Estimated: …" line of the "Train VAE" widget: what the budget buys on this machine.

The step rate comes from :func:`.train_task.estimate_step_rate` (a throwaway model of the run's
shape timed for a few steps, 1-3 s on a CPU) in a napari worker, never on the GUI thread. It is
measured again only when something it depends on changes (channels, model, critic, batch,
device); a new budget or step count is only a new line of text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, astuple, dataclass

from napari.qt.threading import create_worker
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from napari_imc_vae._napari.train_task import estimate_step_rate
from napari_imc_vae.engine.budget import StepRate, describe_plan
from napari_imc_vae.engine.critic import CriticConfig
from napari_imc_vae.engine.trainer import TrainConfig

#: Wait this long after the last change before timing (typing a number is several changes).
DEBOUNCE_MS = 500


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
        The last step rate measured.
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
        try:
            inputs = self._inputs()
        except (ValueError, TypeError) as e:
            self._show_text(f"Estimated: {e}", None)
            return
        if inputs.rate_key() == self._rate_key and not measure:
            self._show(inputs)
        elif self._blocked:
            self._show_text("Estimated: timed again when this run ends.", None)
        elif self._worker is None:  # else: again when the one running ends
            self._measure(inputs)

    def show_plan(self, text: str, steps: int) -> None:
        """Show the plan of the run that has started (timed on the run itself)."""
        self._show_text(f"Planned: {text}", steps)

    def _measure(self, inputs: EstimateInputs) -> None:
        worker = create_worker(estimate_step_rate, inputs.n_channels, inputs.model_config,
                               inputs.critic_config, inputs.train_config, _start_thread=False,
                               _ignore_errors=True)
        # bound methods, not lambdas: Qt drops them if this widget is deleted first
        worker.returned.connect(self._on_rate)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker, self._measuring = worker, inputs.rate_key()
        self.label.setText("Estimated: timing a few training steps on this machine …")
        worker.start()

    def _on_rate(self, rate: StepRate) -> None:
        self.rate, self._rate_key = rate, self._measuring

    def _on_error(self, exc: Exception) -> None:
        self._rate_key = None
        self._show_text(f"Estimate failed: {type(exc).__name__}: {exc}", None)

    def _on_finished(self) -> None:
        self._worker = None
        waiting, self._waiting = self._waiting, []
        for fn in waiting:
            fn()
        if self._rate_key is not None:
            self.estimate()  # the settings may have changed meanwhile: then it measures again

    def _show(self, inputs: EstimateInputs) -> None:
        rate = self.rate
        if inputs.minutes is None:
            steps = inputs.train_config.steps
        else:
            steps = rate.steps_for(60.0 * inputs.minutes)
        self._show_text(f"Estimated: {describe_plan(steps, rate, inputs.minutes)}", steps)

    def _show_text(self, text: str, steps: int | None) -> None:
        self.planned_steps = steps
        self.label.setText(text)
        self.estimated.emit(text)
