"""Dock widget "Train VAE": train the patch VAE on IMC images, watch it, judge it, save it.

A thin adapter over :func:`.train_task.training_updates`, which runs in a napari
``thread_worker`` and yields batches of progress records; this widget turns them into a
progress bar, a line of text, the activity dock's progress and a live plot of the critic
terms. Before training, :class:`.budget_box.EstimateBox` shows what the budget buys on this
machine. Closing the widget or the viewer stops training (the model so far is kept). Saving
the model, resuming from a file and starting anew: :mod:`.train_model_files`.
"""

from __future__ import annotations

import time

from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from napari_imc_vae._napari.bmz_button import zoo_export_button
from napari_imc_vae._napari.budget_box import EstimateBox, estimate_inputs
from napari_imc_vae._napari.checklist import ImageChecklist
from napari_imc_vae._napari.dock_layout import DOCK_MAX_WIDTH, dock_size_hint, scrolling
from napari_imc_vae._napari.loss_plot import LossPlot
from napari_imc_vae._napari.model_store import RunState, RunStatus, model_store
from napari_imc_vae._napari.report_view import ReportView
from napari_imc_vae._napari.train_form import TrainForm
from napari_imc_vae._napari.train_model_files import TrainModelFiles
from napari_imc_vae._napari.train_progress import PROGRESS_INTERVAL_MS, RunShutdown, still_animations
from napari_imc_vae._napari.train_task import (
    TrainJob,
    TrainOutcome,
    TrainPlan,
    TrainRequest,
    TrainUpdate,
    check_request,
    describe_device,
    format_report,
    training_updates,
)
from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
from napari_imc_vae.engine.device import available_devices, format_cuda_memory
from napari_imc_vae.engine.training.run import DEFAULT_NORMALIZATION


