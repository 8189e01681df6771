"""Regions to look at: connected areas where the measured counts are unlikely under the model.

:func:`~napari_imc_vae.engine.apply.apply_to_image` finds them on the calibrated pixel error
(:func:`~napari_imc_vae.engine.error_unit.pixel_error`, in noise SDs): the worst channel's
count residual, calibrated for the number of channels, so an artefact in one channel of
many is not averaged away and a pixel of pure counting noise reads like ``|Z|``. A pixel is
*high* when its error exceeds a fixed level of that unit,
:data:`~napari_imc_vae.engine.error_unit.REGION_THRESHOLD`, the same on every image: an
image the model explains flags (almost) nothing, instead of always flagging its top few
percent. High pixels are grouped into 8-connected regions (scipy.ndimage.label), ranked by
their excess error (the sum over the region of error minus the threshold), and described
by area, peak and mean error, the channels that carry the error and a shape guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real

import numpy as np

from napari_imc_vae.engine.error_unit import REGION_THRESHOLD

__all__ = ["REGION_THRESHOLD", "MAX_REGIONS", "find_regions"]

#: At most this many regions are described (the highest ranked).
MAX_REGIONS = 500
_CHANNELS_NAMED = 3  # channels that carry a region's error, listed per region
_LINE_ELONGATION = 4.0  # major/minor axis ratio above which a region is a line


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


def find_regions(error: np.ndarray, residual: np.ndarray | None, channel_names: Sequence[str], *,
                 pixel_size_um: float = 1.0, threshold: float = REGION_THRESHOLD,
                 max_regions: int = MAX_REGIONS) -> tuple[list[dict], float]:
    """Connected regions of high error, ranked by excess error (largest first).

    Parameters
    ----------
    error : ndarray of shape (Y, X)
        Per-pixel error in noise SDs (NaN where nothing was measured).
    residual : ndarray of shape (C, Y, X), optional
        Signed per-channel count residual in the same unit; names the channels carrying
        each region (largest mean ``|residual|`` over the region first).
    channel_names : sequence of str
    pixel_size_um : float
        For the centroids in µm.
    threshold : float
        A pixel is high above it; default :data:`REGION_THRESHOLD`.
    max_regions : int

    Returns
    -------
    regions : list of dict
        ``rank, y, x`` (centroid, pixels), ``y_um, x_um``, ``area``, ``peak_error``,
        ``mean_error``, ``excess``, ``shape`` (single pixel / line / blob), ``channels``
        (the channels carrying most of the error, ``;``-separated), ``bbox`` (y0, x0, y1, x1).
        ``peak_error`` and ``mean_error`` are of ``error`` over the region's pixels.
    threshold : float
        The threshold used, as given.

    Raises
    ------
    ValueError
        If ``threshold`` is not a finite number > 0.
    """
    from scipy import ndimage

    if isinstance(threshold, bool) or not (isinstance(threshold, Real) and np.isfinite(threshold)
                                                 and threshold > 0):
        raise ValueError(f"threshold must be a finite number > 0, got {threshold!r}")
    threshold = float(threshold)
    e = np.asarray(error, dtype=np.float32)
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
        if residual is not None:
            per_channel = _mean_abs(residual[:, ys, xs])
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


def _mean_abs(values: np.ndarray) -> np.ndarray:
    """Mean |value| per row over its finite entries (NaN for a row with none), without warnings."""
    finite = np.isfinite(values)
    n = finite.sum(axis=1)
    total = np.where(finite, np.abs(values), 0.0).sum(axis=1)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)
