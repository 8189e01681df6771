"""Checks shared by the dock-widget tests (pytest puts this folder on ``sys.path``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from napari.utils.notifications import notification_manager

#: ``(setup(viewer, rng), problem)``: a viewer whose layer selection is not an IMC image,
#: and the text the error notification must contain. For ``parametrize(("setup", "problem"), …)``.
BAD_SELECTIONS = [
    (lambda v, r: None, "No layer selected"),
    (lambda v, r: v.add_image(r.random((16, 16, 3)), rgb=True, name="photo"),
     "'photo' is an RGB image"),
    (lambda v, r: v.add_labels(np.zeros((16, 16), int), name="cells"),
     "'cells' is a Labels layer"),
]


def messages_since(n_before: int) -> list[str]:
    """The texts of the notifications after the first ``n_before`` of ``notification_manager``."""
    return [str(r.message) for r in notification_manager.records[n_before:]]


def assert_unchanged(layers, states: list[dict], snapshot: Callable[[object], dict]) -> None:
    """Assert each layer still matches its earlier ``snapshot(layer)`` (a dict with ``"data"``).

    Parameters
    ----------
    layers : list of napari layers
    states : list of dict
        ``snapshot(layer)`` of each layer, taken before.
    snapshot : callable
        Layer → dict of what must not change; ``"data"`` is compared as an array.
    """
    assert len(layers) == len(states)
    for layer, state in zip(layers, states):
        now = snapshot(layer)
        np.testing.assert_array_equal(now.pop("data"), state["data"])
        assert now == {k: v for k, v in state.items() if k != "data"}, layer.name
