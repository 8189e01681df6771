"""Side by side, per picked marker: what was measured | what the model predicts | what it misses.

The Reconstruct widget shows this view by default when a reconstruction ends. Each picked
marker is one row of napari's grid of three panels (one camera: zooming one zooms all):

- ``"CD45 · measured"``: the image's counts (the raw layer's data, never a copy of a changed
  one), with the raw layer's contrast limits;
- ``"CD45 · model"``: the reconstruction in counts, with the SAME contrast limits (kept equal
  when the user changes the measured panel's);
- ``"CD45 · missed (noise SD)"``: the signed residual in the calibrated error unit on a
  diverging colormap with symmetric limits and napari's colour bar: red where more was
  measured than predicted (the model misses signal), blue where the model predicts counts
  that are not there, black where it predicts what was measured.

The comparison layers are the only visible ones while the view is on; the user's layout
(visibility, grid, camera, layer order, scale bar) is saved when the view opens and put back
by :meth:`ComparisonView.restore`. Raw layers are never changed.

Also here: where napari 0.9 moved viewer parts (``viewer.scene.camera``,
``viewer.canvas.grid``, ``viewer.canvas.overlays.scale_bar``), :func:`viewer_part` finds
them on every napari the package allows (>= 0.5).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from napari.utils.colormaps import Colormap

from napari_imc_vae._napari.layer_data import LIST_NAME_CHARS, layer_units
from napari_imc_vae._napari.quiet_scene import quiet_scene, redraw_scene

COMPARE_KIND = "compare"
MEASURED, MODEL, MISSED = "measured", "model", "missed"
#: Below: blue (the model predicts counts that are not there); zero: black; above: red
#: (measured counts the model does not predict). Black at zero so that where the model
#: explains the tissue the panel is dark on napari's dark canvas and misses stand out.
MISSED_COLORMAP = Colormap(colors=[[0.25, 0.55, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0], [1.0, 0.3, 0.2, 1.0]],
                           controls=[0.0, 0.5, 1.0], name="blue-black-red")
PANEL_COLORMAP = "gray"
#: napari 0.9 moved these; older releases have the old names (dotted path, old attribute).
_MOVED = {"camera": ("scene.camera", "camera"), "grid": ("canvas.grid", "grid"),
          "scale_bar": ("canvas.overlays.scale_bar", "scale_bar"),
          "text": ("canvas.overlays.text", "text_overlay")}


def viewer_part(viewer, part: str):
    """``viewer``'s camera, grid, scale bar or text overlay, wherever this napari keeps it.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    part : {"camera", "grid", "scale_bar", "text"}
    """
    if part not in _MOVED:
        raise ValueError(f"part must be one of {sorted(_MOVED)}, got {part!r}")
    new, old = _MOVED[part]
    found = viewer
    for name in new.split("."):
        found = getattr(found, name, None)
        if found is None:
            return getattr(viewer, old)  # napari < 0.9
    return found


@dataclass
class ComparisonRow:
    """One marker's three panels, ready to add (no statistics left to compute).

    Attributes
    ----------
    marker : str
        The marker's name as the user knows it (the raw layer's name).
    measured, model, missed : ndarray of shape (Y, X)
        Counts as measured, counts as predicted, signed residual in ``unit``.
    contrast : (float, float)
        Contrast limits of the measured and the model panel (the raw layer's).
    missed_limit : float
        The residual panel shows ``-missed_limit … +missed_limit``.
    unit : str
        Short name of the residual's unit, e.g. ``"noise SD"``.
    scale, translate : (float, float)
        The raw layer's, so that positions and the scale bar are in µm.
    metadata : dict
        ``metadata["imc"]`` items every panel carries (image, channel, provenance).
    """

    marker: str
    measured: np.ndarray
    model: np.ndarray
    missed: np.ndarray
    contrast: tuple[float, float]
    missed_limit: float
    unit: str
    scale: tuple[float, float] = (1.0, 1.0)
    translate: tuple[float, float] = (0.0, 0.0)
    metadata: dict | None = None

    def titles(self) -> tuple[str, str, str]:
        """Layer names, which napari also writes over each panel.

        The missed panel names its unit (``"CD45 · missed (noise SD)"``) unless that makes the
        name too long for napari's layer list (:data:`LIST_NAME_CHARS`), which would cut it in
        the middle: ``"Cytokeratin 5 · missed"`` (the unit is in the legend and the metadata).
        """
        missed = f"{self.marker} · {MISSED} ({self.unit})"
        if len(missed) > LIST_NAME_CHARS:
            missed = f"{self.marker} · {MISSED}"
        return (f"{self.marker} · {MEASURED}", f"{self.marker} · {MODEL}", missed)


class ComparisonView:
    """Shows :class:`ComparisonRow` s side by side in ``viewer`` and restores the user's layout.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    """

    def __init__(self, viewer) -> None:
        self.viewer = viewer
        self.layers: list = []
        self._saved: dict | None = None

    @property
    def active(self) -> bool:
        """True while the comparison is on screen (the user's layout is saved)."""
        return self._saved is not None

    def show(self, rows: list[ComparisonRow]) -> list:
        """Replace the comparison layers by ``rows`` and show only them, one marker per grid row.

        All at once (:meth:`show_steps` spreads the same work over event-loop turns).

        Returns
        -------
        list of napari layers
            Three per row: measured, model, missed.
        """
        for step in self.show_steps(rows):
            step()
        return self.layers

    def show_steps(self, rows: list[ComparisonRow]) -> Iterator[Callable[[], object]]:
        """What :meth:`show` does, as small steps to run one per event-loop turn (see ``LayerFeed``).

        Each step inserts one layer or changes many without a scene rebuild
        (:func:`.quiet_scene.quiet_scene`); one step at the end rebuilds the scene once.

        Raises
        ------
        ValueError
            ``rows`` is empty (at once, not when the steps run).
        """
        if not rows:
            raise ValueError("rows must name at least one marker, got none")
        return self._show_steps(list(rows))

    def _show_steps(self, rows: list[ComparisonRow]) -> Iterator[Callable[[], object]]:
        yield self._begin
        for row in rows:
            made: list = []
            # 3 layers, hidden until _arrange: a scene rebuild in between draws nothing half-done
            yield lambda row=row, made=made: made.extend(_row_layers(row))
            for k in range(3):
                yield lambda made=made, k=k: self._insert(made[k])
        yield lambda: self._arrange(len(rows))
        yield lambda: redraw_scene(self.viewer)
        yield self.viewer.reset_view
        # the first frame of a new panel compiles its shaders (image, colour bar, title): with
        # software OpenGL all panels at once froze the GUI 2-5 s; one panel per frame instead
        for k in range(1, 3 * len(rows)):
            yield lambda k=k: _set_visible(self.layers[k], True)

    def _begin(self) -> None:
        if not self.active:
            self._saved = self._save_layout()
        self._remove_layers()

    def _insert(self, layer) -> None:
        """At the bottom, after the comparison layers already in: reading order, see :meth:`_arrange`."""
        with quiet_scene(self.viewer):
            self.viewer.layers.insert(len(self.layers), layer)
        self.layers.append(layer)

    def restore(self) -> None:
        """Put the user's layout back: visibility, grid, camera, layer order, scale bar."""
        saved, self._saved = self._saved, None
        if saved is None:
            return
        present = [layer for layer in saved["order"] if layer in self.viewer.layers]
        ours = [layer for layer in self.layers if layer in self.viewer.layers]
        others = [layer for layer in self.viewer.layers if layer not in present and layer not in ours]
        with quiet_scene(self.viewer):  # one scene rebuild, not one per layer shown
            for layer in ours:
                layer.visible = False
            target = [*ours, *present, *others]
            if list(self.viewer.layers) != target:
                self.viewer.layers.move_multiple([self.viewer.layers.index(layer) for layer in target], 0)
            for layer in present:
                _set_visible(layer, saved["visible"][id(layer)])
            grid = viewer_part(self.viewer, "grid")
            for key, value in saved["grid"].items():
                if getattr(grid, key) != value:
                    setattr(grid, key, value)
            viewer_part(self.viewer, "scale_bar").visible = saved["scale_bar"]
            text = viewer_part(self.viewer, "text")
            text.visible, text.text = saved["text"]
        redraw_scene(self.viewer)
        camera = viewer_part(self.viewer, "camera")
        camera.center, camera.zoom = saved["camera"]

    def _save_layout(self) -> dict:
        grid = viewer_part(self.viewer, "grid")
        camera = viewer_part(self.viewer, "camera")
        text = viewer_part(self.viewer, "text")
        return {
            "order": list(self.viewer.layers),
            "visible": {id(layer): bool(layer.visible) for layer in self.viewer.layers},
            "grid": {key: getattr(grid, key) for key in ("enabled", "shape", "stride", "spacing")
                     if hasattr(grid, key)},
            "camera": (tuple(camera.center), float(camera.zoom)),
            "scale_bar": bool(viewer_part(self.viewer, "scale_bar").visible),
            "text": (bool(text.visible), str(text.text)),
        }

    def _remove_layers(self) -> None:
        with quiet_scene(self.viewer):  # napari collects garbage (1-2 s) after each lone removal
            for layer in self.layers:
                if layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)
        self.layers = []

    def _arrange(self, n_rows: int) -> None:
        """Only the first comparison layer visible (the others follow), in a grid of ``n_rows`` × 3 panels.

        With stride 1 napari gives each layer its own panel in list order from the bottom;
        napari >= 0.9 skips hidden layers, older releases wrap them round the grid (hidden,
        so they draw nothing): the comparison layers at indices 0 … 3n-1 fill the grid in
        reading order on both.
        """
        with quiet_scene(self.viewer):  # the scene is rebuilt once, by redraw_scene after this
            for layer in self.viewer.layers:
                _set_visible(layer, layer is self.layers[0])
            grid = viewer_part(self.viewer, "grid")
            grid.stride = 1
            grid.shape = (n_rows, 3)
            if hasattr(grid, "spacing"):  # napari >= 0.6
                grid.spacing = 0.04
            grid.enabled = True
            scale_bar = viewer_part(self.viewer, "scale_bar")
            scale_bar.visible = True
            if not hasattr(self.layers[0], "units"):  # napari < 0.6: the scale bar has the unit
                scale_bar.unit = "um"
            if not hasattr(self.layers[0], "name_overlay"):  # napari < 0.9: no titles over the panels
                text = viewer_part(self.viewer, "text")
                text.text = "   ·   ".join(("measured", "model", f"{MISSED} (red: more measured than "
                                                              "predicted, blue: less)"))
                text.visible = True


