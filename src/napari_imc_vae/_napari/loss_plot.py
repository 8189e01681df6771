"""Live plot of every critic term during training (pyqtgraph, log y axis).

Records are appended as they arrive; the curves are redrawn by a timer at most
:data:`REDRAW_INTERVAL_MS` apart, so a fast trainer cannot make the GUI stutter. The legend
sits in its own row below the axes: inside them it hid the curves of a narrow dock. It names
the terms in words a biologist uses (:data:`LEGEND`); the critic's names are in the tooltip.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QVBoxLayout, QWidget

#: Training terms (metrics dict keys) and their colours; validation loss drawn as points.
TERMS = {
    "loss": (255, 255, 255),
    "mse": (80, 180, 255),
    "cosine_loss": (255, 170, 60),
    "gradient_loss": (120, 220, 120),
    "kld_loss": (230, 90, 200),
    "kld_floored": (160, 100, 230),
    "perm_loss": (240, 220, 80),
}
VALIDATION_TERM = "val_loss"
#: What the legend calls each curve, and what the term measures (the tooltip, with its ML name).
LEGEND: dict[str, tuple[str, str]] = {
    "loss": ("total", "everything the training minimizes, weighted"),
    "mse": ("reconstruction", "how far the rebuilt patches are from the images (mean squared error)"),
    "cosine_loss": ("marker mix", "whether each pixel's markers come back in the right proportions "
                                  "(1 - cosine similarity)"),
    "gradient_loss": ("edges", "whether edges between cells come back as sharp (gradient L1)"),
    "kld_loss": ("latent use", "how much the latent code carries about each patch (KL divergence)"),
    "kld_floored": ("latent, counted", "the latent use the training counts: at least the free-bits "
                                           "floor per dimension (free-bits KL)"),
    "perm_loss": ("orientation", "whether the model agrees on how a patch is rotated or flipped "
                                 "(permutation loss)"),
    VALIDATION_TERM: ("held-out total", "the total on patches kept out of training (validation loss)"),
}
#: Redraws at most twice a second: a redraw repaints the window, which costs the trainer CPU under
#: software OpenGL (docs/benchmarks.md).
REDRAW_INTERVAL_MS = 500
#: Log axes cannot show 0 (perm_loss is exactly 0 when all views agree): floor for display.
LOG_FLOOR = 1e-6
#: Legend entries per row below the plot (8 entries: four rows; three columns did not fit a 400 px
#: dock, whose width the legend then widened past the dock's edge).
LEGEND_COLUMNS = 2


def legend_tooltip() -> str:
    """Each legend word with what it measures and the critic's own name for it (rich text)."""
    rows = "".join(f"<li><b>{label}</b>: {meaning} — <code>{name}</code></li>"
                   for name, (label, meaning) in LEGEND.items())
    return (f"<p>Training lowers the total, a weighted sum of the terms; \"latent use\" is shown "
            f"only (a latent that carries nothing is a failure, not a success).</p><ul>{rows}</ul>")


class LossPlot(QWidget):
    """Curves of the critic terms against the training step."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.setMinimumHeight(120)  # the dock fits napari's default window (issue 17)
        self.plot = self.canvas.addPlot(row=0, col=0)
        self.plot.setLogMode(x=False, y=True)
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "loss (log scale)")
        self.plot.setClipToView(True)
        self.plot.setDownsampling(auto=True, mode="peak")
        self.curves = {name: self.plot.plot([], [], pen=pg.mkPen(color, width=1.5))
                       for name, color in TERMS.items()}
        self.curves[VALIDATION_TERM] = self.plot.plot(
            [], [], pen=None, symbol="o", symbolSize=6, symbolBrush=(255, 255, 255), symbolPen=None)
        # a row of its own under the axes, so no entry covers a curve
        self.legend = pg.LegendItem(colCount=LEGEND_COLUMNS, labelTextSize="8pt",
                                    horSpacing=12, verSpacing=-6)
        self.canvas.addItem(self.legend, row=1, col=0)
        for name, curve in self.curves.items():
            self.legend.addItem(curve, LEGEND[name][0])
        self.canvas.setToolTip(legend_tooltip())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self._data: dict[str, tuple[list[float], list[float]]] = {}
        self._dirty = False
        self.redraws = 0
        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_INTERVAL_MS)
        self._timer.timeout.connect(self.redraw)
        self._timer.start()
        self.clear()

    def clear(self) -> None:
        """Forget all points (a new run)."""
        self._data = {name: ([], []) for name in self.curves}
        self._dirty = True

    def add(self, step: int, metrics: dict, validation: dict | None = None) -> None:
        """Append one step's terms (cheap; drawn on the next timer tick)."""
        for name in TERMS:
            value = metrics.get(name)
            if value is not None and math.isfinite(value):
                xs, ys = self._data[name]
                xs.append(float(step))
                ys.append(max(float(value), LOG_FLOOR))
        if validation and validation.get(VALIDATION_TERM) is not None:
            xs, ys = self._data[VALIDATION_TERM]
            xs.append(float(step))
            ys.append(max(float(validation[VALIDATION_TERM]), LOG_FLOOR))
        self._dirty = True

    def add_history(self, history: Iterable[dict], validation: Iterable[dict] = ()) -> None:
        """Plot a model's stored history (when resuming): dicts with a ``"step"`` key."""
        for h in history:
            self.add(int(h.get("step", 0)), h)
        for v in validation:
            self.add(int(v.get("step", 0)), {}, v)

    def redraw(self) -> None:
        """Push new points to the curves (called by the timer)."""
        if not self._dirty:
            return
        self._dirty = False
        self.redraws += 1
        for name, curve in self.curves.items():
            xs, ys = self._data[name]
            curve.setData(np.asarray(xs), np.asarray(ys))

    def n_points(self, name: str) -> int:
        return len(self._data[name][0])
