"""One-pass measures from running sums against the whole-array float64 functions of metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_imc_vae.engine.quality import metrics
from napari_imc_vae.engine.quality.baselines import PCABaseline
from napari_imc_vae.engine.quality.measures import PairSums, StreamSums, finite_patches, gradient_energy, pair_measures
from napari_imc_vae.engine.quality.evaluate import gaussian_smooth

NAMES = ("r2", "mse", "sharpness_ratio", "diversity_ratio", "cosine_loss")


def _one_pass(target: np.ndarray, prediction: np.ndarray, chunk: int) -> dict:
    """The one-pass path (finite arrays) of ``metrics.reconstruction_measures``."""
    return metrics.reconstruction_measures(target, prediction, chunk=chunk)


def _float64(target: np.ndarray, prediction: np.ndarray) -> dict:
    """The five whole-array float64 functions."""
    return {name: getattr(metrics, name)(target, prediction) for name in NAMES}


@pytest.mark.parametrize("chunk", [1, 7, 512])
def test_equal_to_the_float64_functions_on_real_patches(imc_patches, chunk):
    train, held_out = imc_patches
    predictions = {"pca": PCABaseline.fit(train, 8).reconstruct(held_out),
                   "smoothed": gaussian_smooth(held_out, dtype=torch.float32),
                   "mean": np.ascontiguousarray(np.broadcast_to(train.mean(axis=0), held_out.shape))}
    for name, prediction in predictions.items():
        got = _one_pass(held_out, prediction, chunk)
        want = _float64(held_out, prediction)
        for key in NAMES:
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), (name, key)


def test_far_from_zero_data_keep_their_precision(rng):
    """Chan's pairwise merge: a mean 1000× the spread loses nothing measurable (float32 chunks)."""
    x = (1000 + rng.normal(size=(600, 3, 4, 4))).astype(np.float32)
    xh = (x + 0.3 * rng.normal(size=x.shape)).astype(np.float32)
    got = _one_pass(x, xh, 64)
    want = _float64(x, xh)
    for key in ("r2", "diversity_ratio", "mse", "sharpness_ratio"):
        assert got[key] == pytest.approx(want[key], rel=1e-4), key


def test_identity_and_constant_predictions(rng):
    x = rng.normal(size=(50, 2, 5, 5)).astype(np.float32)
    same = _one_pass(x, x, 16)
    assert same["r2"] == 1.0 and same["mse"] == 0.0 and same["sharpness_ratio"] == 1.0
    assert same["diversity_ratio"] == pytest.approx(1.0) and same["cosine_loss"] == pytest.approx(0, abs=1e-6)
    zeros = _one_pass(x, np.zeros_like(x), 16)
    assert zeros["diversity_ratio"] == 0.0 and zeros["sharpness_ratio"] == 0.0


def test_nonfinite_prediction_makes_the_measures_nan(rng):
    x = rng.normal(size=(10, 2, 4, 4)).astype(np.float32)
    xh = x.copy()
    xh[3, 1, 2, 2] = np.inf
    got = _one_pass(x, xh, 4)  # a non-finite value: the masked float64 path, the value left out
    assert got == _float64(x, xh) and all(math.isfinite(got[key]) for key in NAMES)
    # the one-pass sums themselves turn a non-finite prediction into NaN, not a silent drop
    t_sums, p_sums, pair = StreamSums(), StreamSums(), PairSums()
    t_sums.update(torch.from_numpy(x))
    p_sums.update(torch.from_numpy(xh))
    pair.update(torch.from_numpy(x), torch.from_numpy(xh), t_sums.norm, p_sums.norm)
    assert all(math.isnan(v) for v in pair_measures(t_sums, p_sums, pair).values())


def test_constant_target_has_no_r2_and_no_sharpness():
    x = np.ones((6, 2, 3, 3), np.float32)
    got = _one_pass(x, x, 4)
    assert math.isnan(got["r2"]) and math.isnan(got["sharpness_ratio"]) and math.isnan(got["diversity_ratio"])


def test_finite_patches_tells_overflowing_sums_from_nonfinite_values(rng):
    x = torch.from_numpy(rng.normal(size=(9, 2, 3, 3)).astype(np.float32))
    x[1, 0, 0, 0], x[4, 1, 2, 2], x[6, 0, 1, 1] = math.nan, math.inf, -math.inf
    x[7] = 3e38  # finite, but its sum overflows float32
    x[8, 0, 0, 0], x[8, 0, 0, 1] = math.inf, -math.inf  # sums to NaN
    assert finite_patches(x, chunk=4).tolist() == [True, False, True, True, False, True, False, True, False]


@pytest.mark.parametrize("shape", [(5, 3, 8, 8), (2, 1, 3, 5), (1, 2, 1, 4)])
def test_gradient_energy_by_hand(rng, shape):
    a = rng.normal(size=shape)
    want = ((np.diff(a, axis=3) ** 2).sum(axis=(0, 2, 3)) + (np.diff(a, axis=2) ** 2).sum(axis=(0, 2, 3)))
    np.testing.assert_allclose(gradient_energy(torch.from_numpy(a)).numpy(), want, rtol=1e-12)
