"""The report view (sentences first, the numbers folded) and the loss plot's legend, as the user sees them."""

from __future__ import annotations

import pytest
import torch
from qtpy.QtCore import Qt

from napari_imc_vae._napari.loss_plot import TERMS, LossPlot
from napari_imc_vae._napari.report_view import NUMBERS_TOOLTIP, ReportView, numbers_blocks
from napari_imc_vae.engine.apply.use_case import apply_to_image
from napari_imc_vae.engine.quality.summary import NUMBERS_HEADER, split_two_layers
from napari_imc_vae.engine.training.trainer import TrainConfig
from napari_imc_vae.engine.training.run import TrainingRun
from napari_imc_vae.io import read_imc

JARGON = ("R²", "PCA", "KLD", "latent", "permutation")


@pytest.fixture(scope="module")
def real_report(imc_testdata) -> str:
    """The report of a tiny model trained on two real ROIs, applied to a third (mockData5)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        images = [read_imc(imc_testdata / "steinbock_img" / f"20210305_NE_mockData{s}.ome.tiff")
                  for s in ("2_001", "3_001")]
        trained, _ = TrainingRun(images, model_config={"latent_dim": 8, "width": 32, "depth": 1},
                                 train_config=TrainConfig(steps=40, batch_size=64, device="cpu", seed=0)).run()
        held_out = read_imc(imc_testdata / "steinbock_img" / "20210305_NE_mockData5_003.ome.tiff")
        return apply_to_image(trained, held_out).report_text()
    finally:
        torch.set_num_threads(n)


def test_numbers_split_into_tables_lists_and_sentences():
    text = ("Quality on 11 patches\nmeasure   model   PCA-4\nR²   -0.198   0.455\n\n"
            "Verdicts:\n- Falls short of PCA-4.\n- Sharpness ratio 1.786.")
    assert numbers_blocks(text) == [
        ("prose", ["Quality on 11 patches"]), ("table", ["measure   model   PCA-4", "R²   -0.198   0.455"]),
        ("prose", ["Verdicts:"]), ("bullets", ["Falls short of PCA-4.", "Sharpness ratio 1.786."])]


def test_sentences_show_first_and_the_numbers_unfold_in_a_narrow_dock(make_napari_viewer, qtbot, real_report):
    sentences, numbers = split_two_layers(real_report)
    assert sentences and numbers and not any(w in s for s in sentences for w in JARGON)
    viewer = make_napari_viewer(show=True)
    view = ReportView("nothing yet")
    dock = viewer.window.add_dock_widget(view, name="Report", area="right")
    viewer.window._qt_window.resizeDocks([dock], [400], Qt.Orientation.Horizontal)
    view.set_report(real_report)
    qtbot.waitExposed(view)
    qtbot.waitUntil(lambda: view.width() <= 420)
    assert view.report_text() == real_report

    # first layer: the sentences, visible, whole; the numbers folded by default
    assert view.sentences.isVisible() and view.sentences_text() == "\n".join(sentences)
    assert all(s.split(":")[0] in view.sentences.text() for s in sentences)
    assert not view.expanded and not view.numbers.isVisible()
    assert view.toggle.isVisible() and view.toggle.text() == NUMBERS_HEADER.rstrip(":")
    assert view.toggle.arrowType() == Qt.ArrowType.RightArrow
    assert view.toggle.toolTip() == NUMBERS_TOOLTIP and "R²" in NUMBERS_TOOLTIP  # the ML names live here

    def fits(label) -> bool:  # nothing cut off: the wrapped text's height fits, and no sideways scrolling
        return (label.width() <= view.viewport().width()
                and label.heightForWidth(label.width()) <= label.height()
                and view.horizontalScrollBar().maximum() == 0)

    qtbot.waitUntil(lambda: fits(view.sentences))

    # second layer: unfolds on a click, tables and all, still within the dock's width
    qtbot.mouseClick(view.toggle, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.numbers.isVisible())
    assert view.expanded and view.toggle.arrowType() == Qt.ArrowType.DownArrow
    assert "<table" in view.numbers.text() and "verdict&#x27;s test" in view.numbers.text()
    assert "Cytokeratin 5" in view.numbers.text()
    qtbot.waitUntil(lambda: fits(view.numbers))
    assert "healthy" not in view.toPlainText() and "R²" in view.toPlainText()
    # a new report keeps the reader's choice; folding hides the numbers again
    view.set_report(real_report)
    assert view.numbers.isVisible()
    qtbot.mouseClick(view.toggle, Qt.MouseButton.LeftButton)
    assert not view.numbers.isVisible() and not view.expanded


def test_an_empty_view_shows_its_placeholder_and_no_fold(qtbot):
    view = ReportView("The report appears here.")
    qtbot.addWidget(view)
    view.show()
    assert "The report appears here." in view.sentences.text() and not view.toggle.isVisible()
    view.set_report("No quality report: the image is 5×5 px")
    assert view.sentences_text() == "No quality report: the image is 5×5 px" and not view.toggle.isVisible()
    assert view.placeholderText() == "The report appears here."


def test_loss_legend_sits_below_the_curves(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(420, 300)
    plot.show()
    for step in range(1, 50):
        plot.add(step, {name: 1.0 / step for name in TERMS}, {"val_loss": 2.0 / step})
    plot.redraw()
    qtbot.waitExposed(plot)
    curves = plot.plot.vb.sceneBoundingRect()
    legend = plot.legend.sceneBoundingRect()
    assert legend.top() >= curves.bottom(), (legend, curves)
    assert not legend.intersects(curves)
    assert len(plot.legend.items) == len(TERMS) + 1
