"""The DESIGN §4 measures (one pass over chunks) against hand values and the float64 oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import float64_oracle as oracle
from napari_imc_vae.engine.model.d4 import D4_INVERSE, d4_apply
from napari_imc_vae.engine.quality.baselines import PCABaseline
from napari_imc_vae.engine.quality.evaluate import gaussian_smooth
from napari_imc_vae.engine.quality.measures import (
    PairSums,
    StreamSums,
    active_units,
    evenly_spaced,
    finite_patches,
    gradient_energy,
    pair_measures,
    permutation_accuracy,
    reconstruction_measures,
)

NAMES = oracle.NAMES


def measure(x, x_hat, name: str, **kwargs) -> float:
    return reconstruction_measures(x, x_hat, **kwargs)[name]


class EquivariantPermuter(nn.Module):
    """pred(x) = argmax_k <T, g_k⁻¹ x>: exactly consistent across the 8 views of a generic patch."""

    def __init__(self, channels: int, patch_size: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.template = nn.Parameter(torch.randn(channels, patch_size, patch_size, generator=g))

    def predict_orientation(self, x):
        scores = [(d4_apply(x, int(D4_INVERSE[k])) * self.template).sum(dim=(1, 2, 3)) for k in range(8)]
        return torch.stack(scores, dim=1).argmax(dim=1)


class ConstantPermuter(EquivariantPermuter):
    def predict_orientation(self, x):
        return torch.zeros(len(x), dtype=torch.long)


def _blur(x: np.ndarray) -> np.ndarray:
    t = torch.as_tensor(x)
    return F.avg_pool2d(F.pad(t, (1, 1, 1, 1), mode="replicate"), 3, stride=1).numpy()


# -- hand values ----------------------------------------------------------------------------------

def test_r2_hand_values(rng):
    x = np.array([0.0, 2.0]).reshape(1, 1, 1, 2)
    assert measure(x, x, "r2") == 1.0
    assert measure(x, np.array([0.5, 1.5]).reshape(1, 1, 1, 2), "r2") == pytest.approx(0.75)  # 1 − 0.5 / 2
    data = rng.normal(size=(10, 3, 4, 4)) * np.array([1.0, 10.0, 100.0])[None, :, None, None]
    channel_mean = np.broadcast_to(data.mean(axis=(0, 2, 3), keepdims=True), data.shape)
    assert measure(data, channel_mean, "r2") == pytest.approx(0.0, abs=1e-6)
    assert measure(data, channel_mean - 1, "r2") < 0
    # pooled: SSE and SST summed over channels, so the large channel dominates
    pooled = data.copy()
    pooled[:, 0] = 0
    sst = ((data - channel_mean) ** 2).sum()
    assert measure(data, pooled, "r2") == pytest.approx(1 - (data[:, 0] ** 2).sum() / sst, rel=1e-6)


def test_sharpness_hand_values(rng):
    x = np.array([[0.0, 2.0], [0.0, 2.0]]).reshape(1, 1, 2, 2)
    xh = np.array([[0.5, 1.5], [0.5, 1.5]]).reshape(1, 1, 2, 2)
    assert measure(x, xh, "sharpness_ratio") == pytest.approx(0.25)  # (1²·2) / (2²·2)
    assert measure(x, x, "sharpness_ratio") == 1.0
    # median over channels; a channel with no gradient in x is left out
    three = np.concatenate([x, x, np.ones_like(x)], axis=1)
    three_h = np.concatenate([xh, 2 * x, np.ones_like(x)], axis=1)
    assert measure(three, three_h, "sharpness_ratio") == pytest.approx(0.25)  # lower median of (0.25, 4)
    data = rng.normal(size=(20, 3, 8, 8)).astype(np.float32)
    assert measure(data, _blur(data), "sharpness_ratio") < 0.5
    assert math.isnan(measure(np.zeros((2, 1, 4, 4)), data[:2, :1, :4, :4], "sharpness_ratio"))


def test_diversity_hand_values(rng):
    x = rng.normal(size=(30, 2, 4, 4))
    assert measure(x, x, "diversity_ratio") == pytest.approx(1.0)
    assert measure(x, 0.5 * x + 3, "diversity_ratio") == pytest.approx(0.25, rel=1e-5)
    constant = np.broadcast_to(x.mean(axis=0, keepdims=True), x.shape)
    assert measure(x, constant, "diversity_ratio") == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(measure(np.ones_like(x), x, "diversity_ratio"))


def test_cosine_hand_values():
    x = np.zeros((1, 2, 1, 3))
    xh = np.zeros((1, 2, 1, 3))
    x[0, :, 0, 0], xh[0, :, 0, 0] = [1, 0], [1, 1]  # cos = 1/√2
    x[0, :, 0, 1], xh[0, :, 0, 1] = [0, 3], [0, 0]  # zero reconstruction: cos 0
    # pixel 2: all-zero truth, left out whatever the reconstruction
    xh[0, :, 0, 2] = [5, 5]
    assert measure(x, xh, "cosine_loss") == pytest.approx(((1 - 1 / math.sqrt(2)) + 1) / 2)
    assert measure(x, x, "cosine_loss") == pytest.approx(0.0, abs=1e-6)
    assert measure(x, -x, "cosine_loss") == pytest.approx(2.0)
    assert math.isnan(measure(np.zeros((1, 2, 2, 2)), xh[:, :, :1, :2].repeat(2, 2), "cosine_loss"))


def test_identity_and_constant_predictions(rng):
    x = rng.normal(size=(50, 2, 5, 5)).astype(np.float32)
    same = reconstruction_measures(x, x, chunk=16)
    assert same["r2"] == 1.0 and same["mse"] == 0.0 and same["sharpness_ratio"] == 1.0
    assert same["diversity_ratio"] == pytest.approx(1.0) and same["cosine_loss"] == pytest.approx(0, abs=1e-6)
    zeros = reconstruction_measures(x, np.zeros_like(x), chunk=16)
    assert zeros["diversity_ratio"] == 0.0 and zeros["sharpness_ratio"] == 0.0


def test_constant_target_has_no_r2_and_no_sharpness():
    x = np.ones((6, 2, 3, 3), np.float32)
    got = reconstruction_measures(x, x, chunk=4)
    assert math.isnan(got["r2"]) and math.isnan(got["sharpness_ratio"]) and math.isnan(got["diversity_ratio"])


# -- against the float64 oracle -------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [1, 7, 512])
def test_equal_to_the_oracle_on_real_patches(imc_patches, chunk):
    train, held_out = imc_patches
    predictions = {"pca": PCABaseline.fit(train, 8).reconstruct(held_out),
                   "smoothed": gaussian_smooth(held_out, dtype=torch.float32),
                   "mean": np.ascontiguousarray(np.broadcast_to(train.mean(axis=0), held_out.shape))}
    for name, prediction in predictions.items():
        got = reconstruction_measures(held_out, prediction, chunk=chunk)
        want = oracle.all_measures(held_out, prediction)
        for key in NAMES:
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), (name, key)


def test_equal_to_the_oracle_on_synthetic_patches(rng):
    x = rng.normal(size=(300, 3, 6, 6)).astype(np.float32)
    xh = (0.7 * _blur(x) + 0.1 * rng.normal(size=x.shape)).astype(np.float32)
    got, want = reconstruction_measures(x, xh, chunk=64), oracle.all_measures(x, xh)
    for key in NAMES:
        assert got[key] == pytest.approx(want[key], rel=1e-5), key
    # a whole image as one patch, not square (the benches' whole-image R²)
    image, recon = x[:2].reshape(1, 3, 12, 6), xh[:2].reshape(1, 3, 12, 6)
    assert measure(image, recon, "r2") == pytest.approx(oracle.r2(image, recon), rel=1e-5)
    assert measure(image, recon, "sharpness_ratio") == pytest.approx(oracle.sharpness_ratio(image, recon), rel=1e-5)


def test_far_from_zero_data_keep_their_precision(rng):
    """Chan's pairwise merge: a mean 1000× the spread loses nothing measurable (float32 chunks)."""
    x = (1000 + rng.normal(size=(600, 3, 4, 4))).astype(np.float32)
    xh = (x + 0.3 * rng.normal(size=x.shape)).astype(np.float32)
    got = reconstruction_measures(x, xh, chunk=64)
    want = oracle.all_measures(x, xh)
    for key in ("r2", "diversity_ratio", "mse", "sharpness_ratio"):
        assert got[key] == pytest.approx(want[key], rel=1e-4), key


