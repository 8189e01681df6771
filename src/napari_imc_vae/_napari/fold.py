"""A section of a dock folded under a header button, for what most users do not need at first."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QToolButton, QVBoxLayout, QWidget

__all__ = ["Fold"]


class Fold(QWidget):
    """A section folded under a header button (closed at first): ``content`` shows when opened."""

    def __init__(self, title: str, content: QWidget, *, tip: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.content = content
        self.header = QToolButton()
        self.header.setText(title)
        self.header.setCheckable(True)
        self.header.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.header.setAutoRaise(True)
        self.header.setToolTip(tip)
        self.header.toggled.connect(self._show)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.header)
        layout.addWidget(content)
        self._show(False)

    @property
    def is_open(self) -> bool:
        return self.header.isChecked()

    def set_open(self, on: bool) -> None:
        """Unfold (True) or fold (False) the section, as a click on the header does."""
        self.header.setChecked(bool(on))

    def _show(self, on: bool) -> None:
        self.header.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.content.setVisible(on)
