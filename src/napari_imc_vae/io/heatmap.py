"""A heatmap PNG of ROIs × markers, the picture of a cohort a person reads first.

Drawn with Pillow (which napari already brings) rather than matplotlib, which is not a
dependency: one renderer on every installation, tested where it runs. Viridis colours
(perceptually even, readable in grey and by colour-blind readers), the value written in
each cell when it fits, missing values grey, the names to look at first in red.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_imc_vae.io.atomic import atomic_write

__all__ = ["write_heatmap_png", "viridis"]

# viridis at 0, 1/4, 1/2, 3/4, 1 (matplotlib's table); linear in between is within a few levels
_VIRIDIS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], float)
_MISSING = (200, 200, 200)
_HIGHLIGHT = (200, 0, 0)


def viridis(t: np.ndarray) -> np.ndarray:
    """RGB uint8 (…, 3) of values in [0, 1] (clipped)."""
    t = np.clip(np.asarray(t, float), 0.0, 1.0) * (len(_VIRIDIS) - 1)
    lo = np.minimum(np.floor(t).astype(int), len(_VIRIDIS) - 2)
    frac = (t - lo)[..., None]
    return np.round(_VIRIDIS[lo] * (1 - frac) + _VIRIDIS[lo + 1] * frac).astype(np.uint8)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _text_width(draw, text: str, font) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return int(right - left)


def _wrap(draw, text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        trial = f"{line} {word}".strip()
        if line and _text_width(draw, trial, font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + ([line] if line else [])


def write_heatmap_png(path: str | os.PathLike, values: np.ndarray, row_labels: Sequence[str],
                      col_labels: Sequence[str], *, title: str, unit: str,
                      highlight_rows: Sequence[str] = (), highlight_cols: Sequence[str] = (),
                      vmax: float | None = None) -> Path:
    """Write ``values`` (rows × columns) as a labelled heatmap PNG with a colour bar.

    Parameters
    ----------
    path : path-like
    values : ndarray of shape (R, M)
        NaN cells are drawn grey. The colour scale runs from 0 to ``vmax``.
    row_labels, col_labels : sequence of str
    title : str
        Wrapped to the picture's width.
    unit : str
        Label of the colour bar.
    highlight_rows, highlight_cols : sequence of str
        Labels drawn in red (the worst ones).
    vmax : float, optional
        Top of the colour scale; default the largest finite value. A fixed top in the values'
        unit keeps a cohort where nothing is wrong from looking alarming.
    """
    from PIL import Image, ImageDraw

    values = np.asarray(values, float)
    rows, cols = values.shape
    if (rows, cols) != (len(row_labels), len(col_labels)):
        raise ValueError(f"values of shape {values.shape} for {len(row_labels)} row and {len(col_labels)} "
                         "column labels")
    font, small = _font(14), _font(11)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    cell_w = 44 if cols <= 30 else max(12, 1320 // cols)
    cell_h = 22 if rows <= 40 else max(6, 880 // rows)
    label_w = max([_text_width(probe, s, font) for s in row_labels] + [40]) + 12
    col_label_h = max([_text_width(probe, s, font) for s in col_labels] + [40]) + 12
    grid_w, grid_h = cols * cell_w, rows * cell_h
    width = max(label_w + grid_w + 110, 640)
    title_lines = _wrap(probe, title, font, width - 20)
    top = 10 + 20 * len(title_lines) + col_label_h
    bar_h = max(min(grid_h, 240), 60)
    height = top + max(grid_h, bar_h + 20) + 20
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(title_lines):
        draw.text((10, 8 + 20 * i), line, fill="black", font=font)

    finite = values[np.isfinite(values)]
    if vmax is None or not vmax > 0:
        vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    colours = viridis(np.nan_to_num(values, nan=0.0) / vmax)
    show_numbers = cell_w >= 40 and cell_h >= 16
    for r in range(rows):
        y0 = top + r * cell_h
        colour = _HIGHLIGHT if row_labels[r] in highlight_rows else (0, 0, 0)
        draw.text((6, y0 + (cell_h - 14) // 2), row_labels[r], fill=colour, font=font)
        for c in range(cols):
            x0 = label_w + c * cell_w
            v = values[r, c]
            fill = tuple(int(x) for x in colours[r, c]) if math.isfinite(v) else _MISSING
            draw.rectangle((x0, y0, x0 + cell_w - 1, y0 + cell_h - 1), fill=fill, outline="white")
            if show_numbers and math.isfinite(v):
                ink = "white" if v / vmax < 0.6 else "black"
                draw.text((x0 + 4, y0 + (cell_h - 11) // 2), f"{v:.2f}", fill=ink, font=small)
    for c, label in enumerate(col_labels):  # column labels upright, read bottom to top
        w = _text_width(probe, label, font) + 4
        tile = Image.new("RGB", (w, 18), "white")
        ImageDraw.Draw(tile).text((2, 1), label, font=font,
                                  fill=_HIGHLIGHT if label in highlight_cols else (0, 0, 0))
        tile = tile.rotate(90, expand=True)
        img.paste(tile, (label_w + c * cell_w + (cell_w - 18) // 2, top - 6 - w))
    # colour bar
    bar_x = label_w + grid_w + 20
    ramp = viridis(np.linspace(1, 0, bar_h))[:, None, :].repeat(16, axis=1)
    img.paste(Image.fromarray(ramp), (bar_x, top))
    draw.text((bar_x + 20, top - 2), f"{vmax:.2f}", fill="black", font=small)
    draw.text((bar_x + 20, top + bar_h - 12), "0", fill="black", font=small)
    draw.text((bar_x, top + bar_h + 4), unit, fill="black", font=small)
    return atomic_write(path, lambda f: img.save(f, format="PNG"))
