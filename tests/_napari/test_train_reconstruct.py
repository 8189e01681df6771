"""The "Train VAE" and "Reconstruct" dock widgets, docked through the manifest."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
from napari.utils.notifications import notification_manager
from qtpy.QtCore import QTimer

from napari_imc_vae._napari.layer_data import IMC_KEY, image_layer_data
from napari_imc_vae._napari.model_store import RunState, model_store
from napari_imc_vae._napari.picker import SELECTED_LAYERS
from napari_imc_vae._napari.reconstruct_widget import ReconstructWidget
from napari_imc_vae._napari.train_task import format_report
from napari_imc_vae._napari.train_widget import TrainWidget
from napari_imc_vae.datasets import synthetic_tissue
from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
from napari_imc_vae.engine.training.trainer import TrainConfig
from napari_imc_vae.io import ImcImage
from widget_checks import BAD_SELECTIONS, assert_unchanged, messages_since

FILE = "steinbock_img/20210305_NE_mockData5_003.ome.tiff"
IMAGE = "20210305_NE_mockData5_003"
PANEL = ["Ag107", "Cytokeratin 5", "Laminin", "YBX1", "H3K27Ac"]
PLUGIN = "napari-imc-vae"


def _state(layer) -> dict:
    return {"data": np.array(layer.data, copy=True), "name": layer.name,
            "contrast_limits": tuple(layer.contrast_limits), "colormap": layer.colormap.name,
            "scale": tuple(layer.scale), "translate": tuple(layer.translate),
            "blending": layer.blending, "metadata": copy.deepcopy(layer.metadata)}


def _tiny(widget: TrainWidget, steps: int = 30) -> None:
    """A model small enough to train in a few seconds on two CPU cores."""
    f = widget.form
    f.patch.value = 8
    f.latent.value = 4
    f.hidden_width.value = 32
    f.depth.value = 1
    f.steps.value = steps
    f.batch.value = 64
    f.device.value = "cpu"


@pytest.fixture
def docked(make_napari_viewer, imc_testdata):
    viewer = make_napari_viewer()
    viewer.open(str(imc_testdata / FILE), plugin=PLUGIN)
    _, train = viewer.window.add_plugin_dock_widget(PLUGIN, "Train VAE")
    _, recon = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruct")
    assert isinstance(train, TrainWidget) and isinstance(recon, ReconstructWidget)
    return viewer, train, recon


def _result(viewer, kind: str, marker: str | None = None):
    """The Reconstruct widget's layer of ``kind`` (and ``marker``), found by its metadata, not its name."""
    found = [layer for layer in viewer.layers if layer.metadata.get(IMC_KEY, {}).get("kind") == kind
             and layer.metadata[IMC_KEY].get("channel_name") == marker]
    assert len(found) == 1, [layer.name for layer in found]
    return found[0]


def _train(qtbot, widget, timeout=120_000):
    with qtbot.waitSignal(widget.finished, timeout=timeout) as blocker:
        assert widget.train() is not None
    return blocker.args[0]


def _reconstruct(qtbot, widget):
    with qtbot.waitSignal(widget.finished, timeout=60_000) as blocker:
        assert widget.reconstruct() is not None
    return blocker.args[0]


