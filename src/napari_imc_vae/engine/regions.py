"""Regions to look at: connected areas where the model explains the image worst.

:func:`~napari_imc_vae.engine.apply.apply_to_image` finds them on the worst channel's error
at each pixel (per-channel squared error in units of each channel's typical error), so an
artefact in one channel of many is not averaged away; any error map works here.

The per-pixel error of a reconstruction is a squared residual, heavy-tailed, and mixes
two populations (background the model gets almost exactly, tissue with shot noise it
should not copy), so neither a z-score nor a log-MAD rule describes it. A pixel is
*high* when its error exceeds :data:`THRESHOLD_FACTOR` times the image's
:data:`THRESHOLD_QUANTILE` quantile: "three times what 95% of pixels stay under".
Artefacts covering less than 5% of the image do not move the threshold; on an image the
model explains evenly it flags a few pixels at most (about 1e-4 of lognormal errors of
σ = 0.5); hot pixels, streaks, misstained areas and rare cells stand out. High
pixels are grouped into 8-connected regions (scipy.ndimage.label), ranked by their
excess error (the sum over the region of error minus the threshold), and described by
area, peak and mean error, the channels that carry the error and a shape guess.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["THRESHOLD_FACTOR", "THRESHOLD_QUANTILE", "MAX_REGIONS", "error_threshold", "find_regions"]

#: A pixel is high error above THRESHOLD_FACTOR × the THRESHOLD_QUANTILE quantile of the error.
THRESHOLD_FACTOR, THRESHOLD_QUANTILE = 3.0, 0.95
#: At most this many regions are described (the highest ranked).
MAX_REGIONS = 500
_CHANNELS_NAMED = 3  # channels that carry a region's error, listed per region
_LINE_ELONGATION = 4.0  # major/minor axis ratio above which a region is a line


def error_threshold(error: np.ndarray, factor: float = THRESHOLD_FACTOR,
                    quantile: float = THRESHOLD_QUANTILE) -> float:
    """The error above which a pixel is high: ``factor`` × the ``quantile`` quantile of the error.

    Non-finite errors are left out. Returns ``inf`` when nothing is left, and when the
    quantile is 0 (an image the model reproduces exactly).
    """
    e = np.asarray(error, dtype=np.float32).ravel()
    e = e[np.isfinite(e)]
    if e.size == 0:
        return float("inf")
    q = float(np.quantile(e, quantile))
    return float(factor * q) if q > 0 else float("inf")


def _shape_guess(ys: np.ndarray, xs: np.ndarray) -> str:
    if ys.size <= 2:
        return "single pixel"
    cov = np.cov(np.stack([ys, xs]).astype(np.float64))
    evals = np.sort(np.linalg.eigvalsh(cov + 1e-9 * np.eye(2)))
    elongation = float(np.sqrt(evals[1] / max(evals[0], 1e-9)))
    span = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
    if elongation >= _LINE_ELONGATION and span >= 5:
        return "line"
    return "blob"


def find_regions(error: np.ndarray, channel_error: np.ndarray | None, channel_names: Sequence[str], *,
                 pixel_size_um: float = 1.0, factor: float = THRESHOLD_FACTOR,
                 max_regions: int = MAX_REGIONS) -> tuple[list[dict], float]:
    """Connected regions of high error, ranked by excess error (largest first).

    Parameters
    ----------
    error : ndarray of shape (Y, X)
        Per-pixel error (NaN where nothing was measured).
    channel_error : ndarray of shape (C, Y, X), optional
        Per-channel error (in units of each channel's typical error, so that a faint
        channel is not hidden by a bright one); names the channels carrying each region.
    channel_names : sequence of str
    pixel_size_um : float
        For the centroids in µm.
    factor : float
        Of the threshold (see :func:`error_threshold`).
    max_regions : int

    Returns
    -------
    regions : list of dict
        ``rank, y, x`` (centroid, pixels), ``y_um, x_um``, ``area``, ``peak_error``,
        ``mean_error``, ``excess``, ``shape`` (single pixel / line / blob), ``channels``
        (the channels carrying most of the error, ``;``-separated), ``bbox`` (y0, x0, y1, x1).
    threshold : float
    """
    from scipy import ndimage

    e = np.asarray(error, dtype=np.float32)
    threshold = error_threshold(e, factor)
    high = np.isfinite(e) & (e > threshold)
    labels, n = ndimage.label(high, structure=np.ones((3, 3), bool))
    if n == 0:
        return [], threshold
    flat = labels.ravel()
    excess = np.bincount(flat, weights=np.where(high, e - threshold, 0.0).ravel(), minlength=n + 1)[1:]
    order = np.argsort(-excess, kind="stable")[:max_regions]
    slices = ndimage.find_objects(labels)
    regions = []
    for rank, j in enumerate(order, start=1):
        sl = slices[j]
        mask = labels[sl] == j + 1
        ys, xs = np.nonzero(mask)
        ys, xs = ys + sl[0].start, xs + sl[1].start
        values = e[ys, xs]
        carried = ""
        if channel_error is not None:
            per_channel = np.nanmean(channel_error[:, ys, xs], axis=1)
            top = np.argsort(-np.nan_to_num(per_channel, nan=-np.inf))[:_CHANNELS_NAMED]
            carried = ";".join(channel_names[i] for i in top if np.isfinite(per_channel[i]))
        cy, cx = float(ys.mean()), float(xs.mean())
        regions.append({
            "rank": rank, "y": cy, "x": cx, "y_um": cy * pixel_size_um, "x_um": cx * pixel_size_um,
            "area": int(ys.size), "peak_error": float(values.max()), "mean_error": float(values.mean()),
            "excess": float(excess[j]), "shape": _shape_guess(ys, xs), "channels": carried,
            "bbox": (int(sl[0].start), int(sl[1].start), int(sl[0].stop), int(sl[1].stop)),
        })
    return regions, threshold
