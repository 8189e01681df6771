"""Regions to look at: connected areas where the measured counts are unlikely under the model.

:func:`~napari_imc_vae.engine.apply.use_case.apply_to_image` finds them on the calibrated pixel error
(:func:`~napari_imc_vae.engine.apply.error_unit.pixel_error`, in noise SDs): the worst channel's
count residual, calibrated for the number of channels, so an artefact in one channel of
many is not averaged away and a pixel of pure counting noise reads like ``|Z|``. A pixel is
*high* when its error exceeds a fixed level of that unit,
:data:`~napari_imc_vae.engine.apply.error_unit.REGION_THRESHOLD`, the same on every image: an
image the model explains flags (almost) nothing, instead of always flagging its top few
percent. High pixels are grouped into 8-connected regions (scipy.ndimage.label), ranked by
their excess error (the sum over the region of error minus the threshold), and described
by area, peak and mean error, the channels that carry the error and a shape guess.

A region is an *area*: at least :data:`MIN_REGION_AREA` pixels. A high pixel with no high
neighbour is an *isolated spike* (:func:`find_spikes`), listed apart: real IMC ROIs hold
single pixels of 15–50 counts among neighbours of 0–8 (salt spikes, below the hot-pixel
filter's threshold), about one per 1,000 pixels of the test ROIs, which no model of counting
noise calls noise; a hot pixel the filter removed is one too. Listed with the areas they
would bury the places a biologist looks at (``docs/artefacts.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real

import numpy as np

from napari_imc_vae.engine.apply.error_unit import REGION_THRESHOLD

__all__ = ["REGION_THRESHOLD", "MAX_REGIONS", "MIN_REGION_AREA", "find_regions", "find_spikes", "high_components"]

#: At most this many regions (and as many isolated spikes) are described (the highest ranked).
MAX_REGIONS = 500
#: A region has at least this many 8-connected high pixels; fewer make an isolated spike. Chosen
#: on held-out ROIs apart from those docs/artefacts.md reports: the smallest area at which the
#: clean ROIs list no region.
MIN_REGION_AREA = 2
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

    Only areas of :data:`MIN_REGION_AREA` pixels or more are regions; see :func:`find_spikes`.

    Raises
    ------
    ValueError
        If ``threshold`` is not a finite number > 0.
    """
    threshold = _check_threshold(threshold)
    e, labels, excess, slices = high_components(error, threshold)
    areas = np.bincount(labels.ravel(), minlength=excess.size + 1)[1:]
    large = np.flatnonzero(areas >= MIN_REGION_AREA)
    order = large[np.argsort(-excess[large], kind="stable")][:max_regions]
    regions = []
    for rank, j in enumerate(order, start=1):
        ys, xs, sl = _pixels(labels, slices, j)
        values = e[ys, xs]
        cy, cx = float(ys.mean()), float(xs.mean())
        regions.append({
            "rank": rank, "y": cy, "x": cx, "y_um": cy * pixel_size_um, "x_um": cx * pixel_size_um,
            "area": int(ys.size), "peak_error": float(values.max()), "mean_error": float(values.mean()),
            "excess": float(excess[j]), "shape": _shape_guess(ys, xs),
            "channels": _carried(residual, ys, xs, channel_names),
            "bbox": (int(sl[0].start), int(sl[1].start), int(sl[0].stop), int(sl[1].stop)),
        })
    return regions, threshold


def find_spikes(error: np.ndarray, residual: np.ndarray | None, channel_names: Sequence[str], *,
                hot_pixels: np.ndarray | None = None, pixel_size_um: float = 1.0,
                threshold: float = REGION_THRESHOLD, max_spikes: int = MAX_REGIONS) -> list[dict]:
    """Isolated spikes: high pixels (above ``threshold``) with no high neighbour, highest first.

    Parameters
    ----------
    error, residual, channel_names, pixel_size_um, threshold
        As :func:`find_regions`.
    hot_pixels : ndarray of shape (Y, X), optional
        The hot-pixel filter's mask (``Reconstruction.hot_pixels``): non-zero where it replaced a value.
    max_spikes : int

    Returns
    -------
    list of dict
        ``rank, y, x, y_um, x_um, error`` (the pixel's), ``channels`` (as a region's) and
        ``hot_pixel`` (True where the hot-pixel filter replaced a value of that pixel: a hot
        pixel; False: a spike under the filter's threshold).
    """
    threshold = _check_threshold(threshold)
    e, labels, excess, slices = high_components(error, threshold)
    areas = np.bincount(labels.ravel(), minlength=excess.size + 1)[1:]
    small = np.flatnonzero(areas < MIN_REGION_AREA)
    order = small[np.argsort(-excess[small], kind="stable")][:max_spikes]
    spikes = []
    for rank, j in enumerate(order, start=1):
        ys, xs, _ = _pixels(labels, slices, j)
        y, x = int(ys[np.argmax(e[ys, xs])]), int(xs[np.argmax(e[ys, xs])])
        spikes.append({"rank": rank, "y": y, "x": x, "y_um": y * pixel_size_um, "x_um": x * pixel_size_um,
                       "error": float(e[y, x]), "channels": _carried(residual, ys, xs, channel_names),
                       "hot_pixel": bool(hot_pixels is not None and np.any(np.asarray(hot_pixels)[ys, xs] > 0))})
    return spikes


def _check_threshold(threshold) -> float:
    if isinstance(threshold, bool) or not (isinstance(threshold, Real) and np.isfinite(threshold)
                                                 and threshold > 0):
        raise ValueError(f"threshold must be a finite number > 0, got {threshold!r}")
    return float(threshold)


def high_components(error: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """The error as float32, the 8-connected labels of its high pixels, each component's excess and box.

    The one rule by which regions and spikes are found; the cells' flags
    (:func:`~napari_imc_vae.engine.cells.artefact_pixels.listed_pixels`) relabel with it so that
    they cannot drift from ``_regions.csv``.
    """
    from scipy import ndimage

    e = np.asarray(error, dtype=np.float32)
    high = np.isfinite(e) & (e > threshold)
    labels, n = ndimage.label(high, structure=np.ones((3, 3), bool))
    excess = np.bincount(labels.ravel(), weights=np.where(high, e - threshold, 0.0).ravel(), minlength=n + 1)[1:]
    return e, labels, excess, ndimage.find_objects(labels)


def _pixels(labels: np.ndarray, slices: list, j: int) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
    """Pixels (ys, xs) and box of component ``j`` (0-based; its label is j + 1)."""
    sl = slices[j]
    ys, xs = np.nonzero(labels[sl] == j + 1)
    return ys + sl[0].start, xs + sl[1].start, sl


def _carried(residual: np.ndarray | None, ys: np.ndarray, xs: np.ndarray, channel_names: Sequence[str]) -> str:
    """The channels carrying most of the error over these pixels (largest mean |residual| first)."""
    if residual is None:
        return ""
    per_channel = _mean_abs(residual[:, ys, xs])
    top = np.argsort(-np.nan_to_num(per_channel, nan=-np.inf))[:_CHANNELS_NAMED]
    return ";".join(channel_names[i] for i in top if np.isfinite(per_channel[i]))


def _mean_abs(values: np.ndarray) -> np.ndarray:
    """Mean |value| per row over its finite entries (NaN for a row with none), without warnings."""
    finite = np.isfinite(values)
    n = finite.sum(axis=1)
    total = np.where(finite, np.abs(values), 0.0).sum(axis=1)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)
