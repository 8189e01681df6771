"""The one error unit users see: how far the measured counts lie from the model's prediction,
in standard deviations of IMC's counting noise.

An IMC pixel is a count of ions; its noise grows with the count, with a variance of about
``φ·mu + a·mu²`` (the noise model, fitted per channel on the image itself:
:mod:`~napari_imc_vae.engine.apply.noise_model`). A squared error in normalized units
cannot say whether a difference is noise or not; a likelihood of the counts at the
reconstructed rate can. Per channel, :func:`count_residual` is the signed *deviance
residual* of the measured value ``y`` against the predicted rate ``mu`` (clamped at
:data:`RATE_FLOOR` counts) under ``y/φ ~ NB(mu/φ, a)``, a negative binomial of that
variance: about normal, mean 0 and sd 1 when the values vary as the noise says (Pierce &
Schafer 1986), and not exploding where the model predicts no counts at all.

Per pixel, :func:`pixel_error` keeps the worst channel (so a one-channel artefact among 40
channels is not averaged away) and calibrates it for the number of channels: the value
``e`` such that a pixel of pure counting noise exceeds it as often as ``|Z|`` of one
standard normal exceeds it. Clean tissue therefore reads like ``|Z|`` everywhere (mean
≈ 0.8) and :data:`REGION_THRESHOLD` is a fixed level of the same unit. The map users see
(:func:`~napari_imc_vae.engine.apply.multiscale_error.multiscale_error`) is the larger of it and the
same evidence pooled over small windows, which finds areas no single pixel shows.

A dead area (every channel 0: the detector recorded nothing) is what an autoencoder
reconstructs best: zeros in, zeros out. :func:`dead_area_error` is the explicit cue for
it, in the same unit: an area of at least :data:`DEAD_MIN_AREA` pixels where every channel
reads 0, enclosed by tissue (not touching the image border), scores at each of its pixels
how unlikely it is that one pixel at the rate of the pixels around it reads 0 in every
channel. Background reads 0 too, but fades into tissue over dim pixels; a dead area cuts
bright tissue off. :func:`pixel_error` takes the larger of the two.
"""

from __future__ import annotations

import numpy as np

from napari_imc_vae.engine.apply.noise_model import nb_deviance, real_array

__all__ = ["ERROR_UNIT_NAME", "ERROR_UNIT_SENTENCE", "REGION_THRESHOLD", "RATE_FLOOR", "count_residual",
           "pixel_error", "dead_area_error", "describe_unit", "DEAD_MIN_AREA"]

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

#: An area where every channel reads 0 is a dead-area candidate from this many pixels on.
DEAD_MIN_AREA = 4


def _channel_column(values, name: str, default: float, n_channels: int, ndim: int, minimum: float) -> np.ndarray:
    v = np.full(n_channels, default) if values is None else np.asarray(values, dtype=np.float64).ravel()
    if v.shape != (n_channels,) or not np.all(np.isfinite(v)) or np.any(v < minimum):
        raise ValueError(f"{name} must be {n_channels} finite values {'>' if minimum > 0 else '>='} 0 "
                         f"(one per channel), got {values!r}")
    return v.reshape((n_channels,) + (1,) * (ndim - 1))


