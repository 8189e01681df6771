"""Per-pixel IMC transforms: hot-pixel filter, arcsinh, percentile clipping.

Each function takes a float (C, Y, X) stack, returns a new float32 array and
leaves its input untouched. numpy only: this module must stay importable
without scipy, torch or napari.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

__all__ = [
    "arcsinh_transform",
    "clip_percentile",
    "filter_hot_pixels",
    "inverse_arcsinh",
    "percentile_per_channel",
]


# --- argument checks (shared with the normalizer) ----------------------------


def _as_number(value, name: str) -> float:
    # bool is an int subclass; True as a threshold is always a mistake
    if isinstance(value, bool) or not isinstance(value, (Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def check_threshold(value, name: str = "threshold") -> float:
    """Validate a hot-pixel threshold: a finite number >= 0."""
    value = _as_number(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0 (counts above the neighbour maximum), got {value}")
    return value


def check_cofactor(value, name: str = "cofactor") -> float:
    """Validate an arcsinh cofactor: a finite number > 0."""
    value = _as_number(value, name)
    if value <= 0:
        raise ValueError(f"{name} must be > 0 (IMC uses 1 or 5), got {value}")
    return value


def check_percentile(value, name: str = "percentile") -> float:
    """Validate a clipping percentile: a number in (0, 100]."""
    value = _as_number(value, name)
    if not 0 < value <= 100:
        raise ValueError(f"{name} must be in (0, 100] (e.g. 99.9), got {value}")
    return value


def check_stack(data, name: str = "data") -> np.ndarray:
    """Return ``data`` as a float32 (C, Y, X) array (no copy when it already is one)."""
    arr = np.asarray(data)
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (C, Y, X), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


# --- transforms ---------------------------------------------------------------


def _neighbour_max(channel: np.ndarray) -> np.ndarray:
    """Maximum over the 8 neighbours of each pixel of a (Y, X) image.

    numpy's "reflect" padding (d c b | a b c d | c b a) is scipy.ndimage's
    "mirror" mode, the one steinbock uses. ``fmax`` skips NaN neighbours, so
    one NaN pixel neither hides nor creates hot pixels around it.
    """
    ny, nx = channel.shape
    # a length-1 axis reflects onto itself, as scipy's mirror does
    padded = np.pad(channel, 1, mode="reflect")
    out = np.full(channel.shape, -np.inf, dtype=channel.dtype)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy == 1 and dx == 1:
                continue  # the footprint leaves out the centre
            np.fmax(out, padded[dy : dy + ny, dx : dx + nx], out=out)
    return out


def filter_hot_pixels(data, threshold: float) -> np.ndarray:
    """Replace hot pixels by their neighbours' maximum (steinbock's rule).

    Per channel, ``m`` is the maximum over the 8 neighbours of a pixel (3×3
    footprint without the centre; borders mirrored as in
    ``scipy.ndimage.maximum_filter(mode="mirror")``). Where ``x - m >
    threshold`` the pixel ``x`` is replaced by ``m``.

    Parameters
    ----------
    data : ndarray of shape (C, Y, X)
        Raw counts. Not modified.
    threshold : float
        ``T >= 0``, in counts; steinbock users pass 50.

    Returns
    -------
    ndarray of shape (C, Y, X), float32
        The filtered stack. NaN pixels stay NaN; NaN neighbours are ignored.

    Raises
    ------
    ValueError
        If ``data`` is not 3-D or ``threshold`` is negative or not finite.
    """
    threshold = check_threshold(threshold)
    arr = check_stack(data)
    out = np.array(arr, dtype=np.float32, copy=True)
    for c in range(arr.shape[0]):
        x = arr[c]
        m = _neighbour_max(x)
        hot = (x - m) > threshold  # NaN compares False: NaN pixels are never replaced
        out[c][hot] = m[hot]
    return out


def arcsinh_transform(data, cofactor: float) -> np.ndarray:
    """``arcsinh(x / cofactor)``: variance-stabilizes counts, linear near 0.

    Parameters
    ----------
    data : ndarray of shape (C, Y, X)
        Counts. Not modified.
    cofactor : float
        ``> 0``; 1 for IMC intensities, 5 is common.

    Returns
    -------
    ndarray of shape (C, Y, X), float32

    Raises
    ------
    ValueError
        If ``cofactor <= 0``.
    """
    cofactor = check_cofactor(cofactor)
    arr = check_stack(data)
    return np.arcsinh(arr.astype(np.float64) / cofactor).astype(np.float32)


def inverse_arcsinh(data, cofactor: float) -> np.ndarray:
    """Inverse of :func:`arcsinh_transform`: ``cofactor * sinh(y)``."""
    cofactor = check_cofactor(cofactor)
    arr = check_stack(data)
    return (np.sinh(arr.astype(np.float64)) * cofactor).astype(np.float32)


def percentile_per_channel(data, percentile: float) -> list[float | None]:
    """The ``percentile`` of each channel over its finite pixels.

    Returns
    -------
    list of float or None
        One value per channel; None for a channel with no finite pixel.
    """
    percentile = check_percentile(percentile)
    arr = check_stack(data)
    values: list[float | None] = []
    for c in range(arr.shape[0]):
        x = arr[c][np.isfinite(arr[c])]
        values.append(float(np.percentile(x.astype(np.float64), percentile)) if x.size else None)
    return values


def clip_percentile(data, percentile: float, *, upper=None) -> np.ndarray:
    """Clip each channel at an upper percentile (heavy tails, residual hot pixels).

    Parameters
    ----------
    data : ndarray of shape (C, Y, X)
        Not modified.
    percentile : float
        In (0, 100], e.g. 99 … 99.999. Computed per channel over finite pixels
        of ``data`` unless ``upper`` is given.
    upper : sequence of float or None, optional
        Precomputed per-channel limits (None entries leave a channel as is).

    Returns
    -------
    ndarray of shape (C, Y, X), float32
        ``min(x, limit)`` per channel; NaN stays NaN, +Inf becomes the limit.

    Raises
    ------
    ValueError
        If ``percentile`` is outside (0, 100] or ``upper`` has the wrong length.
    """
    arr = check_stack(data)
    if upper is None:
        upper = percentile_per_channel(arr, percentile)
    else:
        check_percentile(percentile)
    if len(upper) != arr.shape[0]:
        raise ValueError(
            f"upper must have one limit per channel ({arr.shape[0]}), got {len(upper)}"
        )
    out = np.array(arr, dtype=np.float32, copy=True)
    for c, hi in enumerate(upper):
        if hi is not None:
            np.minimum(out[c], np.float32(hi), out=out[c])  # minimum propagates NaN
    return out