class TrainWidget(TrainModelFiles, QWidget):
    """Train a D4-invariant patch VAE on the checked IMC images.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        Injected by napari when docked from Plugins > IMC VAE.

    Attributes
    ----------
    status : RunStatus
        IDLE → TRAINING → DONE / STOPPED / FAILED; drives the buttons.
    estimate : EstimateBox
        The estimated (then planned) training on this machine; updated as the settings change.
    trained : TrainedModel or None
        The last model trained (also put in the viewer's model store for "Reconstruct").
    outcome : TrainOutcome or None
    finished : Signal(object)
        Emitted at the end of a run: the :class:`TrainOutcome`, or None when it failed.
    """

    finished = Signal(object)

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.status = RunStatus()
        self.trained: TrainedModel | None = None
        self.outcome: TrainOutcome | None = None
        self.resume: TrainedModel | None = None
        self.worker = None
        self._pbar = None
        self._shown_at = 0.0  # time.monotonic() of the last progress shown
        # (time.monotonic(), run step) when training began and at the last update: the rate
        # the run achieved, which the estimate shows after the run
        self._run_clock: list[tuple[float, int]] = []
        self._run_key = None  # the estimate's settings key of the run
        self.activity_updates = 0  # how many there were (the bench and the tests read it)
        self._device = None
        self._shutdown = RunShutdown()
        self.destroyed.connect(self._shutdown)
        QApplication.instance().aboutToQuit.connect(self._shutdown)  # the viewer's window closed

        self.images = ImageChecklist(napari_viewer)
        self.form = TrainForm(DEFAULT_NORMALIZATION, available_devices())
        self.device_label = QLabel()
        self.device_label.setWordWrap(True)  # device, threads and precision: wider than the dock
        self.gpu_memory_label = QLabel()  # shown while training on CUDA
        self.gpu_memory_label.hide()
        self.form.device.changed.connect(self._show_device)
        self._show_device(self.form.device.value)
        self.resume_label = QLabel("New model")
        self.resume_label.setWordWrap(True)

        self.estimate = EstimateBox(lambda: estimate_inputs(self.images, self.form, self.resume))
        self.estimate.follow(napari_viewer, self.images, self.form)

        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(self.train)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.save_button = QPushButton("Save model…")
        self.save_button.clicked.connect(lambda: self.save_model())
        self.export_button = zoo_export_button(self)  # next to Save model…; enables itself
        self.resume_button = QPushButton("Resume from…")
        self.resume_button.clicked.connect(lambda: self.resume_from())
        self.fresh_button = QPushButton("New model")
        self.fresh_button.setToolTip("Forget the model to resume; train a new one")
        self.fresh_button.clicked.connect(self.clear_resume)
        row1, row2 = QHBoxLayout(), QHBoxLayout()
        for b in (self.train_button, self.stop_button):
            row1.addWidget(b)
        for b in (self.save_button, self.resume_button, self.fresh_button):
            row2.addWidget(b)

        self.activity = QCheckBox("Also show progress in napari's activity dock")
        self.activity.setChecked(False)  # on, it cut training tenfold under Xvfb (issue 17)
        self.activity.setToolTip(
            "napari animates an indicator while a task runs; with software OpenGL (remote "
            "desktops, Xvfb) every frame repaints the window and slows training down, so the "
            f"widget keeps it still and updates the progress at most {1000 // PROGRESS_INTERVAL_MS} "
            "times a second")
        self.progress_bar = QProgressBar()
        self.progress_text = QLabel("Check an image and press Train.")
        self.progress_text.setWordWrap(True)
        # room for three lines up front: a label that grows re-lays out the whole window
        self.progress_text.setMinimumHeight(3 * self.progress_text.fontMetrics().lineSpacing() + 4)
        self.progress_text.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.progress_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.plot = LossPlot()
        self.report = ReportView("The quality report appears here when training ends.")
        # one tab each, so the report gets the whole lower part of the dock, not a sliver
        self.tabs = QTabWidget()
        self.tabs.addTab(self.plot, "Loss curves")
        self.tabs.addTab(self.report, "Quality report")

        # settings scroll (a 1080p screen cannot show the whole form); the run's controls, its
        # progress and the plot stay in view below them, the two parts split by a handle
        settings = QWidget()
        top = QVBoxLayout(settings)
        top.setContentsMargins(0, 0, 0, 0)
        for w in (QLabel("Images (one panel)"), self.images, self.form.native, self.device_label,
                  self.resume_label):
            top.addWidget(w)
        self.settings_area = scrolling(settings)
        run = QWidget()
        below = QVBoxLayout(run)
        below.setContentsMargins(0, 0, 0, 0)
        below.addWidget(self.estimate)
        below.addLayout(row1)
        below.addLayout(row2)
        below.addWidget(self.export_button)
        for w in (self.activity, self.gpu_memory_label, self.progress_bar, self.progress_text):
            below.addWidget(w)
        below.addWidget(self.tabs, 1)
        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.setChildrenCollapsible(False)
        self.split.addWidget(self.settings_area)
        self.split.addWidget(run)
        self.split.setStretchFactor(1, 1)  # the plot grows with the dock; the settings scroll
        layout = QVBoxLayout(self)
        layout.addWidget(self.split)
        self.setMaximumWidth(DOCK_MAX_WIDTH)
        self.status.changed.connect(self._update_buttons)
        self._update_buttons(self.status.state)
        self.estimate.schedule()

    def sizeHint(self):  # noqa: N802 - Qt API; the dock's first width
        return dock_size_hint(self)

    # state --------------------------------------------------------------------------------------
    def _update_buttons(self, state: RunState) -> None:
        busy = state.busy
        self.train_button.setEnabled(not busy)
        self.stop_button.setEnabled(busy)
        self.save_button.setEnabled(not busy and self.trained is not None)
        self.resume_button.setEnabled(not busy)
        self.fresh_button.setEnabled(not busy and self.resume is not None)
        self.form.enabled = not busy
        self.images.setEnabled(not busy)
        self.estimate.set_blocked(busy)

    def _show_device(self, name: str) -> None:
        self.device_label.setText(f"Device in use: {describe_device(name)}")

    # actions ------------------------------------------------------------------------------------
    def request(self) -> TrainRequest:
        """The run the widget describes (images copied from the layers, on the main thread).

        Raises
        ------
        ValueError
            No usable image, bad parameters, or an image the run cannot use.
        """
        sources = self.images.checked()
        form = self.form
        request = TrainRequest(
            images=[s.image for s in sources], normalization=form.normalization(),
            model_config=None if self.resume else form.model_config(),
            critic_config=form.critic_config(), train_config=form.train_config(),
            resume=self.resume, budget_minutes=form.budget_minutes(),
        )
        check_request(request)
        return request

    def train(self):
        """Start training in a worker thread.

        Returns
        -------
        napari worker or None
            None when the input is unusable: an error notification names the problem
            and nothing in the viewer changes.
        """
        if self.status.state.busy:
            return None
        try:
            request = self.request()
        except (ValueError, TypeError) as e:
            show_error(f"Train VAE: {e}")
            return None
        job = TrainJob()
        worker = create_worker(training_updates, request, job, _start_thread=False,
                               _ignore_errors=True)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        self._shutdown.job, self._shutdown.worker = job, worker
        self.worker, self.job = worker, job
        self.plot.clear()
        if request.resume is not None:
            self.plot.add_history(request.resume.history, request.resume.validation_history)
        # under a budget the steps are known once the run is timed (TrainPlan); 0: busy bar
        steps = request.train_config.steps if request.budget_minutes is None else 0
        self.progress_bar.setRange(0, steps)
        self.progress_bar.setValue(0)
        timing = "" if request.budget_minutes is None else " and timing a few steps"
        self.progress_text.setText(f"Preparing {len(request.images)} image(s){timing} …")
        self.report.set_report("")
        self.tabs.setCurrentWidget(self.plot)
        if self.activity.isChecked():
            self._pbar = progress(total=steps, desc="Training VAE")
            still_animations(self.window())
        self._shown_at = 0.0
        self._run_clock, self._run_key = [], self.estimate.current_key()
        self.status.state = RunState.TRAINING  # no new estimates from here
        shutdown = self._shutdown
        # one timing at a time: a step rate being measured ends first (1-3 s)
        self.estimate.when_idle(lambda: None if shutdown.closed else worker.start())
        return worker

    def stop(self) -> None:
        """Stop after the current step; the model so far is kept (state STOPPED)."""
        if self.status.state.busy and self._shutdown.job is not None:
            self._shutdown.job.stop()
            self.progress_text.setText("Stopping after this step; then the quality report …")

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._shutdown()
        super().closeEvent(event)

    # worker callbacks (main thread) ------------------------------------------------------------
    def _on_yielded(self, update: TrainPlan | TrainUpdate) -> None:
        if isinstance(update, TrainPlan):
            self._run_clock = [(time.monotonic(), 0)]  # the first step comes right after the plan
            self._on_plan(update)
            return
        for r in update.records:
            self.plot.add(r.step, r.metrics, r.validation)
        r = update.last
        now = time.monotonic()
        if not self._run_clock:  # no plan came first: the rate counts from this update
            self._run_clock = [(now, r.run_step)]
        self._run_clock[1:] = [(now, r.run_step)]
        if now - self._shown_at >= PROGRESS_INTERVAL_MS / 1000:
            self._shown_at = now
            self._show_progress(r)

    def _show_progress(self, r) -> None:
        """The bar, the line and the activity dock at ``r`` (a TrainProgress record)."""
        if self.progress_bar.maximum() != r.run_steps:
            self._set_total(r.run_steps)
        self.progress_bar.setValue(r.run_step)
        if self._pbar is not None:
            self._pbar.update(r.run_step - self._pbar.n)
            self.activity_updates += 1
        m = r.metrics
        self.progress_text.setText(
            f"Step {r.run_step} / {r.run_steps} (model step {r.step}) · loss {m['loss']:.4f} · "
            f"reconstruction {m['mse']:.4f} · {r.patches_per_s:,.0f} patches/s on {r.device}")
        if r.device != self._device:
            self._device = r.device
            self.device_label.setText(f"Device in use: {describe_device(r.device)}")
        if r.gpu_memory is not None:
            self.gpu_memory_label.setText(format_cuda_memory(r.gpu_memory))
            self.gpu_memory_label.show()

    def _on_plan(self, plan: TrainPlan) -> None:
        self._set_total(plan.steps)
        self.estimate.show_plan(plan.text, plan.steps)
        self.progress_text.setText(f"Training: {plan.text}")

    def _set_total(self, steps: int) -> None:
        self.progress_bar.setRange(0, steps)
        if self._pbar is not None:
            self._pbar.total = steps

    def _finish_progress(self) -> None:
        self.gpu_memory_label.hide()  # the run has handed its GPU memory back
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self._shutdown.job = self._shutdown.worker = None

    def _on_returned(self, outcome: TrainOutcome) -> None:
        self._finish_progress()
        rate = ""
        if len(self._run_clock) == 2:  # before the estimate is unblocked (status below)
            (t0, s0), (t1, s1) = self._run_clock
            self.estimate.show_achieved(self._run_key, s1 - s0, t1 - t0, outcome.trained.train_config.batch_size,
                                        self._device or "cpu")
            rate = f" ({(s1 - s0) / (t1 - t0):.1f} steps/s)" if t1 > t0 and s1 > s0 else ""
        self.outcome, self.trained = outcome, outcome.trained
        self.status.state = RunState.STOPPED if outcome.stopped else RunState.DONE
        done = self._run_clock[-1][1] if self._run_clock else self.progress_bar.value()
        self.progress_bar.setRange(0, max(done, 1))  # a stopped run is complete too
        self.progress_bar.setValue(max(done, 1))
        how = "Stopped" if outcome.stopped else "Done"
        self.progress_text.setText(f"{how} at model step {outcome.trained.step} after "
                                   f"{outcome.seconds:.1f} s{rate}. The model is ready in Reconstruct.")
        self.report.set_report(format_report(outcome))
        self.tabs.setCurrentWidget(self.report)
        model_store(self.viewer).set(outcome.trained)
        self.finished.emit(outcome)

    def _on_errored(self, exc: Exception) -> None:
        self._finish_progress()
        self.status.state = RunState.FAILED
        self.progress_text.setText(f"Failed: {exc}")
        show_error(f"Train VAE failed: {exc}")
        self.finished.emit(None)