def count_residual(observed, predicted, dispersion=None, *, scale=None) -> np.ndarray:
    """Signed per-channel residual of measured counts against the predicted rate, in noise SDs.

    Parameters
    ----------
    observed : array of shape (C, ...)
        Measured raw counts (the image as read, before any hot-pixel filter); NaN/Inf allowed,
        negative values are taken as 0.
    predicted : array of shape (C, ...)
        The model's reconstruction in raw counts; rates below :data:`RATE_FLOOR` are taken as it.
    dispersion : array of shape (C,), optional
        Overdispersion ``a`` per channel (variance ``φ·mu + a·mu²``); default 0.
    scale : array of shape (C,), optional
        Scale ``φ`` > 0 per channel; default 1 (with ``a = 0``: Poisson).

    Returns
    -------
    ndarray of the shape of ``observed``, float32
        ``sign(y − mu) · sqrt(deviance)``: positive where more counts were measured than
        predicted (the model misses signal), negative where the model predicts counts that
        are not there; NaN where ``observed`` or ``predicted`` is not finite.

    Raises
    ------
    ValueError
        If the shapes differ, ``dispersion`` is not one value >= 0 per channel or ``scale``
        not one value > 0 per channel.
    """
    y_all, mu_all = real_array(observed, "observed"), real_array(predicted, "predicted")
    if y_all.shape != mu_all.shape or y_all.ndim < 1:
        raise ValueError(f"observed and predicted must have the same shape (C, ...), "
                         f"got {y_all.shape} and {mu_all.shape}")
    a_all = _channel_column(dispersion, "dispersion", 0.0, y_all.shape[0], y_all.ndim, 0.0)
    phi_all = _channel_column(scale, "scale", 1.0, y_all.shape[0], y_all.ndim, 1e-300)
    out = np.empty(y_all.shape, np.float32)
    # one channel at a time: the float64 temporaries of the deviance (about ten of them) stay
    # the size of one channel instead of the whole (C, ...) block (elementwise: same values)
    for ch in range(y_all.shape[0]):
        y, mu = y_all[ch].astype(np.float64, copy=False), mu_all[ch].astype(np.float64, copy=False)
        a, phi = a_all[ch], phi_all[ch]
        finite = np.isfinite(y) & np.isfinite(mu)
        y = np.where(finite, np.maximum(y, 0.0), 0.0)
        mu = np.where(finite, np.maximum(mu, RATE_FLOOR), RATE_FLOOR)
        r = np.sign(y - mu) * np.sqrt(nb_deviance(y / phi, mu / phi, a))
        out[ch] = np.where(finite, r, np.nan)
    return out


def _upper_tail_z(log_p: np.ndarray) -> np.ndarray:
    """z with P(Z > z) = exp(log_p), for log_p <= log(0.5), accurate from p = 0.5 to 1e-300 and beyond."""
    from scipy.special import log_ndtr, ndtri

    log_p = np.asarray(log_p, dtype=np.float64)
    p = np.exp(np.maximum(log_p, -700.0))
    z = np.asarray(-ndtri(p), dtype=np.float64)
    tiny = log_p < -700.0  # beyond float64: Newton on log Φ(−z) = log_p from the asymptote
    if np.any(tiny):
        lp = log_p[tiny]
        zt = np.sqrt(-2.0 * lp)
        for _ in range(4):
            f = log_ndtr(-zt) - lp
            zt = zt + f / np.maximum(zt, 1.0)  # d/dz log Φ(−z) ≈ −z in the far tail
        z[tiny] = zt
    return z


