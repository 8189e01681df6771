"""The Reconstruct widget's controls of the comparison view (:mod:`.comparison_view`).

A check box turns the view on and off, a list picks the markers, a button goes back to the
user's layout, a legend says what the colours and the unit mean. Showing markers runs as a
few small steps over event-loop turns (:class:`.layer_feed.LayerFeed`), so the GUI never
freezes while napari adds the panels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from napari.utils.notifications import show_error
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QAbstractItemView, QCheckBox, QLabel, QListWidget, QListWidgetItem, QPushButton, \
    QVBoxLayout, QWidget

from napari_imc_vae._napari.comparison_view import ComparisonRow, ComparisonView
from napari_imc_vae._napari.layer_feed import LayerFeed
from napari_imc_vae.engine.apply.error_unit import ERROR_UNIT_SENTENCE

#: More rows than this make panels too small to read on a 1080p screen.
MAX_ROWS = 3
LEGEND = ("Red: more counts measured than the model predicts (signal it misses). "
          "Blue: the model predicts counts that are not there. Black: as predicted.")


class ComparePanel(QWidget):
    """The Reconstruct widget's controls of the comparison view.

    A check box turns the view on and off (before a reconstruction it only says what happens
    after one); a list picks the markers, best explained first, and switches the view at
    once; "Back to my layout" restores the user's layout; a legend says what the colours
    and the unit mean.

    Showing markers takes a few event-loop turns (one layer each, see ``LayerFeed``), so the
    GUI never freezes; ``shown`` says when the view matches the controls again. A pick made
    meanwhile is shown right after.

    Parameters
    ----------
    viewer : napari.viewer.Viewer

    Attributes
    ----------
    shown : Signal()
        The view matches the controls (after a pick, a toggle, :meth:`refresh`).
    """

    shown = Signal()

    def __init__(self, viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = ComparisonView(viewer)
        self._feeding = False  # steps of changes() are running (here or in the widget's feed)
        self._stale = False  # the controls changed while they ran: one more pass
        self._make_rows: Callable[[list[int]], list[ComparisonRow]] | None = None
        self.toggle = QCheckBox("Compare side by side: measured | model | missed")
        self.toggle.setChecked(True)
        self.toggle.setToolTip("On: after Reconstruct, only the picked markers are shown, three panels each. "
                               "Off: your own layout.")
        self.markers = QListWidget()
        self.markers.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        self.markers.setWordWrap(True)
        self.markers.setMaximumHeight(130)
        self.markers.setToolTip(f"Click markers to compare (at most {MAX_ROWS} at once); best explained first")
        self.back = QPushButton("Back to my layout")
        self.back.setEnabled(False)
        self.legend = QLabel(f"{LEGEND} {ERROR_UNIT_SENTENCE}")
        self.legend.setWordWrap(True)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.toggle, self.markers, self.note, self.back, self.legend):
            layout.addWidget(widget)
        self.toggle.toggled.connect(self._toggled)
        self.markers.itemSelectionChanged.connect(self.refresh)
        self.back.clicked.connect(lambda: self.toggle.setChecked(False))

    def set_markers(self, items: list[tuple[str, int, str]], picked: list[int],
                    make_rows: Callable[[list[int]], list[ComparisonRow]], *, show: bool = True) -> None:
        """List the markers of a new reconstruction and pick ``picked``; show them when on and ``show``.

        Parameters
        ----------
        items : list of (text, key, tooltip)
            In the order listed; ``key`` is what ``make_rows`` takes.
        picked : list of int
            Keys selected at first.
        make_rows : callable
            Keys → :class:`ComparisonRow` s (cheap: no statistics).
        show : bool
            False: the caller runs :meth:`changes` itself (the widget, in its own feed).
        """
        self._make_rows = make_rows
        self.markers.blockSignals(True)
        try:
            self.markers.clear()
            for text, key, tip in items:
                item = QListWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, key)
                item.setToolTip(tip)
                self.markers.addItem(item)
                item.setSelected(key in picked)
        finally:
            self.markers.blockSignals(False)
        if show:
            self.refresh()

    def picked(self) -> list[int]:
        """Keys of the selected markers, in list order."""
        return [self.markers.item(r).data(Qt.ItemDataRole.UserRole) for r in range(self.markers.count())
                if self.markers.item(r).isSelected()]

    def pick(self, keys: list[int]) -> None:
        """Select exactly ``keys``; the view follows (``shown`` when done)."""
        self.markers.blockSignals(True)
        try:
            for r in range(self.markers.count()):
                item = self.markers.item(r)
                item.setSelected(item.data(Qt.ItemDataRole.UserRole) in keys)
        finally:
            self.markers.blockSignals(False)
        self.refresh()

    def refresh(self) -> None:
        """Bring the view in line with the controls: the picked markers when on, else the user's layout.

        Going back to the user's layout happens at once; showing markers over the next few
        event-loop turns. ``shown`` is emitted when the view matches.
        """
        if self._feeding:  # the running steps make one more pass with the new pick
            self._stale = True
            return
        if self._wants_markers():
            feed = LayerFeed(self.changes(), self)
            feed.finished.connect(lambda _results: self.shown.emit())
            feed.failed.connect(self._failed)
            feed.start()
        else:
            for step in self.changes():
                step()
            self.shown.emit()

    def changes(self) -> Iterator[Callable[[], object]]:
        """Steps that bring the view in line with the controls, again if they change meanwhile."""
        self._feeding = True
        try:
            while True:
                self._stale = False
                yield from self._one_pass()
                if not self._stale:
                    return
        finally:
            self._feeding = False

    def _wants_markers(self) -> bool:
        return self.toggle.isChecked() and self._make_rows is not None and bool(self.picked())

    def _one_pass(self) -> Iterator[Callable[[], object]]:
        keys = self.picked()
        self.note.setText("" if len(keys) <= MAX_ROWS else
                          f"Showing the first {MAX_ROWS} of the {len(keys)} picked markers.")
        if self._wants_markers():
            yield from self.view.show_steps(self._make_rows(keys[:MAX_ROWS]))
        else:
            yield self.view.restore
            if self.toggle.isChecked() and self._make_rows is not None:
                self.note.setText("Pick a marker to compare.")
        yield lambda: self.back.setEnabled(self.view.active)

    def _failed(self, exc: Exception) -> None:
        self.note.setText(f"Could not show the comparison: {exc}")
        show_error(f"Comparison view: {exc}")
        self.shown.emit()

    def _toggled(self, _on: bool) -> None:
        self.refresh()
