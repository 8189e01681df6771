"""A read-only view of a report in two layers: plain sentences first, the numbers folded below.

The reports are plain text (``ModelApplication.report_text()``, the training outcome's, the
CLI's): a few plain sentences, then :data:`~napari_imc_vae.engine.quality.summary.NUMBERS_HEADER` and
the figures behind them (R², the comparison with PCA, sharpness …). The sentences are what a
biologist reads; the numbers stay folded behind an arrow button until asked for. Both wrap to
the dock's width: the numbers' tables (lines with columns) become HTML tables whose cells wrap,
so nothing is cut off in a narrow dock (and if a table still cannot shrink, the view scrolls
sideways rather than clip it).
"""

from __future__ import annotations

import html
import re

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

from napari_imc_vae._napari.fold import Fold
from napari_imc_vae.engine.quality.summary import NUMBERS_HEADER, split_two_layers

__all__ = ["ReportView", "numbers_blocks", "numbers_html", "NUMBERS_TOOLTIP"]

#: The expander's tooltip: the machine-learning names live here and in the numbers, not in the sentences.
NUMBERS_TOOLTIP = ("The figures behind the sentences: R² (variance explained) of the model, of PCA with as many "
                   "components as the model's latent dimensions and of the mean patch; sharpness and diversity "
                   "ratios; active latent units; permutation (orientation) accuracy; per marker, the share of "
                   "structure kept and the signal over counting noise.")
#: A table row has columns: two or more spaces between words.
_COLUMNS = re.compile(r"\S {2,}\S")
_SPLIT = re.compile(r" {2,}")
_BULLETS = ("- ", "• ", "* ")
_NUMBER = re.compile(r"^[-+]?[\d.,]+%?$|^—$|^\d+/\d+$")


def numbers_blocks(text: str) -> list[tuple[str, list[str]]]:
    """Split the numbers' text into ``"table"``, ``"bullets"`` and ``"prose"`` blocks of lines.

    Lines with columns (two or more spaces between words) are table rows; lines starting with
    a bullet are list items (without the bullet); other non-empty lines are prose. Blank lines
    only separate blocks.
    """
    blocks: list[tuple[str, list[str]]] = []
    previous = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            previous = None
            continue
        if line.startswith(_BULLETS):
            kind, stripped = "bullets", stripped[2:].strip()
        else:
            kind = "table" if _COLUMNS.search(stripped) else "prose"
        if kind == previous and blocks:
            blocks[-1][1].append(stripped if kind != "table" else line.rstrip())
        else:
            blocks.append((kind, [stripped if kind != "table" else line.rstrip()]))
        previous = kind
    return blocks


def _cell(value: str, header: bool) -> str:
    align = "right" if _NUMBER.match(value) else "left"
    tag = "th" if header else "td"
    return f"<{tag} align='{align}' style='padding:1px 6px 1px 0'>{html.escape(value)}</{tag}>"


def numbers_html(text: str) -> str:
    """The numbers as HTML: tables as wrapping HTML tables (first row bold), lists, paragraphs."""
    parts = []
    for kind, lines in numbers_blocks(text):
        if kind == "table":
            rows = []
            for i, line in enumerate(lines):
                indent = "&nbsp;&nbsp;" if line.startswith("  ") else ""
                cells = _SPLIT.split(line.strip())
                header = i == 0 and not any(_NUMBER.match(c) for c in cells)
                first = f"{indent}{html.escape(cells[0])}"
                tag = "th" if header else "td"
                rows.append(f"<tr><{tag} align='left' style='padding:1px 6px 1px 0'>{first}</{tag}>"
                            + "".join(_cell(c, header) for c in cells[1:]) + "</tr>")
            parts.append(f"<table cellspacing='0' style='margin:2px 0 6px 0'>{''.join(rows)}</table>")
        elif kind == "bullets":
            items = "".join(f"<li>{html.escape(v)}</li>" for v in lines)
            parts.append(f"<ul style='margin:2px 0 6px -20px'>{items}</ul>")
        else:
            parts.append("".join(f"<p style='margin:2px 0'>{html.escape(v)}</p>" for v in lines))
    return "".join(parts)


def _wrapping_label() -> QLabel:
    label = QLabel()
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
    return label


class ReportView(QScrollArea):
    """Shows a plain-text report: its sentences, then its numbers behind a fold (see the module).

    Parameters
    ----------
    placeholder : str
        Shown while there is no report.
    """

    def __init__(self, placeholder: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self._placeholder = placeholder
        self._text = ""
        inner = QWidget()
        layout = QVBoxLayout(inner)
        layout.setContentsMargins(4, 4, 4, 4)
        self.sentences = _wrapping_label()
        self.numbers = _wrapping_label()
        self.numbers.setToolTip(NUMBERS_TOOLTIP)
        self.fold = Fold(NUMBERS_HEADER.rstrip(":"), self.numbers, tip=NUMBERS_TOOLTIP)
        self.toggle = self.fold.header
        layout.addWidget(self.sentences)
        layout.addWidget(self.fold)
        layout.addStretch(1)
        self.setWidget(inner)
        self.set_report("")

    # the report
    def set_report(self, text: str) -> None:
        """Show ``text`` (plain text; empty shows the placeholder). The fold keeps its state."""
        self._text = text or ""
        sentences, numbers = split_two_layers(self._text)
        if not self._text:
            self.sentences.setText(f"<p style='color:gray'>{html.escape(self._placeholder)}</p>")
        else:
            self.sentences.setText("".join(f"<p style='margin:0 0 6px 0'>{html.escape(s)}</p>"
                                           for s in sentences))
        self.numbers.setText(numbers_html(numbers))
        self.fold.setVisible(bool(numbers.strip()))  # no numbers: no fold at all

    def report_text(self) -> str:
        """The plain text last shown."""
        return self._text

    def toPlainText(self) -> str:  # noqa: N802 - the QTextEdit name the widgets' callers use
        """Everything the report says, folded or not: the sentences, then the numbers."""
        sentences, numbers = split_two_layers(self._text)
        return "\n".join(sentences) + (f"\n{numbers}" if numbers else "")

    def sentences_text(self) -> str:
        """The first layer as plain text: the sentences, one a line."""
        return "\n".join(split_two_layers(self._text)[0])

    def placeholderText(self) -> str:  # noqa: N802 - Qt's name
        return self._placeholder

    def setPlaceholderText(self, text: str) -> None:  # noqa: N802 - Qt's name
        self._placeholder = text
        if not self._text:
            self.set_report("")

    # the fold
    @property
    def expanded(self) -> bool:
        """Whether the numbers are unfolded."""
        return self.fold.is_open

    def set_expanded(self, expanded: bool) -> None:
        """Unfold (True) or fold (False) the numbers."""
        self.fold.set_open(expanded)
