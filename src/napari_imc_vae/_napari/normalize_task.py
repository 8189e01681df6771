"""The work behind the "Normalize channels" widget, as a plain function (numpy only).

Runs in a worker thread; the widget only shows the result. The same steps are
what ``napari-imc-vae diagnose`` runs headless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_imc_vae.io import ImcImage
from napari_imc_vae.preprocessing import Diagnosis, NormalizationParams, Normalizer, diagnose

HIST_BINS = 64
# Hot pixels stretch the max far beyond the bulk of the data; the histogram
# range stops at this percentile so the bulk stays visible.
HIST_UPPER_PERCENTILE = 99.9


@dataclass(frozen=True)
class Histogram:
    """Pixel counts of one channel: ``counts[i]`` pixels in ``[edges[i], edges[i+1])``.

    ``above`` counts finite pixels beyond the last edge (hot pixels, tails).
    """

    edges: np.ndarray
    counts: np.ndarray
    above: int = 0


@dataclass
class NormalizationResult:
    """What one run of the widget computes.

    Attributes
    ----------
    raw : ImcImage
        The input image (a copy of the layers' data).
    normalized : ImcImage
        Same channels, names and pixel size; data in normalized units.
    normalizer : Normalizer
        Fitted on ``raw``; ``to_dict()`` goes into the layers' metadata.
    diagnosis : Diagnosis
        Per-channel statistics before/after and the verdicts.
    before, after : list of Histogram
        Per-channel histograms of ``raw`` and ``normalized``.
    """

    raw: ImcImage
    normalized: ImcImage
    normalizer: Normalizer
    diagnosis: Diagnosis
    before: list[Histogram]
    after: list[Histogram]


def channel_histogram(channel: np.ndarray, bins: int = HIST_BINS,
                      upper_percentile: float = HIST_UPPER_PERCENTILE) -> Histogram:
    """Histogram of the finite pixels of one channel, from its min to a high percentile.

    Parameters
    ----------
    channel : ndarray of shape (Y, X)
    bins : int
    upper_percentile : float
        Upper end of the range; the max when that percentile equals the min
        (sparse channels).

    Returns
    -------
    Histogram
        For a channel without finite pixels: zero counts over ``[0, 1]``.
    """
    values = np.asarray(channel, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Histogram(np.linspace(0.0, 1.0, bins + 1), np.zeros(bins, dtype=np.int64))
    lo = float(values.min())
    hi = float(np.percentile(values, upper_percentile))
    if hi <= lo:
        hi = float(values.max())
    if hi <= lo:
        hi = lo + 1.0
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return Histogram(edges, counts, int(np.count_nonzero(values > hi)))


def run_normalization(image: ImcImage, params: NormalizationParams) -> NormalizationResult:
    """Fit a normalizer on ``image``, apply it, diagnose and histogram every channel.

    Parameters
    ----------
    image : ImcImage
    params : NormalizationParams
        Which steps to run (hot pixels → arcsinh → clip → z-score).

    Returns
    -------
    NormalizationResult

    Raises
    ------
    ValueError
        From the normalizer, for parameters or data it cannot handle.
    """
    normalizer = Normalizer.fit(
        image,
        hot_pixel_threshold=params.hot_pixel_threshold,
        arcsinh_cofactor=params.arcsinh_cofactor,
        clip_percentile=params.clip_percentile,
        zscore=params.zscore,
    )
    data = normalizer(image.data)
    normalized = ImcImage(
        data=data,
        channel_names=image.channel_names,
        metals=image.metals,
        labels=image.labels,
        pixel_size_um=image.pixel_size_um,
        source=image.source,
        acquisition=image.acquisition,
    )
    return NormalizationResult(
        raw=image,
        normalized=normalized,
        normalizer=normalizer,
        diagnosis=diagnose(image, normalizer, normalized=data),
        before=[channel_histogram(c) for c in image.data],
        after=[channel_histogram(c) for c in data],
    )
