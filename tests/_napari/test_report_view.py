"""The quality report view and the loss plot's legend, as the user sees them."""

from __future__ import annotations

from napari_imc_vae._napari.loss_plot import TERMS, LossPlot
from napari_imc_vae._napari.report_view import ReportView, report_blocks

REPORT = """\
• Falls short of PCA-4 by ΔR² = -0.653 (R² -0.198 vs 0.455); a linear projection explains more.
• Sharpness ratio 1.786 (9.06× that of PCA-4).

Quality on 11 held-out patches (PCA fitted on 1353), latent dim 4
measure                   model    PCA-4     mean   healthy (smooth data)
R²                       -0.198    0.455   -0.005   ≥ 0.8
Against the smoothed target (σ = 1 px, per patch):
  R²                     -0.303    0.565   -0.005
Verdicts:
- Falls short of PCA-4 by ΔR² = -0.653 (R² -0.198 vs 0.455); a linear projection explains more.
- Sharpness ratio 1.786 (9.06× that of PCA-4).
"""


def test_verdicts_first_and_once_tables_kept_sentences_apart():
    blocks = report_blocks(REPORT)
    assert [kind for kind, _ in blocks] == ["verdicts", "prose", "table", "prose", "table"]
    assert blocks[0][1] == [
        "Falls short of PCA-4 by ΔR² = -0.653 (R² -0.198 vs 0.455); a linear projection explains more.",
        "Sharpness ratio 1.786 (9.06× that of PCA-4)."]
    assert blocks[2][1][1] == "R²                       -0.198    0.455   -0.005   ≥ 0.8"  # columns kept
    assert blocks[4][1] == ["  R²                     -0.303    0.565   -0.005"]
    # verdicts placed last (as the apply report does) still come first
    tail_first = report_blocks("measure   model   PCA\nR²   0.5   0.4\nVerdicts:\n- Beats PCA.\n")
    assert tail_first == [("verdicts", ["Beats PCA."]), ("table", ["measure   model   PCA", "R²   0.5   0.4"])]
    assert report_blocks("No quality report: image too small") == [
        ("prose", ["No quality report: image too small"])]


def test_report_view_shows_every_word_and_wraps_the_verdicts(qtbot):
    view = ReportView("nothing yet")
    qtbot.addWidget(view)
    view.resize(360, 400)
    view.show()
    view.set_report(REPORT)
    shown = view.toPlainText()
    assert shown.count("a linear projection explains more.") == 1
    assert "healthy (smooth data)" in shown and "-0.303" in shown and "Verdicts:" not in shown
    assert view.report_text() == REPORT
    # the verdicts wrap to the width: no sideways scrolling is needed to read them
    doc = view.document()
    first = doc.begin()
    assert first.layout().lineCount() > 1, "the long verdict should wrap at 360 px"
    view.set_report("")
    assert view.toPlainText() == "" and view.placeholderText() == "nothing yet"


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
