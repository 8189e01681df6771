"""Change the layer list a few layers per event-loop turn, so that adding many never freezes napari.

Adding one image layer costs napari its layer-controls widget, a vispy visual and a pass over
every layer of the scene graph; hiding one costs that pass too. Done all at once for 32 markers
the GUI froze for 4-5 s (issue 17). :class:`LayerFeed` runs the steps one after another, as many
as fit in :data:`TURN_BUDGET_MS` per turn (at least one), and lets napari paint and answer the
user in between.

Removing layers is different: napari (0.6+) runs ``gc.collect()`` after each removal, 0.3-2 s
with torch loaded, unless the removals are batched (one collection at the end):
:func:`remove_layers` does that.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext

from qtpy.QtCore import QObject, QTimer, Signal

#: Steps run in one event-loop turn until this much time has passed (ms).
TURN_BUDGET_MS = 30


def remove_layers(viewer, layers: Iterable) -> int:
    """Remove ``layers`` from ``viewer`` in one batch (one garbage collection); returns how many."""
    layers = [layer for layer in layers if layer in viewer.layers]
    if not layers:
        return 0
    batch = getattr(viewer.layers, "batched_update", None)  # napari < 0.6 has none
    with batch() if batch is not None else nullcontext():
        for layer in layers:
            viewer.layers.remove(layer)
    return len(layers)


class LayerFeed(QObject):
    """Run ``steps`` (callables) a few per event-loop turn; ``finished`` carries their results.

    Parameters
    ----------
    steps : iterable of callable
        Each changes the layer list a little (adds a layer, hides one); what it returns is kept.
    parent : QObject, optional
        Owner (the widget): the feed stops when it is deleted.

    Attributes
    ----------
    finished : Signal(list)
        The steps' results, in order, after the last one.
    failed : Signal(object)
        The exception a step raised; the steps after it are not run.
    turns : int
        Event-loop turns used so far.
    """

    finished = Signal(list)
    failed = Signal(object)

    def __init__(self, steps: Iterable[Callable[[], object]], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._steps = iter(steps)
        self._results: list = []
        self.turns = 0
        self.running = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._turn)

    def start(self) -> None:
        """Run the first steps on the next event-loop turn."""
        self.running = True
        self._timer.start()

    def _turn(self) -> None:
        self.turns += 1
        start = time.perf_counter()
        while True:
            try:
                step = next(self._steps, None)
                if step is None:
                    self.running = False
                    self.finished.emit(self._results)
                    return
                self._results.append(step())
            except Exception as e:  # noqa: BLE001 - a Qt slot must not raise; the owner reports it
                self.running = False
                self.failed.emit(e)
                return
            if (time.perf_counter() - start) * 1000 >= TURN_BUDGET_MS:
                break
        self._timer.start()  # the rest on the next turn, after napari has painted
