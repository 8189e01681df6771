"""GUI state shared by the widgets: the run state enum and the per-viewer model store.

The "Train VAE" widget puts the model it trained in the viewer's :class:`ModelStore`;
the "Reconstruct" widget shows and uses whatever model is there (trained or loaded).
Both are small evented objects (psygnal), no Qt, so they are easy to test.
"""

from __future__ import annotations

import weakref
from enum import Enum

from psygnal import Signal

__all__ = ["RunState", "RunStatus", "ModelStore", "model_store", "model_label"]


class RunState(Enum):
    """Where a widget's long-running job stands; drives which buttons are enabled."""

    IDLE = "idle"
    TRAINING = "training"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def busy(self) -> bool:
        return self is RunState.TRAINING


class RunStatus:
    """An evented :class:`RunState`: ``changed(state)`` fires on every change."""

    changed = Signal(object)

    def __init__(self) -> None:
        self._state = RunState.IDLE

    @property
    def state(self) -> RunState:
        return self._state

    @state.setter
    def state(self, value: RunState) -> None:
        value = RunState(value)
        if value is not self._state:
            self._state = value
            self.changed.emit(value)


def model_label(trained) -> str:
    """One line naming a model: file (or "unsaved"), step and panel size."""
    where = trained.source_file or "unsaved, trained in this session"
    return f"{where} · step {trained.step} · {len(trained.channel_names)} channels"


class ModelStore:
    """The model the Reconstruct widget uses; ``changed(trained)`` fires when it is replaced."""

    changed = Signal(object)

    def __init__(self) -> None:
        self.model = None

    def set(self, trained) -> None:
        self.model = trained
        self.changed.emit(trained)


_STORES: dict[int, ModelStore] = {}


def model_store(viewer) -> ModelStore:
    """The store of ``viewer`` (one per viewer, dropped with it)."""
    # napari hands plugin widgets a proxy of the viewer: key by the viewer itself
    viewer = getattr(viewer, "__wrapped__", viewer)
    key = id(viewer)
    if key not in _STORES:
        _STORES[key] = ModelStore()
        try:
            weakref.finalize(viewer, _STORES.pop, key, None)
        except TypeError:  # not weak-referenceable: keep the store for the session
            pass
    return _STORES[key]
