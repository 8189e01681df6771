"""The error map users see: the calibrated pixel error, and the same evidence pooled over small windows.

One pixel's residual (:func:`~napari_imc_vae.engine.apply.error_unit.count_residual`) finds hot
pixels and strong streaks, but a misstained blob adds counts that are within the noise at
each of its pixels, and the autoencoder copies about half of it (measured in
``docs/artefacts.md``): no single pixel stands out, while 36 pixels that all read a little
high are very unlikely under counting noise. :func:`multiscale_error` therefore also pools
each channel's signed residual over the windows :data:`POOL_WINDOWS` (a Stouffer sum: the
window's sum over the square root of its pixel count, one standard normal under pure noise),
calibrates the worst channel as :func:`~napari_imc_vae.engine.apply.error_unit.pixel_error` does,
and keeps at each pixel the most unlikely of the single pixel and its windows, corrected for
the number of scales looked at (Bonferroni): a pixel of pure noise still reads like ``|Z|`` or
a little less, and the same threshold keeps its meaning.

Two guards keep the pooled evidence honest:

* residuals are clipped at ±:data:`POOL_CLIP` before pooling, so one extreme pixel (a hot
  pixel of 30 noise SD) does not make its whole window look high: a window is high when many
  of its pixels lean the same way;
* the model's ordinary misfit is spatially correlated, so pooled sums vary more than
  independent noise would: :func:`pooling_inflation` measures, per window and channel on
  the bright pixels (predicted ≥ 3 counts), how much more, and the pooled values are divided
  by it (never by less than 1); :func:`image_pooling_inflation` measures it on a whole image
  (on bands of rows sampled over a large one).

Line windows (1×5 and 5×1) keep a one-pixel-wide streak sharper than its neighbours, whose
square windows also hold the streak; the square windows (3×3 … 7×7) find blobs.
"""

from __future__ import annotations

import numpy as np

from napari_imc_vae.engine.apply.error_unit import count_residual, pixel_error

__all__ = ["POOL_WINDOWS", "POOL_CLIP", "POOL_HALO", "multiscale_error", "pooling_inflation",
           "image_pooling_inflation"]

#: Windows (rows, columns) the residual is pooled over, besides the pixel itself.
POOL_WINDOWS = ((1, 5), (5, 1), (3, 3), (5, 5), (7, 7))
#: Residuals are clipped at ± this many noise SDs before pooling.
POOL_CLIP = 3.0
#: Rows (and columns) a window reaches beyond its centre: a band of rows needs this many more on each side.
POOL_HALO = max(max(h, w) for h, w in POOL_WINDOWS) // 2
_BRIGHT_RATE = 3.0  # counts: where the residual is close to normal, as in estimate_noise
_MIN_BRIGHT = 50
_MAD_TO_SD = 1.4826
# pixels per channel the pooled error's inflation (spatially correlated misfit) is measured on at most
_INFLATION_PIXELS = 400_000