def test_normalize_train_reconstruct(docked, qtbot):
    viewer, train, recon = docked
    _, norm = viewer.window.add_plugin_dock_widget(PLUGIN, "Normalize channels")
    norm.hide_raw.value = False
    with qtbot.waitSignal(norm.finished, timeout=60_000):
        norm.normalize()
    raw_layers = [viewer.layers[name] for name in PANEL]
    before = [_state(layer) for layer in raw_layers]
    # Only raw images are offered for training; the first one is checked. The layer
    # selection is a check box of its own, not an entry that reads like an image.
    assert [im.label for im in train.images.images] == [f"{IMAGE} (5 channels)"]
    lst = train.images.list
    assert [lst.item(r).text() for r in range(lst.count())] == [f"{IMAGE} (5 channels)"]
    assert not train.images.use_selection.isChecked()
    assert recon.model is None and not recon.run_button.isEnabled()
    _tiny(train)
    assert "Device in use: cpu" in train.device_label.text()

    ticks = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start()
    outcome = _train(qtbot, train)
    timer.stop()
    # The event loop kept running while the worker trained (the test waits ≥ a few seconds).
    assert len(ticks) > 20, len(ticks)
    assert train.status.state is RunState.DONE and not outcome.stopped
    assert outcome.trained.step == 30 and train.save_button.isEnabled()
    # one point per read of the loss terms (every log_every steps and at each validation)
    n = train.plot.n_points("loss")
    assert 30 // TrainConfig().log_every <= n <= 30 and train.plot.n_points("kld_loss") == n
    assert train.plot.n_points("val_loss") >= 1
    assert train.progress_bar.value() == 30
    text = train.report.toPlainText()
    # the model's own sharpness figure is shown, and called blurry exactly when the report found blur
    sharpness = outcome.report.model.sharpness_ratio
    assert "PCA" in text and f"{sharpness:.3f}" in text, text
    assert ("Blurry" in text) == ("blur" in outcome.report.problems), text
    # the whole report, each verdict once, in the tab raised at the end of training
    assert train.report.report_text() == format_report(outcome)
    assert train.tabs.currentWidget() is train.report
    for verdict in outcome.report.verdicts():
        assert text.count(verdict) == 1, verdict
    assert model_store(viewer).model is outcome.trained and recon.run_button.isEnabled()
    assert "unsaved" in recon.model_label.text()

    recon.k.value = 3
    recon.all_markers.value = True
    layers = _reconstruct(qtbot, recon)
    names = [layer.name for layer in viewer.layers]
    error = _result(viewer, "error")
    assert viewer.layers[-1] is error and error.name == "error (noise SD)"  # on top; one image: no tag
    raw0 = raw_layers[0]
    for name, raw in zip(PANEL, raw_layers):
        layer = _result(viewer, "recon", name)
        assert layer.name == f"{name} [model]"
        assert layer.data.shape == raw.data.shape == (81, 91)
        assert tuple(layer.scale) == tuple(raw.scale) and tuple(layer.translate) == tuple(raw.translate)
        assert layer.blending == "additive" and layer.colormap.name == raw.colormap.name
        assert tuple(layer.contrast_limits) == tuple(raw.contrast_limits)
        info = layer.metadata[IMC_KEY]
        assert info["kind"] == "recon" and info["image"] == f"{IMAGE}_recon"
        prov = info["provenance"]
        assert prov["model_sha256"] == "unsaved" and prov["training_step"] == 30 and prov["stride"] == 4
        assert prov["normalization"]["channel_names"] == PANEL
        assert _result(viewer, "missed", name).data.shape == (81, 91)
    # Recon layers sit right above the raw ones.
    top = max(names.index(n) for n in PANEL)
    assert names[top + 1 : top + 6] == [f"{n} [model]" for n in PANEL]
    assert error.data.shape == (81, 91) and error.colormap.name == "magma"
    assert 0 < error.opacity < 1 and tuple(error.scale) == tuple(raw0.scale)
    # the latent map is one 2-D RGB layer (its first 3 principal components): no dims slider
    latent = _result(viewer, "latent")
    assert latent.rgb and latent.data.shape == (21, 23, 3) and viewer.dims.ndim == 2
    assert latent.metadata[IMC_KEY]["latent"].shape == (4, 21, 23)
    np.testing.assert_allclose(latent.scale, np.asarray(raw0.scale) * 4)
    # the quality report of the model on this image, whole
    assert recon.report.report_text() == recon.result.report_text
    assert recon.result.report_text and "PCA" in recon.report.toPlainText()
    motifs = _result(viewer, "motifs")
    assert type(motifs).__name__ == "Labels" and motifs.data.shape == (81, 91)
    assert set(np.unique(motifs.data)) <= {1, 2, 3} and motifs.data.min() == 1
    assert len(layers) == 5 + 5 + 5  # recon, per-channel residuals; latent, motifs, hot pixels, regions, error
    assert type(_result(viewer, "hotpixels")).__name__ == "Labels"
    regions = _result(viewer, "regions")
    assert type(regions).__name__ == "Points" and regions.name == "high-error regions"
    assert recon.regions.rowCount() == len(recon.result.regions) == len(regions.data)
    # Raw units: the reconstruction is on the scale of the raw counts, not z-scores.
    assert np.nanmax(_result(viewer, "recon", "H3K27Ac").data) > 5
    assert_unchanged(raw_layers, before, _state)

    # Running again replaces that image's result layers (found by their metadata).
    recon.all_markers.value = False
    _reconstruct(qtbot, recon)
    again = [layer.name for layer in viewer.layers]
    assert _result(viewer, "error") is not error and _result(viewer, "recon", "YBX1").name == "YBX1 [model]"
    assert len(again) == len(names)  # the per-marker layers of the last run stay

    # A second image in the viewer: each image's whole-image layers end in its short tag, so
    # the names stay unique and short (the first image's are renamed), and a click on a region
    # still finds the renamed Points layer.
    crop = ImcImage(data=recon.result.image.data[:, :60, :60].copy(), channel_names=PANEL,
                    source="other/x_004.ome.tiff")
    other, kwargs, _ = image_layer_data(crop)
    second = viewer.add_image(other, **kwargs)
    recon.picker.select("x_004 (5 channels)")
    _reconstruct(qtbot, recon)
    errors = sorted(layer.name for layer in viewer.layers if layer.metadata.get(IMC_KEY, {}).get("kind") == "error")
    assert errors == ["error (noise SD) · 003", "error (noise SD) · 004"]
    points = [layer for layer in viewer.layers if layer.metadata.get(IMC_KEY, {}).get("kind") == "regions"]
    assert sorted(layer.name for layer in points) == ["high-error regions · 003", "high-error regions · 004"]
    assert recon.regions.rowCount() >= 1  # the crop has a region of high error, so the click below is checked
    recon.regions.go_to(0)
    mine = next(p for p in points if p.metadata[IMC_KEY]["source_image"] == "x_004")
    assert mine.selected_data == {0}
    assert all(layer in viewer.layers for layer in second)
    assert_unchanged(raw_layers, before, _state)


