"""Change napari's layer list without a full scene rebuild after each change.

napari rebuilds its whole scene graph (grid, draw order, overlays and a redraw pass over
*every* layer, 70-400 ms with ~75 layers on a loaded 2-core machine) after each inserted
layer, each visibility change, each move and each grid setting, and runs a full garbage
collection (1-2 s with torch loaded) after each removed layer. Showing the comparison view
once hid ~64 layers one by one: 30 s of frozen GUI (issue 17).

:func:`quiet_scene` holds those rebuilds back while a small batch of changes is made, and
:func:`redraw_scene` does the one rebuild afterwards. napari has a public batch
(``viewer.layers.batched_update()``), but its end always runs the garbage collection; this
module sets the same pause flag of napari's canvas without it. The flag is private (napari
0.9 hides it behind the proxy plugins get; read through the unwrapped viewer): on a napari
without it both functions do nothing special and napari rebuilds after each change, as it
always did (slow, still correct).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


def _unwrapped(viewer):
    """The viewer itself: plugin widgets get it behind napari's proxy, which warns on private names."""
    return getattr(viewer, "__wrapped__", viewer)


def _canvas(viewer):
    """napari's vispy canvas of ``viewer`` if it has the scene-graph pause flag, else None."""
    qt_viewer = getattr(getattr(_unwrapped(viewer), "window", None), "_qt_viewer", None)
    canvas = getattr(qt_viewer, "canvas", None)
    if canvas is None or not hasattr(canvas, "_pause_scene_graph") or not hasattr(canvas, "_update_scenegraph"):
        return None
    return canvas


@contextlib.contextmanager
def quiet_scene(viewer) -> Iterator[None]:
    """Layers inserted, removed, moved, shown or hidden inside are not redrawn until :func:`redraw_scene`.

    Inserted layers are not made the active (selected) layer either: that switches napari's
    layer-controls panel each time. Removing layers inside skips napari's garbage collection.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    """
    canvas = _canvas(viewer)
    layers = _unwrapped(viewer).layers
    was_paused = canvas._pause_scene_graph if canvas is not None else None
    activates = getattr(layers, "_activate_on_insert", None)
    try:
        if canvas is not None:
            canvas._pause_scene_graph = True
        if activates is not None:
            layers._activate_on_insert = False
        yield
    finally:
        if canvas is not None:
            canvas._pause_scene_graph = was_paused
        if activates is not None:
            layers._activate_on_insert = activates


def redraw_scene(viewer) -> None:
    """Rebuild napari's scene once after :func:`quiet_scene` changes (nothing while napari batches)."""
    canvas = _canvas(viewer)
    if canvas is not None and not canvas._pause_scene_graph:
        canvas._update_scenegraph()
