"""The one error unit users see: how far the measured counts lie from the model's prediction,
in standard deviations of IMC's counting noise.

An IMC pixel is a count of ions; its noise grows with the count (shot noise, Poisson, plus
an overdispersion that grows with the square of the rate). A squared error in normalized
units cannot say whether a difference is noise or not; a likelihood of the counts at the
reconstructed rate can. Per channel, :func:`count_residual` is the signed *deviance
residual* of the measured count ``y`` against the predicted rate ``mu`` (clamped at
:data:`RATE_FLOOR` counts) under a negative binomial of variance ``mu + a·mu²``: about
normal, mean 0 and sd 1 when the counts vary as counting noise says (Pierce & Schafer 1986),
and not exploding where the model predicts no counts at all. The per-channel
overdispersion ``a`` is estimated on the image itself (:func:`estimate_dispersion`, a
median rule that artefacts covering less than half the tissue do not move).

Per pixel, :func:`pixel_error` keeps the worst channel (so a one-channel artefact among 40
channels is not averaged away) and calibrates it for the number of channels: the value
``e`` such that a pixel of pure counting noise exceeds it as often as ``|Z|`` of one
standard normal exceeds it. Clean tissue therefore reads like ``|Z|`` everywhere (mean
≈ 0.8) and :data:`REGION_THRESHOLD` is a fixed level of the same unit.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ERROR_UNIT_NAME", "ERROR_UNIT_SENTENCE", "REGION_THRESHOLD", "RATE_FLOOR", "count_residual",
           "pixel_error", "estimate_dispersion", "describe_unit"]

#: Short label for layer names, column headers and colour bars.
ERROR_UNIT_NAME = "noise SD"
#: A pixel is part of a region of high error above this pixel error (same unit). Under pure
#: counting noise a pixel exceeds it with probability 2·(1 − Φ(5)) ≈ 6e-7.
REGION_THRESHOLD = 5.0
#: Predicted rates below this many counts are taken as this: a model cannot know a rate
#: below a fraction of a count, and a single count over a rate of 0 would be infinitely unlikely.
RATE_FLOOR = 0.1
#: The sentence shown in the widget, the README, the CLI's help and the report.
ERROR_UNIT_SENTENCE = (
    "Error is in units of counting noise: how many noise standard deviations the measured counts lie "
    "from the model's prediction (0 = as predicted, about 1 = ordinary shot noise, above "
    f"{REGION_THRESHOLD:g} = very unlikely by counting noise alone).")

_MEDIAN_CHI2_1 = 0.454936  # median of a chi-square with 1 degree of freedom: of Z² for Z ~ N(0, 1)
_DISPERSION_MIN_RATE = 3.0  # counts: above it the Poisson deviance is close to normal
_DISPERSION_MIN_PIXELS = 50
_MAX_DISPERSION = 10.0


def _as_float(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _dispersion_column(dispersion, n_channels: int, ndim: int) -> np.ndarray:
    a = np.zeros(n_channels) if dispersion is None else np.asarray(dispersion, dtype=np.float64).ravel()
    if a.shape != (n_channels,) or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"dispersion must be {n_channels} finite values >= 0 (one per channel), got {dispersion!r}")
    return a.reshape((n_channels,) + (1,) * (ndim - 1))


def _deviance(y: np.ndarray, mu: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Unit deviance of count ``y`` at rate ``mu`` (> 0) under NB(mu, a); a = 0 is Poisson."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ylog = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)
        poisson = ylog - (y - mu)
        safe_a = np.where(a > 0, a, 1.0)
        nb = ylog - (y + 1.0 / safe_a) * (np.log1p(safe_a * y) - np.log1p(safe_a * mu))
        d = 2.0 * np.where(a > 0, nb, poisson)
    return np.maximum(d, 0.0)


def count_residual(observed, predicted, dispersion=None) -> np.ndarray:
    """Signed per-channel residual of measured counts against the predicted rate, in noise SDs.

    Parameters
    ----------
    observed : array of shape (C, ...)
        Measured raw counts (the image as read, before any hot-pixel filter); NaN/Inf allowed,
        negative values are taken as 0.
    predicted : array of shape (C, ...)
        The model's reconstruction in raw counts; rates below :data:`RATE_FLOOR` are taken as it.
    dispersion : array of shape (C,), optional
        Negative-binomial overdispersion per channel (variance ``mu + a·mu²``); default 0 (Poisson).

    Returns
    -------
    ndarray of the shape of ``observed``, float32
        ``sign(y − mu) · sqrt(deviance)``: positive where more counts were measured than
        predicted (the model misses signal), negative where the model predicts counts that
        are not there; NaN where ``observed`` or ``predicted`` is not finite.

    Raises
    ------
    ValueError
        If the shapes differ or ``dispersion`` is not one value >= 0 per channel.
    """
    y, mu = _as_float(observed, "observed"), _as_float(predicted, "predicted")
    if y.shape != mu.shape or y.ndim < 1:
        raise ValueError(f"observed and predicted must have the same shape (C, ...), got {y.shape} and {mu.shape}")
    a = _dispersion_column(dispersion, y.shape[0], y.ndim)
    finite = np.isfinite(y) & np.isfinite(mu)
    y = np.where(finite, np.maximum(y, 0.0), 0.0)
    mu = np.where(finite, np.maximum(mu, RATE_FLOOR), RATE_FLOOR)
    r = np.sign(y - mu) * np.sqrt(_deviance(y, mu, a))
    r[~finite] = np.nan
    return r.astype(np.float32)


def _upper_tail_z(log_p: np.ndarray) -> np.ndarray:
    """z with P(Z > z) = exp(log_p), for log_p <= log(0.5), accurate from p = 0.5 to 1e-300 and beyond."""
    from scipy.special import log_ndtr, ndtri

    p = np.exp(np.maximum(log_p, -700.0))
    z = -ndtri(p)
    tiny = log_p < -700.0  # beyond float64: Newton on log Φ(−z) = log_p from the asymptote
    if np.any(tiny):
        lp = log_p[tiny]
        zt = np.sqrt(-2.0 * lp)
        for _ in range(4):
            f = log_ndtr(-zt) - lp
            zt = zt + f / np.maximum(zt, 1.0)  # d/dz log Φ(−z) ≈ −z in the far tail
        z[tiny] = zt
    return z


def pixel_error(residual) -> np.ndarray:
    """Per-pixel error: the worst channel's residual, calibrated for the number of channels.

    With ``M = max_c |r_c|`` over the ``C`` finite channels of a pixel, the tail probability
    of ``M`` under counting noise is ``p = 1 − (1 − P(|Z| ≥ M))^C``; the pixel error is the
    ``e`` with ``P(|Z| ≥ e) = p``. One channel (C = 1) gives ``e = |r|``; among 40 channels a
    residual of 5 gives 4.2 and one of 10 gives 9.7: a one-channel artefact stays visible,
    and a pixel of pure noise reads like one ``|Z|`` whatever the number of channels.

    Parameters
    ----------
    residual : array of shape (C, Y, X) or (C, N)
        From :func:`count_residual`.

    Returns
    -------
    ndarray of shape (Y, X) or (N,), float32, >= 0
        NaN where no channel is finite.
    """
    from scipy.special import log_ndtr

    r = np.asarray(residual)
    if r.ndim < 2:
        raise ValueError(f"residual must have shape (C, Y, X) or (C, N), got shape {r.shape}")
    finite = np.isfinite(r)
    n = finite.sum(axis=0)
    m = np.where(finite, np.abs(r), -np.inf).max(axis=0).astype(np.float64)
    m = np.where(n > 0, m, 0.0)
    log_q = np.log(2.0) + log_ndtr(-m)  # log P(|Z| >= M) for one channel
    q = np.exp(log_q)
    with np.errstate(divide="ignore"):
        # p = 1 − (1 − q)^n; where n·q is tiny, p = n·q to relative 1e-8 and its log is exact
        log_p = np.where(n * q < 1e-8, np.log(np.maximum(n, 1)) + log_q,
                         np.log(-np.expm1(np.maximum(n, 1) * np.log1p(-np.minimum(q, 1.0 - 1e-16)))))
    e = _upper_tail_z(np.minimum(log_p - np.log(2.0), np.log(0.5)))
    e = np.maximum(e, 0.0)
    e[n == 0] = np.nan
    return e.astype(np.float32)


def estimate_dispersion(observed, predicted, *, max_pixels: int = 200_000, seed: int = 0) -> np.ndarray:
    """Per-channel overdispersion ``a`` that makes the image's bulk read as counting noise.

    For each channel, the smallest ``a`` >= 0 at which the median squared residual of the
    pixels predicted at :data:`_DISPERSION_MIN_RATE` counts or more is the median of ``Z²``
    (0.455): the model's ordinary misfit in tissue counts as noise, while artefacts and
    structure it misses (less than half of those pixels) do not move it. 0 (Poisson) where
    counting noise alone already explains the residuals, or where fewer than 50 pixels are
    that bright.

    Parameters
    ----------
    observed, predicted : array of shape (C, ...)
        Measured counts and the predicted rate (as :func:`count_residual`).
    max_pixels : int
        Pixels per channel it is estimated on at most (evenly spaced sample).

    Returns
    -------
    ndarray of shape (C,), float64
    """
    y, mu = _as_float(observed, "observed"), _as_float(predicted, "predicted")
    if y.shape != mu.shape or y.ndim < 1:
        raise ValueError(f"observed and predicted must have the same shape (C, ...), got {y.shape} and {mu.shape}")
    c = y.shape[0]
    y, mu = y.reshape(c, -1), mu.reshape(c, -1)
    step = max(1, y.shape[1] // max_pixels)
    out = np.zeros(c)
    for ch in range(c):
        yc, mc = y[ch, ::step], mu[ch, ::step]
        keep = np.isfinite(yc) & np.isfinite(mc) & (mc >= _DISPERSION_MIN_RATE)
        if keep.sum() < _DISPERSION_MIN_PIXELS:
            continue
        yc, mc = np.maximum(yc[keep], 0.0), mc[keep]

        def median_sq(a: float) -> float:
            return float(np.median(_deviance(yc, mc, np.full_like(mc, a))))

        if median_sq(0.0) <= _MEDIAN_CHI2_1:
            continue
        lo, hi = 0.0, _MAX_DISPERSION
        if median_sq(hi) > _MEDIAN_CHI2_1:
            out[ch] = hi
            continue
        for _ in range(40):  # the median squared deviance falls as a grows
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if median_sq(mid) > _MEDIAN_CHI2_1 else (lo, mid)
        out[ch] = hi
    return out


def describe_unit(dispersion=None, channel_names=None) -> dict:
    """JSON-safe description of the unit for ``quality.json``: name, sentence, threshold, floor."""
    d = {"name": ERROR_UNIT_NAME, "sentence": ERROR_UNIT_SENTENCE, "region_threshold": REGION_THRESHOLD,
         "rate_floor_counts": RATE_FLOOR,
         "definition": "signed negative-binomial deviance residual of the measured counts against the "
                       "reconstruction's rate per channel; per pixel the worst channel, calibrated for the "
                       "number of channels (a pixel of pure counting noise reads like |Z|, Z standard normal)"}
    if dispersion is not None:
        values = [float(v) for v in np.asarray(dispersion).ravel()]
        d["dispersion"] = (dict(zip(channel_names, values)) if channel_names is not None else values)
    return d
