"""Sizes shared by the plugin's dock widgets, so that napari's canvas keeps most of a 1080p window.

A dock widget's size hint sets the dock's first width, and its minimum size hint the window's
minimum: a tall form without a scroll area forced napari's window past a 1080p screen and left
the canvas 80 px wide (issue 17). Long forms go in :func:`scrolling`; the dock starts
:data:`DOCK_WIDTH` wide and is never taller than :data:`DOCK_MIN_HEIGHT` at its smallest.
"""

from __future__ import annotations

from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

#: First width of a dock (px): with napari's layer list beside the canvas, the canvas keeps
#: over 60% of a 1700 px window (the launcher's) and of a 1920 px one.
DOCK_WIDTH = 400
#: Widest a dock may be dragged (px): wider only steals the canvas's room.
DOCK_MAX_WIDTH = 720
#: The most a dock may ask for at its smallest (px): napari's default window is 630-651 px tall,
#: of which the menu, the status bar and the dock's title and tabs take about 90.
DOCK_MIN_HEIGHT = 540


def scrolling(content: QWidget, min_height: int = 120) -> QScrollArea:
    """``content`` in a frameless vertical scroll area that is at least ``min_height`` px tall.

    The content keeps its own height at the top of the area (a form is not spread out).
    """
    holder = QWidget()
    column = QVBoxLayout(holder)
    column.setContentsMargins(0, 0, 0, 0)
    column.addWidget(content)
    column.addStretch(1)
    area = QScrollArea()
    area.setWidget(holder)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    area.setMinimumHeight(min_height)
    return area


def dock_size_hint(widget: QWidget) -> QSize:
    """The size a dock widget asks for first: :data:`DOCK_WIDTH` wide, as tall as it likes."""
    return QSize(DOCK_WIDTH, max(widget.minimumSizeHint().height(), 600))
