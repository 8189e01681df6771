"""Diagnose an image's channels before and after normalization.

The reference project's diagnose script read a hard-coded path and printed
raw numbers; this one takes any image and a normalizer and states verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from napari_imc_vae.io.image import ImcImage
from napari_imc_vae.preprocessing.normalizer import Normalizer
from napari_imc_vae.preprocessing.stats import ChannelStats, channel_stats
from napari_imc_vae.preprocessing.transforms import check_stack

__all__ = ["MAX_MEAN", "MAX_SCALE_RATIO", "STD_RANGE", "Diagnosis", "diagnose"]

MAX_SCALE_RATIO = 100.0  # largest / smallest channel scale beyond which channels need normalizing
MAX_MEAN = 0.1  # |mean| after normalization
STD_RANGE = (0.8, 1.2)  # std after normalization


@dataclass
class Diagnosis:
    """Per-channel statistics before and after normalization, and the verdicts.

    Attributes
    ----------
    source, acquisition : str
        Where the image came from (may be empty / None).
    shape : tuple of int
        (C, Y, X) of the diagnosed stack.
    normalizer : Normalizer
        The normalizer applied.
    before, after : list of ChannelStats
        Statistics of the raw and the normalized channels, same order.
    scales : list of float or None
        Robust scale of each raw channel (:attr:`ChannelStats.scale`: p99, or
        max when p99 is 0); None for empty channels.
    scale_ratio : float or None
        Largest over smallest scale among non-empty channels; None when no
        channel has a scale.
    constant_channels : list of str
        Channels holding a single value, raw or in the normalizer (includes empty ones).
    empty_channels : list of str
        Channels that are all zero or have no finite pixel.
    offenders : list of dict
        Non-constant channels whose normalized mean or std is out of range:
        ``{"name", "mean", "std"}``.
    """

    source: str
    acquisition: str | None
    shape: tuple[int, int, int]
    normalizer: Normalizer
    before: list[ChannelStats]
    after: list[ChannelStats]
    scales: list[float | None]
    scale_ratio: float | None
    constant_channels: list[str] = field(default_factory=list)
    empty_channels: list[str] = field(default_factory=list)
    offenders: list[dict] = field(default_factory=list)

    @property
    def scales_differ(self) -> bool:
        """Channel scales differ by more than :data:`MAX_SCALE_RATIO`."""
        return self.scale_ratio is not None and self.scale_ratio > MAX_SCALE_RATIO

    @property
    def normalized_ok(self) -> bool:
        """After normalization, every non-constant channel has |mean| <= 0.1, 0.8 <= std <= 1.2."""
        return not self.offenders

    def _extreme(self, pick) -> str | None:
        named = [(s, st.name) for s, st in zip(self.scales, self.before) if s is not None]
        return pick(named)[1] if named else None

    def to_dict(self) -> dict:
        """JSON-safe dict: str, int, float, bool, None and lists only; never NaN."""
        return {
            "source": self.source,
            "acquisition": self.acquisition,
            "shape": list(self.shape),
            "normalization": self.normalizer.params.to_dict(),
            "channels": [st.name for st in self.before],
            "before": [st.to_dict() for st in self.before],
            "after": [st.to_dict() for st in self.after],
            "scales": list(self.scales),
            "largest_scale_channel": self._extreme(max),
            "smallest_scale_channel": self._extreme(min),
            "scale_ratio": self.scale_ratio,
            "verdicts": {
                "scales_differ": self.scales_differ,
                "max_scale_ratio": MAX_SCALE_RATIO,
                "normalized_ok": self.normalized_ok,
                "max_abs_mean": MAX_MEAN,
                "std_range": list(STD_RANGE),
                "offenders": [dict(o) for o in self.offenders],
                "constant_channels": list(self.constant_channels),
                "empty_channels": list(self.empty_channels),
            },
        }

    def format_text(self) -> str:
        """Aligned tables and verdict lines for people."""
        c, y, x = self.shape
        where = self.source or "image"
        if self.acquisition:
            where += f" (acquisition {self.acquisition})"
        lines = [
            f"Diagnosis of {where}: {c} channels, {y} × {x} px",
            f"Normalization: {self.normalizer.params.describe()}",
            "",
            "Before normalization",
            *_table(self.before),
            "",
            "After normalization",
            *_table(self.after),
            "",
        ]
        if self.scale_ratio is None:
            lines.append("Channel scale (p99, or max where p99 is 0): no channel has a scale")
        else:
            present = [s for s in self.scales if s is not None]
            lines.append(
                f"Channel scale (p99, or max where p99 is 0): largest {self._extreme(max)} "
                f"{_fmt(max(present))}, smallest {self._extreme(min)} {_fmt(min(present))}, "
                f"ratio {_fmt(self.scale_ratio)}×"
            )
        if self.scales_differ:
            lines.append(f"[!] channel scales differ more than {MAX_SCALE_RATIO:g}×: "
                         "normalize (arcsinh, clipping, z-score) before training")
        else:
            lines.append(f"[ok] channel scales within {MAX_SCALE_RATIO:g}× of each other")
        rule = f"|mean| <= {MAX_MEAN:g} and {STD_RANGE[0]:g} <= std <= {STD_RANGE[1]:g}"
        if self.normalized_ok:
            lines.append(f"[ok] after normalization every non-constant channel has {rule}")
        else:
            bad = ", ".join(f"{o['name']} (mean {_fmt(o['mean'])}, std {_fmt(o['std'])})"
                            for o in self.offenders)
            lines.append(f"[!] after normalization these channels miss {rule}: {bad}")
        if self.constant_channels:
            tagged = [n + (" (empty)" if n in self.empty_channels else "")
                      for n in self.constant_channels]
            lines.append(f"[!] constant channels (normalized to 0): {', '.join(tagged)}")
        else:
            lines.append("[ok] no constant or empty channel")
        return "\n".join(lines)


_COLUMNS = ("min", "median", "mean", "std", "p99", "max", "zeros", "non-finite")


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def _table(stats: list[ChannelStats]) -> list[str]:
    rows = [
        [st.name, *(_fmt(getattr(st, k)) for k in ("min", "median", "mean", "std", "p99", "max")),
         "-" if st.zero_fraction is None else f"{100 * st.zero_fraction:.1f}%", str(st.nonfinite)]
        for st in stats
    ]
    header = ["channel", *_COLUMNS]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r):
        return "  ".join([r[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(r[1:], widths[1:])])

    return [line(header), *(line(r) for r in rows)]


def diagnose(image, normalizer: Normalizer | None = None, *, channel_names=None,
             normalized=None) -> Diagnosis:
    """Statistics before and after normalization, scale ratio and verdicts.

    Parameters
    ----------
    image : ImcImage or ndarray of shape (C, Y, X)
        The image to diagnose. An ImcImage's channels are matched to the
        normalizer's by name, so another order is fine.
    normalizer : Normalizer, optional
        Default: a z-score-only normalizer fitted on ``image``.
    channel_names : sequence of str, optional
        Names for an array ``image`` (default: the normalizer's names).

    normalized : ndarray of shape (C, Y, X), optional
        ``normalizer(image)`` when the caller already has it (in the normalizer's
        channel order), so the image is not normalized a second time.

    Returns
    -------
    Diagnosis

    Raises
    ------
    ValueError
        If the image does not have the normalizer's channels.
    """
    if normalizer is None:
        normalizer = Normalizer.fit(image, channel_names=channel_names)
    if isinstance(image, ImcImage):
        match = normalizer.match_channels(image)  # extra channels are left out
        raw = match.take(image.data)
        names = [image.channel_names[i] for i in match.index]
        source, acquisition = image.source, image.acquisition
    else:
        raw = check_stack(image, "image")
        names = list(channel_names) if channel_names is not None else list(normalizer.channel_names)
        source, acquisition = "", None
    if normalized is None:
        normalized = normalizer(raw)
    elif np.shape(normalized) != raw.shape:
        raise ValueError(f"normalized must have the image's shape {raw.shape}, got {np.shape(normalized)}")
    before = channel_stats(raw, names)
    after = channel_stats(normalized, names)

    scales = [st.scale for st in before]
    present = [s for s in scales if s is not None]
    ratio = max(present) / min(present) if present else None
    constant = [n for n, b, a, fit_const in zip(names, before, after, normalizer.constant)
                if b.is_constant or a.is_constant or fit_const]
    offenders = [
        {"name": a.name, "mean": a.mean, "std": a.std}
        for a in after
        if a.name not in constant
        and not (abs(a.mean) <= MAX_MEAN and STD_RANGE[0] <= a.std <= STD_RANGE[1])
    ]
    return Diagnosis(
        source=source,
        acquisition=None if acquisition is None else str(acquisition),
        shape=tuple(int(s) for s in np.shape(raw)),
        normalizer=normalizer,
        before=before,
        after=after,
        scales=scales,
        scale_ratio=ratio,
        constant_channels=constant,
        empty_channels=[b.name for b in before if b.is_empty],
        offenders=offenders,
    )
