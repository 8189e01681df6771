"""A read-only view of a quality report: verdicts word-wrapped, the table in a fixed font.

The reports are plain text (``QualityReport.format_text()`` and its verdicts). Lines that
start with a bullet are verdicts, the sentences a reader needs whole: they come first and wrap
to the view's width. Lines with columns belong to a table that only lines up in a
fixed-width font, so they are kept as they are (scroll sideways when the dock is narrow);
the sentences between tables wrap too.
"""

from __future__ import annotations

import html
import re

from qtpy.QtGui import QFontDatabase
from qtpy.QtWidgets import QTextBrowser, QWidget

BULLETS = ("• ", "- ", "* ")
VERDICTS_HEADER = "Verdicts:"
#: A table row has columns: two or more spaces between words.
_COLUMNS = re.compile(r"\S {2,}\S")


def report_blocks(text: str) -> list[tuple[str, list[str]]]:
    """Split a plain-text report into blocks of ``"verdicts"``, ``"prose"`` and ``"table"`` lines.

    Parameters
    ----------
    text : str

    Returns
    -------
    list of (kind, lines)
        One ``"verdicts"`` block first: every bullet line of the text, without its bullet,
        each once (reports list their verdicts twice: first, and again under "Verdicts:").
        Then the other lines in the text's order: lines with columns (``"table"``, shown in
        a fixed font as they are) and the sentences between them (``"prose"``, wrapped).
        Blank lines and the "Verdicts:" header only separate blocks.
    """
    verdicts: list[str] = []
    rest: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith(BULLETS):
            verdict = line[2:].strip()
            if verdict not in verdicts:
                verdicts.append(verdict)
            continue
        if not line.strip() or line.strip() == VERDICTS_HEADER:
            rest.append(("blank", []))
            continue
        kind = "table" if _COLUMNS.search(line.strip()) else "prose"
        if rest and rest[-1][0] == kind:
            rest[-1][1].append(line.rstrip())
        else:
            rest.append((kind, [line.rstrip()]))
    blocks = [("verdicts", verdicts)] if verdicts else []
    return blocks + [(kind, lines) for kind, lines in rest if kind != "blank"]


def report_html(text: str) -> str:
    """The report as HTML: verdicts as a bulleted list, sentences wrapped, tables preformatted."""
    mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont).family()
    parts = []
    for kind, lines in report_blocks(text):
        if kind == "verdicts":
            items = "".join(f"<li style='margin-bottom:3px'>{html.escape(v)}</li>" for v in lines)
            parts.append(f"<ul style='margin-left:-20px'>{items}</ul>")
        elif kind == "prose":
            parts.append("".join(f"<p style='margin:2px 0'>{html.escape(v.strip())}</p>"
                                 for v in lines))
        else:
            body = html.escape("\n".join(lines))
            parts.append(f"<pre style='font-family:\"{mono}\"; margin:2px 0'>{body}</pre>")
    return "".join(parts)


class ReportView(QTextBrowser):
    """Shows a plain-text quality report (see the module docstring); scrolls both ways.

    Parameters
    ----------
    placeholder : str
        Shown while there is no report.
    """

    def __init__(self, placeholder: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setOpenLinks(False)
        self.setPlaceholderText(placeholder)
        self.setLineWrapMode(QTextBrowser.LineWrapMode.WidgetWidth)
        self._text = ""

    def set_report(self, text: str) -> None:
        """Show ``text`` (plain text; empty clears the view)."""
        self._text = text or ""
        if self._text:
            self.setHtml(report_html(self._text))
        else:
            self.clear()

    def report_text(self) -> str:
        """The plain text last shown."""
        return self._text
