"""The synthetic tissue: deterministic, IMC-like (no napari needed)."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from napari_imc_vae.datasets import PANEL, synthetic_tissue
from napari_imc_vae.io import ImcImage


def _neighbour_max(x: np.ndarray) -> np.ndarray:
    p = np.pad(x, 1, mode="reflect")
    shifts = [p[1 + dy : 1 + dy + x.shape[0], 1 + dx : 1 + dx + x.shape[1]]
              for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    return np.max(shifts, axis=0)


def test_default_image_is_imc_like():
    image = synthetic_tissue()
    assert isinstance(image, ImcImage)
    assert image.data.shape == (32, 256, 256) and image.data.dtype == np.float32
    assert image.n_channels >= 30
    assert all(re.fullmatch(r"[A-Z][a-z]?\d{2,3}", m) for m in image.metals)
    assert "Yb172" in image.metals and "DNA1" in image.channel_names
    assert image.channel_names == image.labels
    masses = [int(m[-3:]) for m in image.metals]
    assert masses == sorted(masses)
    data = image.data
    assert np.all(np.isfinite(data)) and data.min() == 0
    empty = [n for n, c in zip(image.channel_names, data) if not c.any()]
    assert len(empty) >= 2
    # Poisson-like counts: integers outside the hot pixels, many zeros.
    assert np.mean(data == np.round(data)) > 0.999
    assert np.mean(data == 0) > 0.5
    # Scales differ by far more than 100× between channels.
    p99 = np.array([np.percentile(c, 99) for c in data if c.any()])
    assert p99.max() / p99[p99 > 0].min() > 100


def test_hot_pixels_stand_out():
    data = synthetic_tissue().data
    n_hot = sum(int(np.count_nonzero(c - _neighbour_max(c) > 300)) for c in data)
    assert 5 <= n_hot <= 12


def test_deterministic_and_seeded():
    a, b = synthetic_tissue(seed=3), synthetic_tissue(seed=3)
    np.testing.assert_array_equal(a.data, b.data)
    assert a.channel_names == b.channel_names
    assert not np.array_equal(a.data, synthetic_tissue(seed=4).data)


def test_shape_and_channel_count():
    image = synthetic_tissue(shape=(64, 80), n_channels=len(PANEL))
    assert image.data.shape == (len(PANEL), 64, 80)
    assert len(set(image.channel_names)) == len(PANEL)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n_channels": 0}, "n_channels"), ({"n_channels": 99}, "n_channels"),
     ({"shape": (8, 8)}, "shape"), ({"shape": (32, 32, 3)}, "shape")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthetic_tissue(**kwargs)


def test_datasets_import_no_gui():
    code = ("import sys, napari_imc_vae.datasets; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('napari', 'qtpy', 'magicgui', 'PyQt6', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_feature_maps_are_smooth_correlated_and_scaled_1000x():
    from napari_imc_vae.datasets import synthetic_feature_maps

    images = synthetic_feature_maps(n_images=2, size=48, n_channels=64, rank=6, seed=1)
    again = synthetic_feature_maps(n_images=2, size=48, n_channels=64, rank=6, seed=1)
    assert [im.data.shape for im in images] == [(64, 48, 48)] * 2
    assert all(np.array_equal(a.data, b.data) for a, b in zip(images, again))
    x = images[0].data.astype(np.float64)
    assert x.min() >= 0
    scale = x.std(axis=(1, 2))
    assert scale.max() / scale.min() > 100  # per-channel scales spread over ~3 decades
    z = (x - x.mean(axis=(1, 2), keepdims=True)) / scale[:, None, None]
    singular = np.linalg.svd(z.reshape(64, -1), compute_uv=False) ** 2
    assert singular[:6].sum() / singular.sum() > 0.9  # correlated: ~rank independent fields
    # smooth: neighbouring pixels nearly equal, unlike shot noise
    assert np.mean(np.corrcoef(z[:, :, 1:].ravel(), z[:, :, :-1].ravel())[0, 1]) > 0.8
    with pytest.raises(ValueError, match="size >= 8"):
        synthetic_feature_maps(size=4)


def test_the_truth_is_what_the_counts_were_drawn_from():
    from napari_imc_vae.datasets import synthetic_tissue_with_truth

    image, truth = synthetic_tissue_with_truth((96, 96), n_channels=10, seed=4)
    assert np.array_equal(image.data, synthetic_tissue((96, 96), n_channels=10, seed=4).data)
    assert truth.shape == image.data.shape and truth.dtype == np.float32 and truth.min() >= 0
    empty = [i for i, name in enumerate(image.channel_names) if name == "Ag107"]
    assert empty and not truth[empty].any()
    # Poisson: the counts scatter about the truth with variance ≈ mean (hot pixels aside)
    residual = (image.data - truth)[truth > 5]
    assert abs(residual.mean()) < 0.1 * truth[truth > 5].mean()
    noisier, _ = synthetic_tissue_with_truth((96, 96), n_channels=10, seed=4, overdispersion=0.3)
    bright = truth > 20
    assert np.var((noisier.data - truth)[bright]) > 1.5 * np.var((image.data - truth)[bright])
    with pytest.raises(ValueError, match="overdispersion must be a finite number >= 0"):
        synthetic_tissue_with_truth((32, 32), 5, overdispersion=-1)