def test_numpy_and_torch_agree(rng):
    x = rng.normal(size=(5, 3, 4, 4)).astype(np.float32)
    xh = _blur(x)
    assert reconstruction_measures(x, xh) == reconstruction_measures(torch.from_numpy(x), torch.from_numpy(xh))


# -- non-finite values: the report's rule ---------------------------------------------------------

def test_a_patch_touching_nan_or_inf_is_left_out(imc_patches):
    _, held_out = imc_patches
    x = held_out[:300].copy()
    xh = _blur(x)
    x[0, 0, 0, 0], x[17, 2, 3, 3], x[299, 4, 7, 7] = np.nan, np.inf, -np.inf
    kept = np.ones(len(x), bool)
    kept[[0, 17, 299]] = False
    assert finite_patches(torch.from_numpy(x)).numpy().tolist() == kept.tolist()
    got = reconstruction_measures(x, xh, chunk=50)
    # the measures of the remaining patches, exactly (the same chunks), and the oracle's on them
    assert got == reconstruction_measures(x[kept], xh[kept], chunk=50)
    want = oracle.all_measures(x[kept], xh[kept])
    assert all(got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6) for key in NAMES)
    all_nan = np.full((2, 1, 2, 2), np.nan)
    assert all(math.isnan(v) for v in reconstruction_measures(all_nan, np.zeros_like(all_nan)).values())


