"""Per-channel fitting steps shared by :meth:`Normalizer.fit` (all images at once) and
:class:`~napari_imc_vae.preprocessing.streaming.StreamingFit` (one image at a time)."""

from __future__ import annotations

import math

import numpy as np

from napari_imc_vae.preprocessing.params import NormalizationParams
from napari_imc_vae.preprocessing.transforms import filter_hot_pixels

__all__ = ["channel_entry", "prepare_channel"]


def prepare_channel(x: np.ndarray, params: NormalizationParams) -> np.ndarray:
    """Hot-pixel filter and arcsinh of one (Y, X) channel, in float64."""
    if params.hot_pixel_threshold is not None:
        x = filter_hot_pixels(x[None], params.hot_pixel_threshold)[0]
    x = x.astype(np.float64)
    if params.arcsinh_cofactor is not None:
        x = np.arcsinh(x / params.arcsinh_cofactor)
    return x


def channel_entry(stats: tuple | None, clip: float | None) -> tuple[float, float, float | None, bool]:
    """mean, std, clip limit and constant flag of a channel from the (mean, std, min, max) of its
    clipped finite values; None stats: no finite pixel anywhere, nothing to scale by."""
    if stats is None:
        return 0.0, 1.0, None, True
    m, sd, lo, hi = stats
    # min == max is exact, unlike a tolerance on a rounded std
    is_const = bool(lo == hi) or not (sd > 0 and math.isfinite(sd))
    return (m if math.isfinite(m) else 0.0), (1.0 if is_const else sd), clip, is_const
