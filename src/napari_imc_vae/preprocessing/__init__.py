"""Hot pixels, arcsinh, clipping and z-score; per-channel statistics; the diagnosis.

numpy only: importing this package loads no scipy, torch, napari or Qt.

Public API
----------
filter_hot_pixels(data, threshold)
    steinbock's hot-pixel rule on a float32 (C, Y, X) stack.
arcsinh_transform, inverse_arcsinh, clip_percentile, percentile_per_channel
    The single transforms.
match_channels, ChannelMatch, ChannelMismatchError
    The one rule that matches an image's channels to a panel (by metal, else name;
    missing channels are an error, extra ones are left out).
Normalizer, NormalizationParams
    hot pixels → arcsinh → clip → z-score, fitted on per-channel statistics,
    with ``__call__``, ``inverse``, ``to_dict`` / ``from_dict``.
channel_stats, ChannelStats
    Per-channel statistics over finite pixels.
diagnose, Diagnosis
    Statistics before/after normalization, channel scale ratio and verdicts.
"""

from napari_imc_vae.preprocessing._channels import ChannelMatch, ChannelMismatchError, match_channels
from napari_imc_vae.preprocessing.diagnosis import Diagnosis, diagnose
from napari_imc_vae.preprocessing.normalizer import Normalizer
from napari_imc_vae.preprocessing.params import DEFAULT_NORMALIZATION, NormalizationParams
from napari_imc_vae.preprocessing.stats import ChannelStats, channel_stats
from napari_imc_vae.preprocessing.transforms import (
    arcsinh_transform,
    clip_percentile,
    filter_hot_pixels,
    inverse_arcsinh,
    percentile_per_channel,
)

__all__ = [
    "ChannelMatch",
    "ChannelMismatchError",
    "ChannelStats",
    "Diagnosis",
    "NormalizationParams",
    "Normalizer",
    "arcsinh_transform",
    "channel_stats",
    "clip_percentile",
    "diagnose",
    "filter_hot_pixels",
    "inverse_arcsinh",
    "match_channels",
    "percentile_per_channel",
]
