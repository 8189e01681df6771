"""What the scientist sees after Reconstruct: measured | model | missed of the picked markers, nothing else.

Drives normalize → train (tiny) → reconstruct in a real viewer on a real acquisition and
checks what is visible, the contrast limits, the toggle before and after a reconstruction,
switching markers, the way back to the user's layout, and that the residual layer is the
engine's calibrated residual in the unit its name gives.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_imc_vae._napari.comparison_view import MISSED_COLORMAP, viewer_part
from napari_imc_vae._napari.reconstruct_task import MISSED_LIMIT, default_markers
from napari_imc_vae.engine.apply.use_case import ApplySettings, apply_to_image
from napari_imc_vae.engine.apply.error_unit import ERROR_UNIT_NAME, REGION_THRESHOLD
from widget_checks import assert_unchanged

FILE = "steinbock_img/20210305_NE_mockData5_003.ome.tiff"
IMAGE = "20210305_NE_mockData5_003"
PANEL = ["Ag107", "Cytokeratin 5", "Laminin", "YBX1", "H3K27Ac"]
PLUGIN = "napari-imc-vae"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _raw_state(layer) -> dict:
    return {"data": np.array(layer.data, copy=True), "contrast_limits": tuple(layer.contrast_limits),
            "colormap": layer.colormap.name, "scale": tuple(layer.scale), "translate": tuple(layer.translate),
            "name": layer.name}


def _layout(viewer) -> dict:
    camera = viewer_part(viewer, "camera")
    return {"order": [layer.name for layer in viewer.layers],
            "visible": {layer.name: layer.visible for layer in viewer.layers},
            "grid": viewer_part(viewer, "grid").enabled,
            "camera": (tuple(np.round(camera.center, 6)), round(float(camera.zoom), 6))}


def _visible(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers if layer.visible]


def _grid_position(grid, index: int, layers: list) -> tuple[int, int]:
    """The grid panel of layer ``index``: napari >= 0.9 takes the layers (and skips hidden ones),
    older releases their number."""
    import inspect

    takes_layers = "layers" in inspect.signature(grid.position).parameters
    return tuple(grid.position(index, layers if takes_layers else len(layers)))


def _panels(marker: str) -> list[str]:
    """The panels' names; the unit only where the name stays short enough for napari's layer list."""
    missed = f"{marker} · missed ({ERROR_UNIT_NAME})"
    return [f"{marker} · measured", f"{marker} · model", missed if len(missed) <= 28 else f"{marker} · missed"]


@pytest.fixture
def flow(make_napari_viewer, imc_testdata, qtbot):
    """A viewer after Normalize (raw layers hidden, its default) and a tiny model trained."""
    viewer = make_napari_viewer()
    viewer.open(str(imc_testdata / FILE), plugin=PLUGIN)
    _, norm = viewer.window.add_plugin_dock_widget(PLUGIN, "Normalize channels")
    _, train = viewer.window.add_plugin_dock_widget(PLUGIN, "Train VAE")
    _, recon = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruct")
    with qtbot.waitSignal(norm.finished, timeout=60_000):
        norm.normalize()
    f = train.form
    f.patch.value, f.latent.value, f.hidden_width.value, f.depth.value = 8, 4, 32, 1
    f.steps.value, f.batch.value, f.device.value = 20, 64, "cpu"
    with qtbot.waitSignal(train.finished, timeout=120_000):
        assert train.train() is not None
    return viewer, recon


def _reconstruct(qtbot, recon):
    with qtbot.waitSignal(recon.finished, timeout=60_000) as blocker:
        assert recon.reconstruct() is not None
    assert blocker.args[0] is not None
    return blocker.args[0]


def test_comparison_view_after_reconstruct(flow, qtbot):
    viewer, recon = flow
    raw = [viewer.layers[name] for name in PANEL]
    raw_before = [_raw_state(layer) for layer in raw]
    mine = _layout(viewer)
    assert not any(layer.visible for layer in raw)  # Normalize hid them, as by default

    _reconstruct(qtbot, recon)
    result = recon.result
    picked = default_markers(result)
    assert recon.compare.picked() == picked and 1 <= len(picked) <= 2
    markers = [PANEL[result.channel_index[j]] for j in picked]
    # the best explained marker first, then the worst explained one with real signal
    assert picked[0] == result.ranking[0]
    expected = [name for m in markers for name in _panels(m)]
    assert _visible(viewer) == expected  # and nothing else
    grid = viewer_part(viewer, "grid")
    assert grid.enabled and tuple(grid.shape) == (len(markers), 3)
    layers = list(viewer.layers)
    for k, name in enumerate(expected):  # reading order: one marker per row
        assert _grid_position(grid, layers.index(viewer.layers[name]), layers) == divmod(k, 3)
    assert viewer_part(viewer, "scale_bar").visible
    for marker in markers:
        measured, model, missed = (viewer.layers[name] for name in _panels(marker))
        raw_layer = viewer.layers[marker]
        np.testing.assert_array_equal(measured.data, raw_layer.data)
        assert tuple(measured.contrast_limits) == tuple(model.contrast_limits) == tuple(raw_layer.contrast_limits)
        lo, hi = missed.contrast_limits
        assert lo == -hi == -MISSED_LIMIT == -REGION_THRESHOLD
        assert missed.colormap.name == MISSED_COLORMAP.name
        if hasattr(missed, "colorbar"):  # napari >= 0.6 has colour bars
            assert missed.colorbar.visible
        else:  # napari 0.5: the canvas' text overlay says what red and blue mean
            assert viewer_part(viewer, "text").visible and "red" in viewer_part(viewer, "text").text
        assert missed.metadata["imc"]["units"] == ERROR_UNIT_NAME
        assert tuple(measured.scale) == tuple(raw_layer.scale)
    # the model panel follows the measured panel's contrast (the raw layer's stays)
    measured, model, _ = (viewer.layers[name] for name in _panels(markers[0]))
    measured.contrast_limits = (0.0, 3.0)
    assert tuple(model.contrast_limits) == (0.0, 3.0)

    # picking another marker switches at once, to its three panels only
    other = next(j for j in range(len(PANEL)) if j not in picked)
    with qtbot.waitSignal(recon.compare.shown, timeout=30_000):  # a layer per event-loop turn
        recon.compare.pick([other])
    marker = PANEL[result.channel_index[other]]
    assert _visible(viewer) == _panels(marker) and tuple(grid.shape) == (1, 3)
    assert [name for name in (layer.name for layer in viewer.layers) if " · " in name] == _panels(marker)

    # back to the user's layout: visibility, grid, camera, order of the layers there were
    recon.compare.back.click()
    assert not recon.compare.toggle.isChecked()
    now = _layout(viewer)
    assert now["visible"] == {**{name: False for name in now["visible"]}, **mine["visible"]}
    assert not now["grid"] and now["camera"] == mine["camera"]
    assert [name for name in now["order"] if name in mine["order"]] == mine["order"]
    # … and the comparison again when ticked
    with qtbot.waitSignal(recon.compare.shown, timeout=30_000):
        recon.compare.toggle.setChecked(True)
    assert _visible(viewer) == _panels(marker)
    assert_unchanged(raw, raw_before, _raw_state)


def test_toggle_off_before_reconstruct_then_on(flow, qtbot):
    viewer, recon = flow
    recon.compare.toggle.setChecked(False)
    mine = _layout(viewer)
    _reconstruct(qtbot, recon)
    now = _layout(viewer)
    assert {name: v for name, v in now["visible"].items() if name in mine["visible"]} == mine["visible"]
    assert not any(v for name, v in now["visible"].items() if name not in mine["visible"])
    assert not now["grid"]
    with qtbot.waitSignal(recon.compare.shown, timeout=30_000):
        recon.compare.toggle.setChecked(True)
    picked = [PANEL[recon.result.channel_index[j]] for j in recon.compare.picked()]
    assert _visible(viewer) == [name for m in picked for name in _panels(m)]
    # running again replaces the comparison and its layers, no duplicates
    n_layers = len(viewer.layers)
    _reconstruct(qtbot, recon)
    assert len(viewer.layers) == n_layers
    assert _visible(viewer) == [name for m in picked for name in _panels(m)]


def test_residual_and_error_layers_are_the_engines_calibrated_maps(flow, qtbot):
    viewer, recon = flow
    _reconstruct(qtbot, recon)
    result = recon.result
    trained = recon.model
    app = apply_to_image(trained, result.image, ApplySettings(stride=result.stride, motifs=0, device="auto"))
    error, = (layer for layer in viewer.layers if layer.metadata.get("imc", {}).get("kind") == "error")
    assert error.name == f"error ({ERROR_UNIT_NAME})" and error.metadata["imc"]["units"] == ERROR_UNIT_NAME
    np.testing.assert_allclose(error.data, app.error_map, rtol=1e-5, atol=1e-5)
    for j in recon.compare.picked():
        name = PANEL[result.channel_index[j]]
        missed = viewer.layers[_panels(name)[2]]
        model_channel = app.channel_index.index(result.channel_index[j])
        np.testing.assert_allclose(missed.data, app.residual[model_channel], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(viewer.layers[f"{name} · model"].data, app.reconstruction.raw[model_channel],
                                   rtol=1e-5, atol=1e-5)
        assert (viewer.layers[f"{name} · model"].data >= 0).all()


def test_cells_section_is_folded_until_opened(make_napari_viewer):
    """Without a segmentation the Cells panel takes one header line, not a tall empty area."""
    viewer = make_napari_viewer()
    _, recon = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruct")
    fold = recon.cells_fold
    assert not fold.is_open and not recon.cells.isVisibleTo(fold)
    closed = fold.sizeHint().height()
    fold.header.click()
    assert fold.is_open and recon.cells.isVisibleTo(fold)
    assert not recon.cells.row.isVisibleTo(fold)  # no empty row box before there are cells
    assert fold.sizeHint().height() > closed + 40
    assert closed <= 40


def test_panel_names_fit_the_layer_list():
    """napari elides the middle of a name longer than about 28 characters at its default width."""
    from napari_imc_vae._napari.comparison_view import ComparisonRow

    blank = np.zeros((2, 2), np.float32)

    def titles(marker):
        return ComparisonRow(marker=marker, measured=blank, model=blank, missed=blank, contrast=(0.0, 1.0),
                             missed_limit=5.0, unit=ERROR_UNIT_NAME).titles()

    assert titles("YBX1") == ("YBX1 · measured", "YBX1 · model", f"YBX1 · missed ({ERROR_UNIT_NAME})")
    assert titles("Cytokeratin 5")[2] == "Cytokeratin 5 · missed"
    assert all(len(t) <= 28 for m in (*PANEL, "Collagen type I") for t in titles(m))