def test_stop_save_load_reconstruct(docked, qtbot, tmp_path):
    viewer, train, recon = docked
    _tiny(train, steps=100_000)
    worker = train.train()
    assert train.status.state is RunState.TRAINING and train.stop_button.isEnabled()
    assert not train.train_button.isEnabled()
    qtbot.waitUntil(lambda: train.plot.n_points("loss") >= 3, timeout=60_000)
    with qtbot.waitSignal(train.finished, timeout=60_000) as blocker:
        train.stop()
    outcome = blocker.args[0]
    assert worker is not None and outcome.stopped and train.status.state is RunState.STOPPED
    assert 3 <= outcome.trained.step < 100_000
    assert train.train_button.isEnabled() and not train.stop_button.isEnabled()

    first = _reconstruct(qtbot, recon)
    expected = {layer.name: np.array(layer.data) for layer in first}
    path = train.save_model(str(tmp_path / "model.pt"))
    assert path.is_file()
    loaded = recon.load_model(str(path))
    assert loaded is recon.model and loaded.step == outcome.trained.step
    assert str(path) in recon.model_label.text()
    second = _reconstruct(qtbot, recon)
    for layer in second:
        np.testing.assert_allclose(layer.data, expected[layer.name], rtol=1e-5, atol=1e-5)
        if IMC_KEY in layer.metadata:
            assert layer.metadata[IMC_KEY]["provenance"]["model_sha256"] == loaded.file_sha256

    # Resume from the file: same step count continues.
    assert train.resume_from(str(path)) is not None
    assert not train.form.patch.enabled
    train.form.steps.value = 5
    resumed = _train(qtbot, train)
    assert resumed.trained.step == outcome.trained.step + 5


def test_closing_the_widget_stops_training(docked, qtbot):
    viewer, train, _ = docked
    _tiny(train, steps=100_000)
    train.train()
    qtbot.waitUntil(lambda: train.plot.n_points("loss") >= 2, timeout=60_000)
    job = train.job
    viewer.window.remove_dock_widget(train.parent() if train.parent() else train)
    train.close()
    assert job.stop_requested
    # the training thread ends (after its step), not only the request to stop
    import threading

    qtbot.waitUntil(lambda: all(t.name != "imc-vae-worker" for t in threading.enumerate()), timeout=10_000)


