"""How a "Train VAE" run goes on and ends in napari: cheap progress, and a stop when the widget goes.

While training, every repaint of a widget composes the whole window with napari's OpenGL canvas,
which costs the trainer CPU under software OpenGL (remote desktops, Xvfb): the widget shows
progress at most every :data:`PROGRESS_INTERVAL_MS` and keeps napari's animated "in progress"
indicator still (:func:`still_animations`). :class:`RunShutdown` stops a run when the widget or
the viewer closes.
"""

from __future__ import annotations

import threading

from qtpy.QtCore import QThreadPool
from qtpy.QtGui import QMovie
from qtpy.QtWidgets import QLabel, QWidget

from napari_imc_vae._napari.train_task import TrainJob

#: How long closing the viewer waits for a training run to stop (it stops within one step).
SHUTDOWN_WAIT_MS = 60_000
#: The progress line, bar and activity-dock progress are updated at most this often while training:
#: each repaint of a widget composes the whole window with napari's OpenGL canvas, which costs
#: the trainer CPU under software OpenGL (remote desktops, Xvfb).
PROGRESS_INTERVAL_MS = 500


def still_animations(window: QWidget) -> int:
    """Stop the animated GIFs of ``window`` (napari's "in progress" indicator); returns how many.

    The indicator repaints the whole window at the GIF's frame rate; under software OpenGL
    (remote desktops, Xvfb) that cut training from 7.9 to 0.5 steps/s (docs/benchmarks.md). It
    stays shown, still; the activity dock's progress bar still moves.
    """
    stopped = 0
    for label in window.findChildren(QLabel):
        movie = label.movie()
        if movie is not None and movie.state() == QMovie.MovieState.Running:
            movie.stop()
            stopped += 1
    return stopped


class RunShutdown:
    """Stops a run when the widget goes away; holds no reference to the widget itself."""

    def __init__(self) -> None:
        self.job: TrainJob | None = None
        self.worker = None
        self.closed = False  # a run still waiting for the estimate to end must not start then

    def __call__(self, *_) -> None:
        self.closed = True
        if self.job is not None:
            self.job.stop()
        if self.worker is not None:
            self.worker.quit()
        # Wait for the run to end (within a step), or for a step-rate timing (seconds): a torch
        # thread still running while Python exits aborts the process ("terminate called …").
        QThreadPool.globalInstance().waitForDone(SHUTDOWN_WAIT_MS)
        if self.worker is not None:
            # napari leaves an aborted generator suspended, not closed, so the helper thread of
            # train_task.stream_calls is not joined for us: it ends after its step (job.stop)
            for thread in threading.enumerate():
                if thread.name == "imc-vae-worker":
                    thread.join(SHUTDOWN_WAIT_MS / 1000)
