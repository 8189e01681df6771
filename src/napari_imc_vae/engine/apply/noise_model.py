"""IMC's counting noise, per channel: the negative-binomial deviance of a count at a rate, and
the scale ``φ`` and overdispersion ``a`` of the variance ``φ·mu + a·mu²`` fitted on an image.

An IMC pixel is a count of ions; its noise grows with the count. Measured on the real test
ROIs against a trained model, the variance of a pixel is about ``φ·mu + a·mu²``: a scale ``φ``
of 2–3 (IMC's values are not whole ions: the detector's pulse heights vary) and an
overdispersion ``a`` of 0.1–0.4 in bright channels (the model's ordinary misfit and biological
variation grow with the signal). :func:`estimate_noise` fits both per channel on the image
itself, with median rules that artefacts covering less than half the tissue do not move;
:func:`nb_deviance` is the deviance :func:`~napari_imc_vae.engine.apply.error_unit.count_residual`
takes the square root of. The unit built on them is :mod:`~napari_imc_vae.engine.apply.error_unit`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["estimate_noise", "nb_deviance", "real_array"]


_MEDIAN_CHI2_1 = 0.454936  # median of a chi-square with 1 degree of freedom: of Z² for Z ~ N(0, 1)
_NOISE_MIN_RATE = 3.0  # counts: above it the deviance is close to normal
_NOISE_MIN_PIXELS = 50
_MAX_SCALE, _MAX_DISPERSION = 50.0, 10.0
_NOISE_BINS = 6
# a channel whose bright pixels the model predicts more than this many times too high or too low in
# sum is not fitted at all there: its residuals are the model's misfit (see estimate_noise)
_MAX_BIAS = 2.0


def real_array(x, name: str) -> np.ndarray:
    """``x`` as an array of real numbers, in its own dtype (converted to float64 later, piece by piece)."""
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def nb_deviance(y: np.ndarray, mu: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Unit deviance of count ``y`` at rate ``mu`` (> 0) under NB(mu, a); a = 0 is Poisson."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ylog = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)
        poisson = ylog - (y - mu)
        safe_a = np.where(a > 0, a, 1.0)
        nb = ylog - (y + 1.0 / safe_a) * (np.log1p(safe_a * y) - np.log1p(safe_a * mu))
        d = 2.0 * np.where(a > 0, nb, poisson)
    return np.maximum(d, 0.0)


def estimate_noise(observed, predicted, *, max_pixels: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel scale ``φ`` and overdispersion ``a`` that make the image's bulk read as noise.

    Per channel, on the pixels predicted at :data:`_NOISE_MIN_RATE` counts or more whose
    left and right neighbours also read that many on average (:func:`_neighbour_level`): in six
    bins of rate, the median squared difference over 0.455 (the median of ``Z²``) estimates
    the variance at the bin's median rate; a straight line ``variance / rate = φ + a·rate``
    through the bins gives ``φ`` and ``a`` (``a`` >= 0, ``φ`` >= 1: never quieter than
    counting). A common factor then sets the median squared residual of all those pixels
    to 0.455 exactly. Medians: artefacts and structure the model misses, on less than half
    of those pixels, do not move the estimate. ``φ = 1, a = 0`` (Poisson) where fewer than
    50 pixels are that bright.

    Both guard against a model that hallucinates or misses a channel, whose residuals are its
    misfit and would be taken as noise (the misfit would vanish from the map). Pixels the model
    predicts bright where the image is dim are left out, so a channel the model predicts where
    the image has (almost) nothing is Poisson. Where the kept pixels' measured sum is more than
    :data:`_MAX_BIAS` times above or below their predicted sum, the model's fit is bounded by
    the data's own, model-free variability (:func:`_local_variance_line`): the line of the two
    with the smaller variance at the pixels' median rate is kept.

    Parameters
    ----------
    observed, predicted : array of shape (C, ...)
        Measured values and the predicted rate (as :func:`count_residual`).
    max_pixels : int
        Pixels per channel it is estimated on at most (evenly spaced sample).

    Returns
    -------
    scale, dispersion : ndarray of shape (C,), float64
    """
    # float64 one channel's sample at a time, not the whole (C, ...) arrays
    y, mu = real_array(observed, "observed"), real_array(predicted, "predicted")
    if y.shape != mu.shape or y.ndim < 1:
        raise ValueError(f"observed and predicted must have the same shape (C, ...), got {y.shape} and {mu.shape}")
    c = y.shape[0]
    planes, y, mu = y, y.reshape(c, -1), mu.reshape(c, -1)
    step = max(1, y.shape[1] // max_pixels)
    scale, dispersion = np.ones(c), np.zeros(c)
    for ch in range(c):
        yc, mc = y[ch, ::step].astype(np.float64), mu[ch, ::step].astype(np.float64)
        level = _neighbour_level(planes[ch])[::step] if planes.ndim > 1 else yc
        # bright in the prediction AND in the data: pixels where the model predicts counts the image
        # does not have are its misfit, not a sample of the noise
        keep = np.isfinite(yc) & np.isfinite(mc) & (mc >= _NOISE_MIN_RATE) & (level >= _NOISE_MIN_RATE)
        if keep.sum() < _NOISE_MIN_PIXELS:
            continue
        yc, mc = np.maximum(yc[keep], 0.0), mc[keep]
        phi, a = _fit_variance(yc, mc)
        bias = float(np.sum(yc) / np.sum(mc))
        if not _MAX_BIAS ** -1 <= bias <= _MAX_BIAS:
            phi_data, a_data = _local_variance_line(planes[ch], level, max_pixels)
            rate = float(np.median(mc))
            if phi * rate + a * rate**2 > phi_data * rate + a_data * rate**2:
                phi, a = phi_data, a_data  # the residuals are the model's misfit, not noise
        scale[ch], dispersion[ch] = phi, a
    return scale, dispersion


def _neighbour_level(plane) -> np.ndarray:
    """The mean of each value's left and right neighbours (counts below 0 as 0; NaN at the ends of
    rows), flattened: a model-free local level along the last axis, which holds whole rows of an
    image also when only some rows are passed."""
    rows = np.maximum(np.asarray(plane, dtype=np.float64).reshape(-1, np.shape(plane)[-1]), 0.0)
    level = np.full(rows.shape, np.nan)
    level[:, 1:-1] = (rows[:, :-2] + rows[:, 2:]) / 2.0
    return level.ravel()


def _local_variance_line(plane, level: np.ndarray, max_pixels: int) -> tuple[float, float]:
    """(φ, a) of one channel's own pixel-to-pixel variability, without the model: each value
    against its neighbour level (:func:`_neighbour_level`, flattened and sampled like ``level``);
    (1, 0) where fewer than 50 pixels' neighbours read 3 counts or more. Fine structure adds to
    it, so it bounds the noise from above."""
    flat = np.asarray(plane).reshape(-1)
    values = np.maximum(flat[:: max(1, flat.size // max_pixels)].astype(np.float64), 0.0)
    diff = values - level
    keep = np.isfinite(level) & np.isfinite(diff) & (level >= _NOISE_MIN_RATE)
    if keep.sum() < _NOISE_MIN_PIXELS:
        return 1.0, 0.0
    # y − (left + right) / 2 varies 1.5 times as much as y where the three share one rate
    return _variance_line(level[keep], diff[keep] ** 2 / 1.5)


def _fit_variance(y: np.ndarray, mu: np.ndarray) -> tuple[float, float]:
    """(φ, a) of one channel's bright pixels (see :func:`estimate_noise`)."""
    phi, a = _variance_line(mu, (y - mu) ** 2)

    def median_sq(k: float) -> float:
        return float(np.median(nb_deviance(y / (k * phi), mu / (k * phi), np.full_like(mu, k * a))))

    if median_sq(1.0) <= _MEDIAN_CHI2_1:  # the fit explains the residuals: keep it, no lower
        lo, hi = 1.0 / max(phi, 1.0), 1.0
    else:
        lo, hi = 1.0, 64.0
    if median_sq(hi) > _MEDIAN_CHI2_1:
        return min(hi * phi, _MAX_SCALE), min(hi * a, _MAX_DISPERSION)
    for _ in range(30):  # the median squared deviance falls as the factor grows
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if median_sq(mid) > _MEDIAN_CHI2_1 else (lo, mid)
    return min(hi * phi, _MAX_SCALE), min(hi * a, _MAX_DISPERSION)


def _variance_line(rate: np.ndarray, squared: np.ndarray) -> tuple[float, float]:
    """(φ, a) of the line ``variance / rate = φ + a·rate`` through six bins of ``rate``, each bin's
    variance the median of ``squared`` over 0.455 (the median of ``Z²``); ``a`` >= 0, ``φ`` >= 1."""
    edges = np.quantile(rate, np.linspace(0.0, 1.0, _NOISE_BINS + 1))
    m, v = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (rate >= lo) & (rate <= hi)
        if inside.sum() >= _NOISE_MIN_PIXELS // _NOISE_BINS:
            m.append(float(np.median(rate[inside])))
            v.append(float(np.median(squared[inside])) / _MEDIAN_CHI2_1)
    m, ratio = np.asarray(m), np.asarray(v) / np.asarray(m)
    # v/m = φ + a·m: a straight line through the bins; a >= 0, φ >= 1 (never quieter than counting)
    if len(m) >= 2 and np.ptp(m) > 0.05 * m.mean():
        a, phi = np.polyfit(m, ratio, 1)
    else:
        a, phi = 0.0, float(ratio.mean())
    if a < 0:
        a, phi = 0.0, float(ratio.mean())
    if phi < 1:
        phi = 1.0
        a = max(0.0, float(np.sum((ratio - 1.0) * m) / np.sum(m * m)))
    return min(phi, _MAX_SCALE), min(a, _MAX_DISPERSION)
