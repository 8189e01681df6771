"""Per marker, how much of the image's signal the model explains, in words a biologist knows.

Both the image and the reconstruction are compared in raw counts after the same light
smoothing (Gaussian σ = 1 px), so that structure counts and the counting (shot) noise of
single pixels does not: a model that predicts the true rate everywhere scores about 1.

Counting noise has a known size. A count of mean λ varies by λ (Poisson; λ + φλ² with the
overdispersion φ of a negative binomial), and smoothing multiplies that variance by the
kernel's energy Σ k² (≈ 0.08 for σ = 1 px). So, per channel, with ``s`` the smoothed image and
``ŝ`` the smoothed reconstruction:

- ``noise`` = Σk² · mean(s + φs²): the variance counting noise alone leaves in ``s``;
- ``signal_to_noise`` = Var(s) / noise: about 1 for a channel of pure counting noise (no
  structure), tens to hundreds for a stained marker (measured on the shared IMC test data:
  1.0–1.5 for Cytokeratin 5 where it is not stained, 35–1,270 for stained markers);
- the channel has real signal when ``signal_to_noise`` ≥ :data:`MIN_SIGNAL_TO_NOISE`;
- ``explained`` = 1 − (mean((s − ŝ)²) − noise) / (Var(s) − noise), clipped to 0 … 1: the
  share of the image's structure (its variance beyond counting noise) the model reproduces.

The words for ``explained`` are in :data:`EXPLAINED_WORDS`; a channel without real signal gets
no share (None) and a warning when the model nevertheless predicts a pattern there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["MarkerSummary", "summarize_markers", "marker_table", "marker_label", "MIN_SIGNAL_TO_NOISE",
           "EXPLAINED_WORDS"]

#: A channel has real signal when its smoothed image varies at least this many times more than
#: counting noise alone would make it vary (see the module docstring). Unstained channels of the
#: shared test data score 1.0–1.5 (Cytokeratin 5) and 2–6 (Ag107, "only detectable in
#: mockData1"), stained ones 35 and more.
MIN_SIGNAL_TO_NOISE = 10.0
#: Lowest ``explained`` for each phrase, best first.
EXPLAINED_WORDS = ((0.75, "most structure kept"),
                   (0.5, "main structure kept, finer detail lost"),
                   (0.25, "only the coarse pattern kept"),
                   (0.0, "little of its structure kept"))
#: The reconstruction "shows a pattern" when its smoothed image varies across the image by at
#: least this fraction of its mean (standard deviation over mean) and by at least
#: :data:`_PATTERN_MIN_COUNTS` counts: napari stretches a layer's contrast to its range, so a
#: faint pattern over a flat background still looks like expression on screen.
_PREDICTS_PATTERN = 0.25
_PATTERN_MIN_COUNTS = 0.01
_SIGMA = 1.0


@dataclass(frozen=True)
class MarkerSummary:
    """How well the model reproduces one marker of one image.

    Attributes
    ----------
    name : str
        steinbock-style channel name (``Pr141_Cytokeratin 5``).
    label : str
        What a biologist calls it (``Cytokeratin 5``).
    explained : float or None
        Share (0 … 1) of the image's structure beyond counting noise that the reconstruction
        reproduces; None when the channel has no real signal (or no finite pixel).
    has_signal : bool
        Whether the image holds structure above counting noise (``signal_to_noise`` ≥
        :data:`MIN_SIGNAL_TO_NOISE`).
    sentence : str
        Plain words, e.g. ``"CD45: most structure kept"``.
    signal_to_noise : float
        Variance of the smoothed image over what counting noise alone gives it (~1: noise only).
    predicted_variation : float
        Standard deviation of the smoothed reconstruction over its mean: how much pattern the
        model puts into this channel (0 for a flat reconstruction).
    predicted_sd : float
        Standard deviation of the smoothed reconstruction, in counts.
    p99_counts : float
        99th percentile of the smoothed image, in counts per pixel.
    """

    name: str
    label: str
    explained: float | None
    has_signal: bool
    sentence: str
    signal_to_noise: float
    predicted_variation: float
    predicted_sd: float
    p99_counts: float

    @property
    def predicts_pattern(self) -> bool:
        """The reconstruction shows a pattern in this channel (whether or not the image has one)."""
        return bool(self.predicted_variation >= _PREDICTS_PATTERN and self.predicted_sd >= _PATTERN_MIN_COUNTS)

    def to_dict(self) -> dict:
        return {"name": self.name, "label": self.label, "explained": self.explained,
                "has_signal": self.has_signal, "sentence": self.sentence,
                "signal_to_noise": _finite_or_none(self.signal_to_noise),
                "predicted_variation": _finite_or_none(self.predicted_variation),
                "predicted_sd": _finite_or_none(self.predicted_sd),
                "p99_counts": _finite_or_none(self.p99_counts)}


def _finite_or_none(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def marker_label(name: str) -> str:
    """``Pr141_Cytokeratin 5`` → ``Cytokeratin 5``; a name without a metal prefix unchanged."""
    head, sep, tail = name.partition("_")
    is_metal = 2 <= len(head) <= 5 and head[:1].isupper() and head[-1:].isdigit()
    return tail if sep and tail and is_metal else name


def _kernel_energy(sigma: float) -> float:
    """Σ k² of the smoothing kernel: the factor by which smoothing shrinks white noise's variance."""
    from napari_imc_vae.engine.quality.smoothing import gaussian_smooth, smoothing_radius

    r = smoothing_radius(sigma)
    delta = np.zeros((4 * r + 1, 4 * r + 1))
    delta[2 * r, 2 * r] = 1.0
    return float((gaussian_smooth(delta, sigma) ** 2).sum())