@pytest.mark.parametrize(("setup", "problem"), BAD_SELECTIONS)
def test_bad_input_notifies_and_changes_nothing(make_napari_viewer, rng, setup, problem):
    viewer = make_napari_viewer()
    _, train = viewer.window.add_plugin_dock_widget(PLUGIN, "Train VAE")
    _, recon = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruct")
    setup(viewer, rng)
    viewer.layers.selection = set(viewer.layers)
    train.images.set_checked([SELECTED_LAYERS])
    recon.picker.select(SELECTED_LAYERS)
    model_store(viewer).set(SimpleNamespace(source_file=None, step=0, channel_names=[]))
    before = [(layer.name, np.array(layer.data)) for layer in viewer.layers]
    n = len(notification_manager.records)
    assert train.train() is None and recon.reconstruct() is None
    messages = messages_since(n)
    assert sum(problem in m for m in messages) == 2, messages
    assert [layer.name for layer in viewer.layers] == [b[0] for b in before]
    assert train.status.state is RunState.IDLE and train.train_button.isEnabled()


def test_nothing_checked_and_small_image(docked, rng):
    viewer, train, _ = docked
    train.images.set_checked([])
    n = len(notification_manager.records)
    assert train.train() is None
    assert any("No image checked" in m for m in messages_since(n))
    train.images.set_checked([f"{IMAGE} (5 channels)"])
    train.form.patch.value = 128
    assert train.train() is None
    assert any("smaller than the 128 × 128 px patch" in m for m in messages_since(n))


def test_model_for_other_channels(docked, qtbot, tmp_path):
    viewer, train, recon = docked
    _tiny(train, steps=3)
    outcome = _train(qtbot, train)
    path = outcome.trained.save(tmp_path / "model.pt")
    # An image of another panel: 5 channels, but not these (the test files share one panel).
    viewer.layers.clear()
    data, kwargs, _ = image_layer_data(synthetic_tissue(shape=(40, 40), n_channels=5))
    viewer.add_image(data, **kwargs)
    before = [_state(layer) for layer in viewer.layers]
    n = len(notification_manager.records)
    recon.load_model(str(path))
    assert recon.reconstruct() is None
    assert any("missing" in m and "extra" in m for m in messages_since(n)), messages_since(n)
    assert train.resume_from(str(path)) is not None
    assert train.train() is None
    assert any("cannot resume" in m and "missing" in m for m in messages_since(n))
    assert_unchanged(list(viewer.layers), before, _state)
    assert isinstance(recon.model, TrainedModel)


def test_widget_reconstructs_the_models_channels_and_names_the_ignored(make_napari_viewer, qtbot,
                                                                      extra_channel_case):
    trained, image = extra_channel_case
    viewer = make_napari_viewer()
    data, kwargs, _ = image_layer_data(image)
    raw_layers = viewer.add_image(data, **kwargs)
    _, recon = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruct")
    model_store(viewer).set(trained)
    recon.all_markers.value = True
    n = len(notification_manager.records)
    layers = _reconstruct(qtbot, recon)
    assert recon.status.state is RunState.DONE
    note = "ignoring channels not in the model: H3K27Ac"
    assert note in recon.message.text(), recon.message.text()
    assert any(note in m for m in messages_since(n)), messages_since(n)
    names = [layer.name for layer in viewer.layers]
    expected = ["DNA2", "Histone H3", "DNA1", "Ki67"]
    assert [layer.name for layer in layers[:4]] == [f"{c} [model]" for c in expected]
    assert "H3K27Ac [model]" not in names
    top = max(names.index(layer.name) for layer in raw_layers)
    assert names[top + 1 : top + 5] == [f"{c} [model]" for c in expected]  # right above the raw ones
    raw_by_name = {layer.name: layer for layer in raw_layers}
    for c, layer in zip(expected, layers[:4]):
        raw = raw_by_name[c]
        assert layer.colormap.name == raw.colormap.name
        assert tuple(layer.contrast_limits) == tuple(raw.contrast_limits)
        assert layer.metadata[IMC_KEY]["channel_name"] == c
