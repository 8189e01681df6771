"""The stop request a caller owns: the widget's Stop button, the CLI's Ctrl-C."""

from __future__ import annotations

import threading
from collections.abc import Callable


class StopRequest:
    """Ask a training run to end after its current step; the model so far is kept.

    The caller makes one and keeps it; :func:`~napari_imc_vae.engine.training.train_model`
    listens to it. :meth:`set` is safe from any thread (a GUI thread, a signal handler) and
    may come before the run has started: the run then trains no step.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def set(self) -> None:
        """Request the stop (idempotent)."""
        with self._lock:
            self._event.set()
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def is_set(self) -> bool:
        return self._event.is_set()

    def on_set(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` when the stop is requested (now, if it already was).

        Returns
        -------
        callable
            Removes the listener.
        """
        with self._lock:
            already = self._event.is_set()
            if not already:
                self._listeners.append(listener)
        if already:
            listener()

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove


__all__ = ["StopRequest"]
