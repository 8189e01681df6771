"""Channel lists kept beside a TIFF stack: steinbock ``panel.csv`` or a same-stem ``.csv``.

- steinbock ``panel.csv`` (columns ``channel,name[,keep,...]``): the rows with ``keep=1``, in
  order, are the stack's channels; without a ``keep`` column every row is one.
- ImcSegmentationPipeline ``<stack>.csv``: one channel per line (a metal such as ``Pr141``
  or a label), optionally with a header such as ``channel_name,channel_label``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from napari_imc_vae.io import _suffixes
from napari_imc_vae.io._common import metal_from_label, parse_metal
from napari_imc_vae.io.image import ImcReadError

# Lower-cased header names, most specific first.
_METAL_COLUMNS = ("channel", "metal tag", "metal", "channel_name", "channel name", "isotope")
_LABEL_COLUMNS = ("name", "target", "channel_label", "channel label", "label", "marker")
_TIFF_SUFFIXES = _suffixes.OME_TIFF + _suffixes.TIFF  # longest first


class PanelCountError(ImcReadError):
    """A channel list's (kept) row count differs from its stack's channel count."""

    def __init__(self, message: str, listed: int, found: int) -> None:
        super().__init__(message)
        self.listed, self.found = listed, found


@dataclass(frozen=True)
class Panel:
    """Channels listed by a panel file, in stack order."""

    metals: list[str | None]
    labels: list[str | None]
    source: Path


def _rows(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ImcReadError(f"{path}: cannot read the channel list: {e}") from e
    rows = [[cell.strip() for cell in row] for row in csv.reader(text.splitlines())]
    return [row for row in rows if any(row)]


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [h.lower() for h in header]
    return next((lowered.index(n) for n in names if n in lowered), None)


def _cell(row: list[str], index: int | None) -> str:
    return row[index] if index is not None and index < len(row) else ""


def _kept(value: str) -> bool:
    if value.lower() in ("true", "yes", "y"):
        return True
    try:
        return float(value) != 0
    except ValueError:
        return False


def _identity(metal_cell: str | None, label_cell: str | None) -> tuple[str | None, str | None]:
    metal = parse_metal(metal_cell) or metal_from_label(label_cell) or metal_from_label(metal_cell)
    label = label_cell or None
    if label is None and metal_cell and parse_metal(metal_cell) is None:
        label = metal_cell  # a marker name or a Fluidigm label alone on its line
    return metal, label


def read_table(path: Path) -> Panel:
    """Parse a channel table with or without a header row.

    Parameters
    ----------
    path : Path
        A steinbock ``panel.csv`` or a one-channel-per-line ``.csv``.

    Returns
    -------
    Panel
        Metals and labels of the kept rows, in file order.

    Raises
    ------
    ImcReadError
        When the file cannot be read or has a header without a channel or name column.
    """
    rows = _rows(path)
    if not rows:
        raise ImcReadError(f"{path}: channel list is empty")
    header = rows[0]
    metal_col = _column(header, _METAL_COLUMNS)
    label_col = _column(header, _LABEL_COLUMNS)
    if metal_col is None and label_col is None:
        if _column(header, ("keep",)) is not None:
            raise ImcReadError(f"{path}: panel has neither a 'channel' nor a 'name' column")
        # Headerless: first cell the channel, an optional second cell its label.
        pairs = [_identity(r[0], r[1] if len(r) > 1 else None) for r in rows]
        return Panel([m for m, _ in pairs], [lab for _, lab in pairs], path)
    keep_col = _column(header, ("keep",))
    metals, labels = [], []
    for row in rows[1:]:
        if keep_col is not None and not _kept(_cell(row, keep_col)):
            continue
        metal, label = _identity(_cell(row, metal_col) or None, _cell(row, label_col) or None)
        metals.append(metal)
        labels.append(label)
    return Panel(metals, labels, path)


def same_stem_csv(tiff_path: Path) -> Path:
    """``x.csv`` for ``x.tiff``, ``x.tif``, ``x.ome.tiff`` or ``x.ome.tif``."""
    name = tiff_path.name
    for suffix in _TIFF_SUFFIXES:
        if name.lower().endswith(suffix):
            return tiff_path.with_name(name[: -len(suffix)] + ".csv")
    return tiff_path.with_suffix(".csv")


def find_panel(tiff_path: Path, n_channels: int) -> Panel | None:
    """The channel list beside a TIFF stack: same-stem ``.csv`` first, then ``panel.csv``.

    Parameters
    ----------
    tiff_path : Path
        The stack.
    n_channels : int
        Channels in the stack; the list must have exactly as many (kept) rows.

    Returns
    -------
    Panel or None
        None when neither file exists.

    Raises
    ------
    ImcReadError
        When a list exists but cannot be parsed or its row count differs from the stack's.
    """
    for candidate in (same_stem_csv(tiff_path), tiff_path.parent / "panel.csv"):
        if candidate.is_file():
            panel = read_table(candidate)
            if len(panel.metals) != n_channels:
                what = "rows with keep=1" if candidate.name == "panel.csv" else "channels"
                raise PanelCountError(
                    f"{candidate}: lists {len(panel.metals)} {what} but {tiff_path} "
                    f"has {n_channels} channels",
                    listed=len(panel.metals), found=n_channels,
                )
            return panel
    return None


def labels_by_metal(folder: Path) -> dict[str, str]:
    """Metal -> target from a ``panel.csv`` in ``folder`` (all rows); empty when unusable.

    Used to name ``.mcd``/``.txt`` channels by target; a broken panel must not stop those
    files from being read, since they carry their own channel labels.
    """
    path = folder / "panel.csv"
    if not path.is_file():
        return {}
    try:
        rows = _rows(path)
    except ImcReadError:
        return {}
    if not rows:
        return {}
    metal_col = _column(rows[0], _METAL_COLUMNS)
    label_col = _column(rows[0], _LABEL_COLUMNS)
    if metal_col is None or label_col is None:
        return {}
    out = {}
    for row in rows[1:]:
        if max(metal_col, label_col) < len(row):
            metal = parse_metal(row[metal_col])
            if metal and row[label_col]:
                out[metal] = row[label_col]
    return out
