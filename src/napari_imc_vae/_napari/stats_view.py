"""Per-channel statistics table and before/after histograms (Qt + pyqtgraph)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from napari_imc_vae._napari.normalize_task import HIST_UPPER_PERCENTILE, Histogram
from napari_imc_vae.preprocessing import ChannelStats

COLUMNS = ("channel", "min", "median", "mean", "std", "p99", "max", "zeros", "non-finite")


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def stats_row(st: ChannelStats) -> list[str]:
    """The table cells of one channel."""
    zeros = "–" if st.zero_fraction is None else f"{100 * st.zero_fraction:.1f}%"
    values = (st.min, st.median, st.mean, st.std, st.p99, st.max)
    return [st.name, *(_fmt(v) for v in values), zeros, str(st.nonfinite)]


class StatsTable(QTabWidget):
    """Two tabs, "Before" and "After", each a per-channel statistics table.

    ``channelSelected(int)`` fires when a row is clicked in either table.
    """

    channelSelected = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tables: dict[str, QTableWidget] = {}
        for stage in ("Before", "After"):
            table = QTableWidget(0, len(COLUMNS))
            table.setHorizontalHeaderLabels(list(COLUMNS))
            table.verticalHeader().setVisible(False)
            table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
            table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
            table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
            table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
            table.verticalHeader().setDefaultSectionSize(20)
            table.cellClicked.connect(lambda row, _col: self.channelSelected.emit(row))
            self.tables[stage] = table
            self.addTab(table, stage)

    def set_stats(self, before: Sequence[ChannelStats], after: Sequence[ChannelStats]) -> None:
        """Fill both tables (one row per channel)."""
        for stage, stats in (("Before", before), ("After", after)):
            table = self.tables[stage]
            table.setRowCount(len(stats))
            for row, st in enumerate(stats):
                for col, text in enumerate(stats_row(st)):
                    item = QTableWidgetItem(text)
                    if col:
                        item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                              | Qt.AlignmentFlag.AlignVCenter)
                    table.setItem(row, col, item)

    def cell(self, stage: str, row: int, column: str) -> str:
        """Text of one cell, e.g. ``cell("After", 0, "mean")``."""
        item = self.tables[stage].item(row, COLUMNS.index(column))
        return "" if item is None else item.text()


class HistogramView(QWidget):
    """Histograms of one channel before and after normalization (log pixel counts)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.channel = QComboBox()
        self.channel.currentIndexChanged.connect(self.show_channel)
        self.plots = pg.GraphicsLayoutWidget()
        self.plots.setMinimumHeight(260)
        self.before = self.plots.addPlot(row=0, col=0)
        self.after = self.plots.addPlot(row=1, col=0)
        for plot, unit in ((self.before, "raw counts"), (self.after, "normalized")):
            plot.setLabel("left", "log10(pixels + 1)")
            plot.setLabel("bottom", unit)
            plot.showGrid(x=True, y=True, alpha=0.25)
            plot.setMouseEnabled(x=True, y=False)
        row = QHBoxLayout()
        row.addWidget(QLabel("Histogram of"))
        row.addWidget(self.channel, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.plots)
        self._hists: tuple[list[Histogram], list[Histogram]] = ([], [])

    def set_histograms(self, names: Sequence[str], before: Sequence[Histogram],
                       after: Sequence[Histogram], *, channel: int = 0) -> None:
        """Show new per-channel histograms, starting with ``channel``."""
        self._hists = (list(before), list(after))
        self.channel.blockSignals(True)
        self.channel.clear()
        self.channel.addItems(list(names))
        self.channel.blockSignals(False)
        self.channel.setCurrentIndex(channel)
        self.show_channel(channel)

    def show_channel(self, index: int) -> None:
        """Draw the before/after histograms of channel ``index``."""
        before, after = self._hists
        if not 0 <= index < len(before):
            return
        name = self.channel.itemText(index)
        for plot, hist, brush, stage in (
            (self.before, before[index], (255, 170, 60, 150), "before"),
            (self.after, after[index], (80, 180, 255, 150), "after"),
        ):
            plot.clear()
            plot.plot(hist.edges, np.log10(hist.counts + 1.0), stepMode="center",
                      fillLevel=0, brush=brush, pen=pg.mkPen(brush[:3], width=1))
            note = f" — {hist.above} px above p{HIST_UPPER_PERCENTILE:g}" if hist.above else ""
            plot.setTitle(f"{name} {stage}{note}", size="9pt")
            plot.enableAutoRange()

    @property
    def n_items(self) -> int:
        """Number of data items currently drawn in the two plots."""
        return len(self.before.listDataItems()) + len(self.after.listDataItems())
