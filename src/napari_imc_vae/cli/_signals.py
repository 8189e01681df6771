"""Ctrl-C, SIGTERM and SIGHUP: each command cleans up and ends "interrupted" (status 130)."""

from __future__ import annotations

#: Signals that stop a command as Ctrl-C does: a cluster scheduler sends SIGTERM, a closed
#: terminal SIGHUP; each then cleans up (temporary files, caches, locks) and exits "interrupted".
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def terminate_as_interrupt() -> None:
    """Make SIGTERM and SIGHUP raise ``KeyboardInterrupt`` as Ctrl-C does (main thread only).

    Called once by the command line before any command runs, so that every command's
    ``finally`` / cleanup runs for them too (by default they end the process on the spot).
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for name in STOP_SIGNALS[1:]:
        if hasattr(signal, name) and signal.getsignal(getattr(signal, name)) == signal.SIG_DFL:
            signal.signal(getattr(signal, name), _raise_interrupt)


class InterruptGuard:
    """Ctrl-C (and SIGTERM, SIGHUP: :data:`STOP_SIGNALS`) for a long command, installed before
    its heavy imports.

    Until :attr:`on_interrupt` is set, a first signal is only recorded and :meth:`check`
    raises ``KeyboardInterrupt`` at the next safe point: an import cut in half leaves torch
    half-loaded (later imports fail with "loaded twice"), and a read cut in half looked like a
    corrupt input. Once :attr:`on_interrupt` is set (training), a first signal calls it
    instead (stop after the current step and save). A second signal raises at once. The
    command line turns ``KeyboardInterrupt`` into "interrupted", exit status 130.
    Outside the main thread (where signals cannot be handled) it does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self.on_interrupt = None
        self._previous: dict = {}

    def __enter__(self) -> "InterruptGuard":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for name in STOP_SIGNALS:
                if hasattr(signal, name):
                    number = getattr(signal, name)
                    self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.on_interrupt is not None:
            self.on_interrupt()

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if a stop signal came and nothing else handles it."""
        if self.requested and self.on_interrupt is None:
            raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        import signal

        for number, previous in self._previous.items():
            signal.signal(number, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}