def _set_visible(layer, visible: bool) -> None:
    """Show or hide ``layer`` only when that changes something (each change is an event napari acts on)."""
    if bool(layer.visible) != visible:
        layer.visible = visible


def _row_layers(row: ComparisonRow) -> list:
    """The three Image layers of one row; the model panel follows the measured one's contrast."""
    from napari.layers import Image

    names = row.titles()
    common = {"scale": tuple(map(float, row.scale)), "translate": tuple(map(float, row.translate)),
              "blending": "translucent", "visible": False, **layer_units()}  # shown by _arrange

    def meta(panel: str) -> dict:
        info = dict(row.metadata or {})
        info.update(kind=COMPARE_KIND, panel=panel, marker=row.marker)
        if panel == MISSED:
            info["units"] = row.unit
        return {"imc": info}

    lo, hi = map(float, row.contrast)
    limit = float(row.missed_limit) if row.missed_limit > 0 else 1.0
    measured = Image(row.measured, name=names[0], colormap=PANEL_COLORMAP, contrast_limits=(lo, hi),
                     metadata=meta(MEASURED), **common)
    model = Image(row.model, name=names[1], colormap=PANEL_COLORMAP, contrast_limits=(lo, hi),
                  metadata=meta(MODEL), **common)
    missed = Image(row.missed, name=names[2], colormap=MISSED_COLORMAP, contrast_limits=(-limit, limit),
                   metadata=meta(MISSED), **common)
    measured.events.contrast_limits.connect(
        lambda _event: setattr(model, "contrast_limits", measured.contrast_limits))
    layers = [measured, model, missed]
    for layer in layers:
        if hasattr(layer, "name_overlay"):  # napari >= 0.9: the name over each grid panel
            layer.name_overlay.visible = True
    if hasattr(missed, "colorbar"):  # napari >= 0.6
        missed.colorbar.visible = True
    return layers