def pixel_error(residual, dead=None) -> np.ndarray:
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
    dead : array of shape (Y, X) or (N,), optional
        :func:`dead_area_error`; the pixel error is the larger of the two.

    Returns
    -------
    ndarray of shape (Y, X) or (N,), float32, >= 0
        NaN where no channel is finite.
    """
    r = np.asarray(residual)
    if r.ndim < 2:
        raise ValueError(f"residual must have shape (C, Y, X) or (C, N), got shape {r.shape}")
    finite = np.isfinite(r)
    n = finite.sum(axis=0)
    m = np.where(finite, np.abs(r), -np.inf).max(axis=0)
    e = _z_of_probability(worst_channel_log_p(np.where(n > 0, m, 0.0), n))
    if dead is not None:
        e = np.maximum(e, np.asarray(dead))
    e[n == 0] = np.nan
    return e.astype(np.float32)


def worst_channel_log_p(worst, n_channels) -> np.ndarray:
    """log of ``p = 1 − (1 − P(|Z| ≥ M))^C``: how often the largest ``|z|`` of ``C`` channels of pure
    noise reaches ``M`` (``worst``, >= 0; ``n_channels`` C, broadcast with it)."""
    from scipy.special import log_ndtr

    m = np.asarray(worst, dtype=np.float64)
    n = np.maximum(np.asarray(n_channels), 1)
    log_q = np.log(2.0) + log_ndtr(-m)  # log P(|Z| >= M) for one channel
    q = np.exp(log_q)
    with np.errstate(divide="ignore"):
        # p = 1 − (1 − q)^n; where n·q is tiny, p = n·q to relative 1e-8 and its log is exact
        return np.where(n * q < 1e-8, np.log(n) + log_q, np.log(-np.expm1(n * np.log1p(-np.minimum(q, 1.0 - 1e-16)))))


def _z_of_probability(log_p: np.ndarray) -> np.ndarray:
    """The ``e`` >= 0 with ``P(|Z| >= e) = p`` for ``log p`` (<= 0)."""
    return np.maximum(_upper_tail_z(np.minimum(np.asarray(log_p, np.float64) - np.log(2.0), np.log(0.5))), 0.0)


def dead_area_error(observed, *, scale=None) -> np.ndarray:
    """The dead-area cue (see the module's notes), in noise SDs; 0 outside dead-area candidates.

    Parameters
    ----------
    observed : array of shape (C, Y, X)
        Measured values (a np.memmap is read one channel at a time, and at the candidates).
    scale : array of shape (C,), optional
        ``φ`` per channel (:func:`~napari_imc_vae.engine.apply.noise_model.estimate_noise`): a rate
        of ``λ`` reads 0 with probability ``exp(−λ/φ)``.

    Returns
    -------
    ndarray of shape (Y, X), float32
        At each pixel of an enclosed all-zero area of :data:`DEAD_MIN_AREA` pixels or more,
        the ``e`` with ``P(|Z| >= e) = exp(−Σ_c λ_c/φ_c)``, ``λ_c`` the mean of channel ``c``
        over the pixels touching the area; 0 elsewhere.
    """
    from scipy import ndimage

    shape = tuple(observed.shape)
    if len(shape) != 3:
        raise ValueError(f"observed must have shape (C, Y, X), got shape {shape}")
    c = shape[0]
    phi = _channel_column(scale, "scale", 1.0, c, 1, 1e-300)
    zero = np.ones(shape[1:], bool)
    any_finite = np.zeros(shape[1:], bool)
    for ch in range(c):
        plane = np.asarray(observed[ch], dtype=np.float32)
        finite = np.isfinite(plane)
        zero &= ~finite | (plane <= 0)
        any_finite |= finite
    zero &= any_finite
    out = np.zeros(shape[1:], np.float32)
    eight = np.ones((3, 3), bool)
    labels, n = ndimage.label(zero, structure=eight)
    if n == 0:
        return out
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    for j, sl in enumerate(ndimage.find_objects(labels), start=1):
        if areas[j] < DEAD_MIN_AREA or j in border:
            continue
        box = tuple(slice(s.start - 1, s.stop + 1) for s in sl)  # inside the image: not on the border
        area = labels[box] == j
        ring = ndimage.binary_dilation(area, structure=eight) & ~area
        values = np.asarray(observed[(slice(None), *box)], dtype=np.float64)[:, ring]  # (C, ring pixels)
        finite = np.isfinite(values)
        rates = np.where(finite, np.maximum(values, 0.0), 0.0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
        e = float(_z_of_probability(-np.sum(rates / phi)))
        out[box][area] = e
    return out


def describe_unit(dispersion=None, channel_names=None, scale=None) -> dict:
    """JSON-safe description of the unit for ``quality.json``: name, sentence, threshold, floor,
    and the noise model's per-channel ``scale`` (φ) and ``dispersion`` (a) when given."""
    d = {"name": ERROR_UNIT_NAME, "sentence": ERROR_UNIT_SENTENCE, "region_threshold": REGION_THRESHOLD,
         "rate_floor_counts": RATE_FLOOR,
         "definition": "signed negative-binomial deviance residual of the measured counts against the "
                       "reconstruction's rate per channel, variance scale*rate + dispersion*rate^2; per pixel "
                       "the worst channel, calibrated for the number of channels (a pixel of pure counting "
                       "noise reads like |Z|, Z standard normal), or where larger the same of the excess "
                       "pooled over the 1x5, 5x1, 3x3, 5x5 and 7x7 windows around it (corrected for the "
                       "windows and the misfit's spatial correlation) or a dead-area cue; regions are areas "
                       "of 2 px or more above region_threshold, single pixels are isolated spikes"}
    for key, values in (("scale", scale), ("dispersion", dispersion)):
        if values is not None:
            values = [float(v) for v in np.asarray(values).ravel()]
            d[key] = dict(zip(channel_names, values)) if channel_names is not None else values
    return d
