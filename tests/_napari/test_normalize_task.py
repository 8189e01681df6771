"""The widget's computation, without Qt."""

from __future__ import annotations

import numpy as np

from napari_imc_vae._napari.normalize_task import channel_histogram, run_normalization
from napari_imc_vae.datasets import synthetic_tissue
from napari_imc_vae.preprocessing import NormalizationParams


def test_run_normalization_on_synthetic_tissue():
    image = synthetic_tissue(shape=(64, 64))
    before = image.data.copy()
    params = NormalizationParams(hot_pixel_threshold=50, arcsinh_cofactor=5, zscore=True)
    result = run_normalization(image, params)
    np.testing.assert_array_equal(image.data, before)  # input untouched
    norm = result.normalized
    assert norm.data.shape == image.data.shape and norm.channel_names == image.channel_names
    assert np.all(np.isfinite(norm.data))
    for name, channel in zip(norm.channel_names, norm.data):
        if name in result.normalizer.constant_channels:
            assert not channel.any()  # empty channels map to 0, never NaN
        else:
            assert abs(channel.mean()) < 1e-3 and abs(channel.std() - 1) < 1e-3
    assert result.diagnosis.empty_channels == ["Ag107", "Bi209"]
    assert len(result.before) == len(result.after) == image.n_channels


def test_histogram_range_skips_hot_pixels():
    x = np.zeros((50, 50), np.float32)
    x[:25] = np.arange(25 * 50).reshape(25, 50) % 10
    x[3, 3] = 5000.0  # a hot pixel
    h = channel_histogram(x, bins=10)
    assert h.edges[-1] < 100 and h.above == 1
    assert h.counts.sum() + h.above == x.size


def test_histogram_of_degenerate_channels():
    for x in (np.zeros((4, 4)), np.full((4, 4), np.nan), np.full((4, 4), 7.0)):
        h = channel_histogram(x, bins=8)
        assert len(h.edges) == 9 and h.edges[-1] > h.edges[0]
