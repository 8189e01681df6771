"""The "Normalize channels" dock widget, docked through the manifest."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from napari.utils.notifications import notification_manager

from napari_imc_vae._napari import normalize_widget as nw
from napari_imc_vae._napari.layer_data import IMC_KEY
from napari_imc_vae._napari.picker import SELECTED_LAYERS
from napari_imc_vae.preprocessing import Normalizer
from widget_checks import BAD_SELECTIONS, assert_unchanged, messages_since

MCD = "raw/20210305_NE_mockData1.mcd"
PANEL = ["Ag107", "Cytokeratin 5", "Laminin", "YBX1", "H3K27Ac"]


def _state(layer) -> dict:
    """Everything about a layer that normalization must leave alone (but visibility)."""
    state = {
        "data": np.array(layer.data, copy=True),
        "name": layer.name,
        "type": type(layer).__name__,
        "blending": layer.blending,
        "scale": tuple(layer.scale),
        "translate": tuple(layer.translate),
        "opacity": layer.opacity,
        "metadata": copy.deepcopy(layer.metadata),
    }
    if hasattr(layer, "contrast_limits"):
        state.update(contrast_limits=tuple(layer.contrast_limits), gamma=layer.gamma,
                     colormap=layer.colormap.name)
    return state


@pytest.fixture
def docked(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-imc-vae", "Normalize channels")
    assert isinstance(widget, nw.NormalizeWidget)
    return viewer, widget


def _run(qtbot, widget):
    with qtbot.waitSignal(widget.finished, timeout=60_000) as blocker:
        assert widget.normalize() is not None
    return blocker.args[0]


def test_normalize_real_acquisition(docked, qtbot, imc_testdata):
    viewer, widget = docked
    viewer.open(str(imc_testdata / MCD), plugin="napari-imc-vae")
    labels = [im.label for im in widget.picker.images]
    assert len(labels) == 3 and all("5 channels" in lab for lab in labels)
    widget.picker.select(next(lab for lab in labels if "ROI_002" in lab))
    source = widget.picker.current()
    raw_layers = list(source.layers)
    assert [layer.name for layer in raw_layers] == [f"{c} [ROI_002]" for c in PANEL]
    before = [_state(layer) for layer in viewer.layers]
    widget.hide_raw.value = False
    assert not widget.clip_percentile.enabled  # a step's value is editable only while it is on
    widget.clip_on.value = True
    assert widget.clip_percentile.enabled
    params = widget.params()
    assert params.hot_pixel_threshold == 50 and params.arcsinh_cofactor == 5
    assert params.clip_percentile == pytest.approx(99.9) and params.zscore

    result = _run(qtbot, widget)
    assert result is widget.result is not None

    # Raw layers (all of them, every acquisition) are untouched, visibility included.
    assert_unchanged([viewer.layers[s["name"]] for s in before], before, _state)
    assert all(layer.visible for layer in raw_layers)

    new = [layer for layer in viewer.layers if layer.name.endswith(" [normalized]")]
    assert [layer.name for layer in new] == [f"{c} [ROI_002] [normalized]" for c in PANEL]
    # Beside the raw ones: directly above the image's top raw layer in the layer list.
    top = max(viewer.layers.index(layer) for layer in raw_layers)
    assert [viewer.layers.index(layer) for layer in new] == list(range(top + 1, top + 6))
    normalizer = None
    for raw, layer in zip(raw_layers, new):
        assert layer.data.shape == raw.data.shape
        assert tuple(layer.scale) == tuple(raw.scale)
        assert tuple(layer.translate) == tuple(raw.translate)
        assert layer.blending == "additive" and layer.colormap.name == raw.colormap.name
        info = layer.metadata[IMC_KEY]
        assert info["kind"] == "normalized" and info["acquisition"] == "ROI_002"
        assert info["normalization"]["parameters"] == params.to_dict()
        assert info["normalization"]["raw_layers"] == [r.name for r in raw_layers]
        normalizer = Normalizer.from_dict(info["normalization"]["normalizer"])
    expected = normalizer(source.image.data)
    np.testing.assert_allclose(np.stack([layer.data for layer in new]), expected, atol=1e-5)

    # The table and the histograms are filled.
    for stage in ("Before", "After"):
        table = widget.table.tables[stage]
        assert table.rowCount() == 5
        assert [widget.table.cell(stage, r, "channel") for r in range(5)] == PANEL
    for r in range(5):
        if widget.table.cell("Before", r, "max") != "0":
            assert abs(float(widget.table.cell("After", r, "mean"))) < 0.1
    assert widget.histograms.n_items == 2
    widget.table.channelSelected.emit(4)
    assert widget.histograms.channel.currentText() == "H3K27Ac"
    assert "[ok]" in widget.status.text() or "[!]" in widget.status.text()

    # The normalized image is found as its own kind, not offered as raw input.
    assert len(widget.picker.images) == 3


def test_rerun_replaces_and_hides_raw(docked, qtbot, imc_testdata):
    viewer, widget = docked
    viewer.open(str(imc_testdata / "steinbock_img/20210305_NE_mockData1_002.ome.tiff"),
                plugin="napari-imc-vae")
    raw = list(viewer.layers)
    # Docked before the file was opened: the picker followed the layers as they came.
    assert widget.picker.combo.currentText() == "20210305_NE_mockData1_002 (5 channels)"
    _run(qtbot, widget)
    widget.arcsinh_on.value = False
    _run(qtbot, widget)
    names = [layer.name for layer in viewer.layers]
    assert names.count("YBX1 [normalized]") == 1 and len(names) == 10
    assert not any(layer.visible for layer in raw)  # hidden by default, not modified
    info = viewer.layers["YBX1 [normalized]"].metadata[IMC_KEY]
    assert info["normalization"]["parameters"]["arcsinh_cofactor"] is None


def test_multichannel_layer(docked, qtbot, rng):
    viewer, widget = docked
    viewer.add_image(rng.poisson(4.0, (3, 32, 32)).astype(np.float32), name="stack")
    assert widget.picker.current().layers == [viewer.layers["stack"]]
    _run(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == [
        "stack", "ch0 [normalized]", "ch1 [normalized]", "ch2 [normalized]"]


@pytest.mark.parametrize(("setup", "problem"), BAD_SELECTIONS)
def test_bad_input_notifies_and_changes_nothing(docked, rng, setup, problem):
    viewer, widget = docked
    setup(viewer, rng)
    assert widget.picker.images == []
    widget.picker.select(SELECTED_LAYERS)
    viewer.layers.selection = set(viewer.layers)
    before = [_state(layer) for layer in viewer.layers]
    n = len(notification_manager.records)
    assert widget.normalize() is None
    messages = messages_since(n)
    assert any(problem in m for m in messages), messages
    assert_unchanged(list(viewer.layers), before, _state)
    assert widget.result is None and widget.run_button.isEnabled()


def test_failure_in_worker_notifies(docked, qtbot, rng, monkeypatch):
    viewer, widget = docked
    viewer.add_image(rng.random((2, 8, 8)).astype(np.float32), name="stack")

    def boom(image, params):
        raise ValueError("cannot normalize this")

    monkeypatch.setattr(nw, "run_normalization", boom)
    n = len(notification_manager.records)
    with qtbot.waitSignal(widget.finished, timeout=10_000) as blocker:
        widget.normalize()
    assert blocker.args == [None]
    assert any("cannot normalize this" in m for m in messages_since(n))
    assert [layer.name for layer in viewer.layers] == ["stack"]
