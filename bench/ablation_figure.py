"""The ablation's figure: input | reconstruction | error, one row per setting (Pillow only).

Input and reconstructions are false-colour composites of the three most spatially structured
channels, every row on the input's display range, so blur and averaging show as they are. The
error is the per-pixel RMS over all channels in normalized units, on one colour scale for every
row: black is no error, the brightest yellow is the 99th percentile of the data's own spread
(the error of predicting the channel mean everywhere).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_MAGMA = np.array([(0, 0, 4), (81, 18, 124), (183, 55, 121), (252, 137, 97), (252, 253, 191)], dtype=np.float64)
_PAD, _LABEL_H = 6, 18


def _structured_channels(target: np.ndarray, n: int = 3) -> list[int]:
    """Channels whose neighbouring pixels agree most (lag-1 correlation): structure, not noise."""
    scores = []
    for ch in np.nan_to_num(target):
        a, b = ch[:, 1:].ravel(), ch[:, :-1].ravel()
        scores.append(np.corrcoef(a, b)[0, 1] if a.std() > 0 and b.std() > 0 else -1.0)
    return [int(i) for i in np.argsort(scores)[::-1][:n]]


def _composite(image: np.ndarray, channels: list[int], ranges: list[tuple[float, float]]) -> np.ndarray:
    rgb = np.zeros(image.shape[1:] + (3,))
    for colour, (c, (lo, hi)) in enumerate(zip(channels, ranges)):
        rgb[..., colour] = np.clip((np.nan_to_num(image[c]) - lo) / max(hi - lo, 1e-6), 0, 1)
    return (rgb * 255).astype(np.uint8)


def _magma(values: np.ndarray) -> np.ndarray:
    t = np.clip(np.nan_to_num(values), 0, 1) * (len(_MAGMA) - 1)
    i = np.minimum(t.astype(int), len(_MAGMA) - 2)
    f = (t - i)[..., None]
    return ((1 - f) * _MAGMA[i] + f * _MAGMA[i + 1]).astype(np.uint8)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def save_figure(path: Path, target: np.ndarray, reconstructions: dict[str, np.ndarray],
                rows: list[tuple[str, str]], *, title: str, panel_height: int = 150) -> None:
    """Write the figure.

    Parameters
    ----------
    path : Path
        PNG to write.
    target : ndarray (C, Y, X)
        The held-out image in normalized units.
    reconstructions : dict
        Setting key → whole reconstruction (C, Y, X) in the same units; keys missing here are skipped.
    rows : list of (key, label)
        Row order and labels.
    title : str
    """
    channels = _structured_channels(target)
    ranges = [tuple(np.nanpercentile(target[c], [1, 99.5])) for c in channels]
    spread = np.sqrt(np.nanmean(np.square(target), axis=0))
    err_max = float(np.nanpercentile(spread, 99)) or 1.0
    scale = max(1, -(-panel_height // target.shape[1]))  # ceil

    def panel(rgb: np.ndarray) -> Image.Image:
        return Image.fromarray(rgb).resize((rgb.shape[1] * scale, rgb.shape[0] * scale), Image.NEAREST)

    inp = panel(_composite(target, channels, ranges))
    w, h = inp.size
    rows = [(k, label) for k, label in rows if k in reconstructions]
    font, small = _font(13), _font(11)
    footer = [f"composite: channels {channels} as R, G, B",
              f"error: 0 to {err_max:.2f} (99th pct. of the data's RMS) as black to yellow"]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max(measure.textlength(t, font=f) for t, f in [(title, font), *((t, small) for t in footer),
                                                            *((label, small) for _, label in rows)])
    width = max(3 * w + 4 * _PAD, int(text_w) + 2 * _PAD)
    height = 2 * _LABEL_H + _PAD + len(rows) * (h + _LABEL_H + _PAD) + len(footer) * _LABEL_H
    fig = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(fig)
    draw.text((_PAD, 2), title, fill="black", font=font)
    for j, head in enumerate(["input", "reconstruction", "error (RMS over channels)"]):
        draw.text((_PAD + j * (w + _PAD), _LABEL_H + 2), head, fill="black", font=small)
    y = 2 * _LABEL_H + _PAD
    for key, label in rows:
        rec = reconstructions[key]
        draw.text((_PAD, y), label, fill="black", font=small)
        y += _LABEL_H
        err = np.sqrt(np.nanmean(np.square(rec - target), axis=0)) / err_max
        for j, img in enumerate([inp, panel(_composite(rec, channels, ranges)), panel(_magma(err))]):
            fig.paste(img, (_PAD + j * (w + _PAD), y))
        y += h + _PAD
    for line in footer:
        draw.text((_PAD, y), line, fill="black", font=small)
        y += _LABEL_H
    fig.save(path)