def _clipped(residual: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """float32 residual clipped at ±POOL_CLIP with NaN as 0, and the finite mask (None: all finite)."""
    finite = np.isfinite(residual)
    values = np.clip(np.where(finite, residual, 0.0), -POOL_CLIP, POOL_CLIP).astype(np.float32, copy=False)
    return values, (None if finite.all() else finite)


def _pooled(values: np.ndarray, finite: np.ndarray | None, rows: int, cols: int) -> np.ndarray:
    """Per channel, the window's sum of ``values`` / sqrt(its finite pixels), float32; NaN where none."""
    from scipy import ndimage

    area = float(rows * cols)
    z = ndimage.uniform_filter(values, size=(1, rows, cols), mode="constant")
    if finite is None:  # the usual case: one (Y, X) count of the window's pixels inside the image
        n = ndimage.uniform_filter(np.ones(values.shape[1:], np.float32), size=(rows, cols), mode="constant")
        z *= np.float32(area) / np.sqrt(np.maximum(n * np.float32(area), 0.5))[None]
        return z
    n = np.rint(ndimage.uniform_filter(finite.astype(np.float32), size=(1, rows, cols), mode="constant") * area)
    with np.errstate(invalid="ignore", divide="ignore"):
        z *= np.float32(area) / np.sqrt(n)
    z[n < 1] = np.nan
    return z


def _robust_sd(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(_MAD_TO_SD * np.median(np.abs(values - np.median(values)))) if values.size else 0.0


def pooling_inflation(residual, rate) -> np.ndarray:
    """How much more the pooled residual varies than independent noise would, per window and channel.

    Parameters
    ----------
    residual : array of shape (C, Y, X)
        Signed count residual (:func:`~napari_imc_vae.engine.apply.error_unit.count_residual`); rows of
        NaN may separate bands sampled from a larger image.
    rate : array of shape (C, Y, X)
        The predicted rate in counts: measured on the pixels predicted at 3 counts or more.

    Returns
    -------
    ndarray of shape (len(POOL_WINDOWS), C), float64, >= 1
        The robust sd (from the median absolute deviation) of the pooled values over the sd of
        the clipped residual that is pooled, on those pixels: 1 for independent noise (the pooled
        sum is near normal even where one pixel's residual is not); 1 where fewer than 50
        pixels are that bright.
    """
    r_all, mu = np.asarray(residual), np.asarray(rate)
    if r_all.ndim != 3 or r_all.shape != mu.shape:
        raise ValueError(f"residual and rate must have the same shape (C, Y, X), got {r_all.shape} and {mu.shape}")
    out = np.ones((len(POOL_WINDOWS), r_all.shape[0]))
    all_finite = bool(np.isfinite(r_all).all())  # the same branch of _pooled as on the whole stack
    for c in range(r_all.shape[0]):  # one channel at a time: the window sums are per channel anyway
        r = np.asarray(r_all[c : c + 1], dtype=np.float64)
        bright = np.isfinite(r[0]) & (mu[c] >= _BRIGHT_RATE)
        if bright.sum() < _MIN_BRIGHT:
            continue
        base = float(np.std(np.clip(r[0][bright], -POOL_CLIP, POOL_CLIP)))
        if base <= 0:
            continue
        values, finite = _clipped(r)
        if all_finite:
            finite = None
        elif finite is None:
            finite = np.ones(r.shape, bool)
        for w, (rows, cols) in enumerate(POOL_WINDOWS):
            z = _pooled(values, finite, rows, cols)
            out[w, c] = max(1.0, _robust_sd(z[0][bright]) / base)
    return out


def image_pooling_inflation(image, raw, scale, dispersion) -> np.ndarray:
    """:func:`pooling_inflation` of a whole image, from its counts and reconstruction: on the whole
    image, or on 8 evenly spaced bands of contiguous rows (NaN rows between them) when it is large.

    Parameters
    ----------
    image, raw : array of shape (C, Y, X)
        The image as read and its reconstruction in counts (np.memmaps are read band by band).
    scale, dispersion : ndarray of shape (C,)
        The noise model (:func:`~napari_imc_vae.engine.apply.noise_model.estimate_noise`).
    """
    c, y_size, x_size = raw.shape
    band = max(4 * POOL_HALO, _INFLATION_PIXELS // (8 * max(x_size, 1)))
    if y_size <= 8 * band:
        bands = [(0, y_size)]
    else:
        bands = [(int(y0), int(y0) + band) for y0 in np.linspace(0, y_size - band, 8).round()]
    gap = np.full((c, POOL_HALO, x_size), np.nan, np.float32)
    parts_r, parts_mu = [], []
    for y0, y1 in bands:
        parts_r += [count_residual(np.asarray(image[:, y0:y1], dtype=np.float32), raw[:, y0:y1], dispersion,
                                   scale=scale), gap]
        parts_mu += [np.asarray(raw[:, y0:y1], dtype=np.float32), np.zeros_like(gap)]
    return pooling_inflation(np.concatenate(parts_r, axis=1), np.concatenate(parts_mu, axis=1))


def _log_tail(e: np.ndarray) -> np.ndarray:
    """log P(|Z| >= e)."""
    from scipy.special import log_ndtr

    return np.log(2.0) + log_ndtr(-np.asarray(e, dtype=np.float64))


def multiscale_error(residual, dead=None, *, inflation=None) -> np.ndarray:
    """Per-pixel error from the pixel and the windows around it, in noise SDs.

    Parameters
    ----------
    residual : array of shape (C, Y, X)
        Signed count residual per channel.
    dead : array of shape (Y, X), optional
        :func:`~napari_imc_vae.engine.apply.error_unit.dead_area_error`; the error is the larger of the two.
    inflation : array of shape (len(POOL_WINDOWS), C), optional
        :func:`pooling_inflation` (default 1: independent noise).

    Returns
    -------
    ndarray of shape (Y, X), float32, >= 0
        The larger of the pixel error (:func:`~napari_imc_vae.engine.apply.error_unit.pixel_error`)
        and the pooled error: the ``e`` with ``P(|Z| >= e) = min(1, W · p_min)``, ``p_min`` the
        smallest tail probability, over the ``W`` windows of :data:`POOL_WINDOWS`, of the worst
        channel's pooled excess at that pixel (taken as two-sided: conservative). Under pure
        noise a pixel exceeds a level ``t`` at most 1.5 times as often as ``|Z|`` does; NaN where
        no channel is finite.
    """
    from napari_imc_vae.engine.apply.error_unit import _z_of_probability, worst_channel_log_p

    r = np.asarray(residual)
    if r.ndim != 3:
        raise ValueError(f"residual must have shape (C, Y, X), got shape {r.shape}")
    infl = np.ones((len(POOL_WINDOWS), r.shape[0])) if inflation is None else np.asarray(inflation, np.float64)
    if infl.shape != (len(POOL_WINDOWS), r.shape[0]) or not np.all(infl >= 1):
        raise ValueError(f"inflation must be values >= 1 of shape {(len(POOL_WINDOWS), r.shape[0])}, "
                         f"got {np.shape(inflation)}")
    single = pixel_error(r)
    values, finite = _clipped(r)
    n_channels = r.shape[0] if finite is None else finite.sum(axis=0)
    log_p = np.zeros(r.shape[1:])
    for w, (rows, cols) in enumerate(POOL_WINDOWS):
        z = _pooled(values, finite, rows, cols)
        z /= infl[w].astype(np.float32)[:, None, None]
        # one-sided: more counts than predicted over the window (see the module's notes)
        worst = np.maximum(z.max(axis=0) if finite is None else np.where(np.isnan(z), 0.0, z).max(axis=0), 0.0)
        log_p = np.minimum(log_p, worst_channel_log_p(worst, n_channels))
    pooled = _z_of_probability(np.minimum(log_p + np.log(len(POOL_WINDOWS)), 0.0))
    e = np.maximum(np.nan_to_num(single), pooled)
    if dead is not None:
        e = np.maximum(e, np.asarray(dead))
    e[np.isnan(single)] = np.nan
    return e.astype(np.float32)