def explained_words(explained: float) -> str:
    """The phrase of :data:`EXPLAINED_WORDS` for a share ``explained`` (0 … 1)."""
    for lowest, words in EXPLAINED_WORDS:
        if explained >= lowest:
            return words
    return EXPLAINED_WORDS[-1][1]


def _sentence(label: str, explained: float | None, has_signal: bool, predicts: bool) -> str:
    if not has_signal:
        if predicts:
            return (f"{label}: the image has almost no signal; the model predicts some — "
                    f"do not read it as expression")
        return f"{label}: the image has almost no signal, and the model predicts none"
    if explained is None:
        return f"{label}: no pixel to compare"
    return f"{label}: {explained_words(explained)}"


def summarize_markers(image, reconstruction, names: Sequence[str], *, labels: Sequence[str] | None = None,
                      hot_pixel_threshold: float | None = None,
                      dispersion: float | Sequence[float] | None = None) -> list[MarkerSummary]:
    """One :class:`MarkerSummary` per channel: signal above counting noise and the share explained.

    Parameters
    ----------
    image : array of shape (C, Y, X)
        The image in raw counts (the model's channels, in its order). NaN/Inf pixels are left out.
    reconstruction : array of shape (C, Y, X)
        The model's reconstruction in raw counts (values below 0 are taken as 0).
    names : sequence of str
        Channel names (steinbock-style), one per channel.
    labels : sequence of str, optional
        What to call each marker in the sentences; default :func:`marker_label` of ``names``.
    hot_pixel_threshold : float, optional
        Filter the image's hot pixels as the model's normalization did (steinbock's rule) so
        that one hot pixel neither fakes a signal nor counts as structure the model missed.
    dispersion : float or sequence of float, optional
        Overdispersion φ per channel (variance λ + φλ²); default 0 (Poisson).

    Returns
    -------
    list of MarkerSummary

    Raises
    ------
    ValueError
        If the arrays are not (C, Y, X) of the same shape, or ``names`` (``labels``,
        ``dispersion``) do not give one entry per channel.
    """
    import torch

    from napari_imc_vae.engine.quality.smoothing import gaussian_smooth

    x_all = np.asarray(image)
    xh_all = np.asarray(reconstruction)
    if x_all.ndim != 3 or xh_all.shape != x_all.shape:
        raise ValueError(f"image and reconstruction must both have shape (C, Y, X); got {x_all.shape} "
                         f"and {xh_all.shape}")
    c = x_all.shape[0]
    labels = [marker_label(n) for n in names] if labels is None else list(labels)
    phi = np.broadcast_to(np.asarray(0.0 if dispersion is None else dispersion, dtype=np.float64), (c,))
    if len(names) != c or len(labels) != c:
        raise ValueError(f"names and labels must give one entry per channel ({c}); got {len(names)} "
                         f"and {len(labels)}")
    energy = _kernel_energy(_SIGMA)
    out = []
    for i in range(c):
        x = np.asarray(x_all[i], dtype=np.float32)
        if hot_pixel_threshold is not None:
            from napari_imc_vae.preprocessing.transforms import filter_hot_pixels

            x = filter_hot_pixels(x[None], hot_pixel_threshold)[0]
        # a rate below 0 counts means 0 counts
        xh = np.where(np.isfinite(x), np.maximum(np.asarray(xh_all[i], dtype=np.float32), 0.0), np.nan)
        # float32 smoothing (half the time of float64); the sums below accumulate in float64
        s = gaussian_smooth(x, _SIGMA, dtype=torch.float32)
        sh = gaussian_smooth(xh, _SIGMA, dtype=torch.float32)
        ok = np.isfinite(s) & np.isfinite(sh)
        if not ok.any():
            out.append(MarkerSummary(names[i], labels[i], None, False, _sentence(labels[i], None, True, False),
                                     float("nan"), float("nan"), float("nan"), float("nan")))
            continue
        if not ok.all():
            s, sh = s[ok], sh[ok]
        # the variance counting noise leaves after smoothing; a floor of one count's worth over
        # the image keeps an all-zero channel from dividing by zero
        mean_rate = float(np.mean(np.maximum(s, 0.0), dtype=np.float64))
        overdispersed = phi[i] * float(np.mean(np.square(s, dtype=np.float64))) if phi[i] else 0.0
        noise = energy * max(mean_rate + overdispersed, 1.0 / s.size)
        signal = float(s.var(dtype=np.float64))
        snr = signal / noise
        has_signal = bool(snr >= MIN_SIGNAL_TO_NOISE)
        explained = None
        if has_signal:
            missed = float(np.mean(np.square(s - sh), dtype=np.float64)) - noise
            explained = float(np.clip(1.0 - max(missed, 0.0) / (signal - noise), 0.0, 1.0))
        sd = float(sh.std(dtype=np.float64))
        variation = sd / max(float(sh.mean(dtype=np.float64)), 1e-12)
        predicts = variation >= _PREDICTS_PATTERN and sd >= _PATTERN_MIN_COUNTS
        out.append(MarkerSummary(
            name=names[i], label=labels[i], explained=explained, has_signal=has_signal,
            sentence=_sentence(labels[i], explained, has_signal, predicts), signal_to_noise=float(snr),
            predicted_variation=variation, predicted_sd=sd, p99_counts=float(np.percentile(s, 99))))
    return out


def marker_table(markers: Sequence[MarkerSummary]) -> str:
    """The per-marker figures for the report's numbers: share kept, signal over noise, brightness.

    One line of columns per marker (the view lays them out as a table), then each marker's
    sentence; empty for no marker.
    """
    if not markers:
        return ""
    width = max(len("marker"), *(len(m.label) for m in markers)) + 2
    lines = ["Per marker, against the image smoothed at σ = 1 px (structure = its variance beyond "
             "counting noise):",
             f"{'marker':<{width}}{'kept':>6}  {'signal/noise':>12}  {'p99 counts':>10}"]
    for m in markers:
        kept = "—" if m.explained is None else f"{m.explained:.0%}"
        lines.append(f"{m.label:<{width}}{kept:>6}  {m.signal_to_noise:>12.1f}  {m.p99_counts:>10.2f}")
    lines.append(f"(no real signal: signal/noise below {MIN_SIGNAL_TO_NOISE:g}; pure counting noise reads about 1)")
    lines.extend(f"- {m.sentence}" for m in markers)
    return "\n".join(lines)
