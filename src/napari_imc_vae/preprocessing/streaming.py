"""The normalizer fitted in one pass over images added one at a time (cohorts larger than RAM)."""

from __future__ import annotations

import numpy as np

from napari_imc_vae.io.image import ImcImage
from napari_imc_vae.preprocessing._channels import ChannelMismatchError, as_stacks, match_channels
from napari_imc_vae.preprocessing.channel_fit import channel_entry, prepare_channel
from napari_imc_vae.preprocessing.normalizer import Normalizer
from napari_imc_vae.preprocessing.params import NormalizationParams
from napari_imc_vae.preprocessing.stats import LogHistogram, RunningMoments
from napari_imc_vae.preprocessing.transforms import check_stack

__all__ = ["StreamingFit", "fit_streaming"]


class StreamingFit:
    """Build a :class:`Normalizer` from images added one at a time (cohorts larger than RAM).

    Per channel it keeps exact moments (:class:`~napari_imc_vae.preprocessing.stats.RunningMoments`,
    Chan's pairwise update in float64) of the filtered, transformed finite pixels, and, only when
    clipping, a :class:`~napari_imc_vae.preprocessing.stats.LogHistogram` of them (bins at most
    2**-10 of their values wide). So:

    - without clipping, mean, std, constant flags and counts equal :meth:`Normalizer.fit`'s to
      rounding (~1e-12 relative);
    - with clipping, the limit is within ``2**-10·|limit|`` of ``np.percentile``'s (exact when
      the two order statistics around it lie in bins of one distinct value, as for arcsinh
      counts), and the clipped mean and std follow from the exact moments and the bins above
      the limit (see :meth:`LogHistogram.clipped_moments`).

    Memory: a few floats per channel, plus the histogram (~0.3 MB per channel) when clipping.

    Parameters
    ----------
    channel_names, hot_pixel_threshold, arcsinh_cofactor, clip_percentile, zscore
        As for :meth:`Normalizer.fit`. The first image added sets the channel order; later
        ImcImages are matched to it by channel (extra channels are left out).
    """

    def __init__(self, *, channel_names=None, hot_pixel_threshold=None, arcsinh_cofactor=None,
                 clip_percentile=None, zscore=True) -> None:
        self.params = NormalizationParams(hot_pixel_threshold, arcsinh_cofactor, clip_percentile, zscore)
        self._names_given = None if channel_names is None else [str(c) for c in channel_names]
        self.names: list[str] | None = None
        self.keys: list[str] | None = None
        self._moments: list[RunningMoments] = []
        self._histograms: list[LogHistogram] | None = None
        self.n_images = 0

    def _stack(self, image) -> np.ndarray:
        """The image as a (C, Y, X) stack in the first image's channel order."""
        i = self.n_images
        if self.names is None:  # the first image sets the panel
            stacks, names, keys = as_stacks([image], self._names_given)
            self.names, self.keys = names, keys
            # as in as_stacks: later ImcImages are matched to the first one's own channels
            self._match = (image.channel_names, image.channel_keys) if isinstance(image, ImcImage) else None
            self._moments = [RunningMoments() for _ in names]
            if self.params.clip_percentile is not None:
                self._histograms = [LogHistogram() for _ in names]
            return stacks[0]
        if isinstance(image, ImcImage) and self._match is not None:
            try:
                match = match_channels(*self._match, image.channel_names, image.channel_keys,
                                       panel="the panel of images[0]")
            except ChannelMismatchError as e:
                raise ChannelMismatchError(f"images[{i}]: {e}") from None
            return match.take(image.data)
        arr = check_stack(image.data if isinstance(image, ImcImage) else image, f"images[{i}]")
        if arr.shape[0] != len(self.names):
            raise ValueError(f"images[{i}] has {arr.shape[0]} channels, expected {len(self.names)} like images[0]")
        return arr

    def add(self, image) -> None:
        """Add one image (ImcImage or (C, Y, X) array); it is not kept.

        Raises
        ------
        ValueError
            For images that are not (C, Y, X) or whose channels do not match the first one's.
        """
        stack = self._stack(image)
        for c in range(stack.shape[0]):
            x = prepare_channel(stack[c], self.params)
            x = x[np.isfinite(x)]
            self._moments[c].add(x)
            if self._histograms is not None:
                self._histograms[c].add(x)
        self.n_images += 1

    def result(self) -> Normalizer:
        """The normalizer of every image added so far.

        Raises
        ------
        ValueError
            When no image was added.
        """
        if self.names is None:
            raise ValueError("StreamingFit needs at least one image, got none")
        mean, std, clip_high, constant, n_finite = [], [], [], [], []
        for c, moments in enumerate(self._moments):
            n_finite.append(moments.count)
            hi, stats = None, None
            if moments.count:
                stats = (moments.mean, moments.std, moments.min, moments.max)
            if self._histograms is not None and moments.count:
                hi = self._histograms[c].percentile(self.params.clip_percentile)
                hi = min(max(hi, moments.min), moments.max)  # a bin mean never leaves the data range
                m, sd = self._histograms[c].clipped_moments(hi, moments.mean, moments.m2)
                stats = (m, sd, min(moments.min, hi), min(moments.max, hi))
            for column, value in zip((mean, std, clip_high, constant), channel_entry(stats, hi)):
                column.append(value)
        return Normalizer(self.names, params=self.params, mean=mean, std=std, clip_high=clip_high,
                          constant=constant, n_finite=n_finite, channel_keys=self.keys)


def fit_streaming(images, *, channel_names=None, hot_pixel_threshold=None, arcsinh_cofactor=None,
                  clip_percentile=None, zscore=True) -> Normalizer:
    """:meth:`Normalizer.fit` in one pass over an iterable of images, holding one image at a time.

    Same arguments and result as :meth:`Normalizer.fit` (see :class:`StreamingFit` for the
    tolerance: exact to rounding without clipping; with clipping the limit comes from a
    histogram). ``images`` may be any iterable, for example a generator that reads files one by one.
    """
    if isinstance(images, (ImcImage, np.ndarray)):
        images = [images]
    fit = StreamingFit(channel_names=channel_names, hot_pixel_threshold=hot_pixel_threshold,
                       arcsinh_cofactor=arcsinh_cofactor, clip_percentile=clip_percentile, zscore=zscore)
    for image in images:
        fit.add(image)
    return fit.result()
