"""Layers go into napari a few per event-loop turn (issue 17 item 7: no freeze while adding them)."""

from __future__ import annotations

import time

import numpy as np
from qtpy.QtCore import QTimer

from napari_imc_vae._napari.layer_feed import TURN_BUDGET_MS, LayerFeed, remove_layers


def test_the_event_loop_runs_between_steps_that_fill_a_turn(qtbot):
    order: list[str] = []

    def slow_step(name: str):
        def step():
            order.append(name)
            QTimer.singleShot(0, lambda: order.append(f"event loop after {name}"))
            time.sleep(1.5 * TURN_BUDGET_MS / 1000)  # one step fills a turn
            return name
        return step

    feed = LayerFeed([slow_step("a"), slow_step("b"), slow_step("c")])
    with qtbot.waitSignal(feed.finished, timeout=5_000) as done:
        feed.start()
    assert done.args[0] == ["a", "b", "c"]
    assert order.index("event loop after a") < order.index("b")
    assert order.index("event loop after b") < order.index("c")
    assert feed.turns == 4 and not feed.running  # three steps, then the turn that finds no more


def test_a_failing_step_stops_the_feed_and_is_reported(qtbot):
    ran = []

    def bad():
        raise ValueError("layer 'x' is gone")

    feed = LayerFeed([lambda: ran.append(1), bad, lambda: ran.append(3)])
    with qtbot.waitSignal(feed.failed, timeout=5_000) as failed:
        feed.start()
    assert isinstance(failed.args[0], ValueError) and "'x' is gone" in str(failed.args[0])
    assert ran == [1] and not feed.running


def test_remove_layers_removes_only_layers_of_the_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    keep, *gone = [viewer.add_image(np.zeros((4, 4)), name=f"l{i}") for i in range(4)]
    other = make_napari_viewer().add_image(np.zeros((4, 4)), name="elsewhere")
    assert remove_layers(viewer, [*gone, other]) == 3
    assert [layer.name for layer in viewer.layers] == [keep.name]
    assert remove_layers(viewer, []) == 0