def test_no_patches_left_give_nan_measures(imc_patches):
    # validation leaves out the patches touching NaN/Inf first: all of them may be gone
    _, held_out = imc_patches
    none = torch.from_numpy(held_out[:0])
    assert none.shape[1:] == (5, 8, 8) and finite_patches(none).shape == (0,)
    got = reconstruction_measures(none, none)
    assert set(got) == set(NAMES) and all(math.isnan(v) for v in got.values())


def test_nonfinite_prediction_makes_the_measures_nan(rng):
    x = rng.normal(size=(10, 2, 4, 4)).astype(np.float32)
    xh = x.copy()
    xh[3, 1, 2, 2] = np.inf
    assert all(math.isnan(v) for v in reconstruction_measures(x, xh, chunk=4).values())
    t_sums, p_sums, pair = StreamSums(), StreamSums(), PairSums()
    t_sums.update(torch.from_numpy(x))
    p_sums.update(torch.from_numpy(xh))
    pair.update(torch.from_numpy(x), torch.from_numpy(xh), t_sums.norm, p_sums.norm)
    assert all(math.isnan(v) for v in pair_measures(t_sums, p_sums, pair).values())


def test_shape_errors():
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, P, P\), got shape \(2, 3, 4\)"):
        reconstruction_measures(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"x_hat must have the shape of x \(2, 3, 4, 4\), got \(2, 3, 4, 5\)"):
        reconstruction_measures(np.zeros((2, 3, 4, 4)), np.zeros((2, 3, 4, 5)))


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


# -- measures of the model itself -----------------------------------------------------------------

def test_active_units_counts_dims_above_threshold(rng):
    z = rng.normal(size=(4000, 4)) * np.sqrt([1.0, 0.0, 0.02, 0.005])
    assert active_units(z) == 2
    assert active_units(z, threshold=0.001) == 3
    assert active_units(torch.as_tensor(z[:1])) == 0
    with pytest.raises(ValueError, match=r"mu must have shape \(N, D\)"):
        active_units(z[None])


def test_evenly_spaced_takes_first_and_last():
    assert evenly_spaced(10, None) is None and evenly_spaced(10, 10) is None
    assert evenly_spaced(10, 4).tolist() == [0, 3, 6, 9]


def test_permutation_accuracy_perfect_and_left_out(rng):
    x = rng.normal(size=(12, 2, 5, 5)).astype(np.float32)
    x[0] = 0  # empty background
    x[1] = 3.0  # uniform
    x[2] = x[2] + x[2].transpose(0, 2, 1)  # symmetric under a reflection
    x[3] = x[3] + np.rot90(x[3], 2, axes=(1, 2))  # symmetric under a half turn
    acc, used, left = permutation_accuracy(EquivariantPermuter(2, 5), x, batch_size=5)
    assert (acc, used, left) == (1.0, 8, 4)


def test_permutation_accuracy_constant_predictor_is_wrong(rng):
    x = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    acc, used, left = permutation_accuracy(ConstantPermuter(1, 4), x)
    assert (acc, used, left) == (0.0, 6, 0)  # g_k ∘ g_0 = g_k ≠ g_0 for every k ≠ 0


def test_permutation_accuracy_all_left_out_is_nan():
    model = EquivariantPermuter(1, 4).train()
    acc, used, left = permutation_accuracy(model, np.zeros((3, 1, 4, 4)))
    assert math.isnan(acc) and (used, left) == (0, 3)
    assert model.training  # mode restored
