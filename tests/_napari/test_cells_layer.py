"""Cells in napari: a Labels layer picked in the Reconstruct widget gets the per-cell table as
features, is coloured by error / motif / artefact, and a click shows the cell's row."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from napari.utils.colormaps import DirectLabelColormap

from cell_masks import nuclear_labels

from napari_imc_vae._napari.cells_layer import NO_LABELS, cell_colours
from napari_imc_vae._napari.model_store import model_store
from napari_imc_vae._napari.reconstruct_widget import ReconstructWidget
from napari_imc_vae.engine.training.trainer import TrainConfig
from napari_imc_vae.engine.training.run import TrainingRun
from napari_imc_vae.io import read_imc

FILE = "steinbock_img/20210305_NE_mockData3_002.ome.tiff"
PLUGIN = "napari-imc-vae"


@pytest.fixture(scope="module")
def tiny_model(imc_testdata):
    image = read_imc(imc_testdata / FILE)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on shared cores: a second thread only adds contention
    try:
        trained, _ = TrainingRun([image], model_config={"latent_dim": 4, "width": 16, "depth": 1},
                                 train_config=TrainConfig(steps=20, batch_size=64, device="cpu", seed=0)).run()
    finally:
        torch.set_num_threads(threads)
    return trained


@pytest.fixture
def docked(make_napari_viewer, imc_testdata, tiny_model):
    viewer = make_napari_viewer()
    viewer.open(str(imc_testdata / FILE), plugin=PLUGIN)
    nuc = np.asarray(viewer.layers["H3K27Ac"].data)
    labels = nuclear_labels(nuc)
    viewer.add_labels(labels, name="nuclei")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Reconstruct")
    assert isinstance(widget, ReconstructWidget)
    model_store(viewer).set(tiny_model)
    return viewer, widget, labels


def test_the_labels_layer_gets_the_cell_table_colours_and_clicks(docked, qtbot):
    viewer, widget, labels = docked
    panel = widget.cells
    assert [panel.labels.itemText(i) for i in range(panel.labels.count())] == [NO_LABELS, "nuclei"]
    panel.labels.setCurrentText("nuclei")
    with qtbot.waitSignal(widget.finished, timeout=120_000):
        assert widget.reconstruct() is not None
    layer = viewer.layers["nuclei"]
    features = layer.features
    assert list(features["index"]) == list(range(1, labels.max() + 1)) == list(features["cell_id"])
    assert list(features["area"]) == [int((labels == i).sum()) for i in range(1, labels.max() + 1)]
    assert {"error", "touched_by_artefact", "Yb172_H3K27Ac", "latent_3"} <= set(features.columns)
    np.testing.assert_array_equal(layer.data, labels)  # the segmentation itself is untouched

    # coloured by error (the default): each cell its own colour from its mean error
    assert isinstance(layer.colormap, DirectLabelColormap)
    table = panel.table
    expected = cell_colours(table, "error")
    for cell in table.cell_id:
        np.testing.assert_allclose(layer.colormap.color_dict[int(cell)], expected[int(cell)], atol=1e-6)
    panel.colour.setCurrentText("touched by an artefact")
    touched = table.cell_id[table.touched_by_artefact]
    if touched.size:
        assert tuple(layer.colormap.color_dict[int(touched[0])][:3]) == pytest.approx((0.9, 0.1, 0.1))

    # a click on a cell shows its row
    cell = int(table.cell_id[np.argmax(table.area)])
    ys, xs = np.nonzero(labels == cell)
    position = layer.data_to_world((ys[0], xs[0]))
    panel._on_click(layer, SimpleNamespace(position=position))
    text = panel.row.toPlainText()
    assert text.startswith(f"cell {cell} of 20210305_NE_mockData3_002: {int((labels == cell).sum())} px")
    assert "H3K27Ac: mean" in text


def test_a_labels_layer_of_another_size_is_refused_before_any_work(docked, qtbot):
    from napari.utils.notifications import notification_manager

    viewer, widget, _ = docked
    viewer.add_labels(np.zeros((10, 12), np.uint16), name="small")
    widget.cells.labels.setCurrentText("small")
    before = len(notification_manager.records)
    assert widget.reconstruct() is None
    messages = [str(n.message) for n in notification_manager.records[before:]]
    assert any("the mask Labels layer 'small' is 10×12 px but the image" in m for m in messages), messages
