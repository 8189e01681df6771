"""Quality measures against values computed by hand on small arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_imc_vae.engine.model.d4 import D4_INVERSE, d4_apply
from napari_imc_vae.engine.quality.metrics import (
    active_units,
    cosine_loss,
    diversity_ratio,
    mse,
    permutation_accuracy,
    r2,
    sharpness_ratio,
)


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


def test_r2_hand_values(rng):
    x = np.array([0.0, 2.0]).reshape(1, 1, 1, 2)
    assert r2(x, x) == 1.0
    assert r2(x, np.array([0.5, 1.5]).reshape(1, 1, 1, 2)) == pytest.approx(0.75)  # 1 − 0.5 / 2
    data = rng.normal(size=(10, 3, 4, 4)) * np.array([1.0, 10.0, 100.0])[None, :, None, None]
    channel_mean = np.broadcast_to(data.mean(axis=(0, 2, 3), keepdims=True), data.shape)
    assert r2(data, channel_mean) == pytest.approx(0.0, abs=1e-12)
    assert r2(data, channel_mean - 1) < 0
    # pooled: SSE and SST summed over channels, so the large channel dominates
    pooled = data.copy()
    pooled[:, 0] = 0
    sst = ((data - channel_mean) ** 2).sum()
    assert r2(data, pooled) == pytest.approx(1 - (data[:, 0] ** 2).sum() / sst)


def test_nan_elements_are_left_out(rng):
    x = rng.normal(size=(6, 2, 3, 3))
    xh = x + 0.1 * rng.normal(size=x.shape)
    xn = x.copy()
    xn[0, 0, 0, 0] = np.nan
    keep = np.isfinite(xn)
    assert mse(xn, xh) == pytest.approx(((xh - x)[keep] ** 2).mean())
    assert math.isfinite(r2(xn, xh)) and math.isfinite(sharpness_ratio(xn, xh))
    assert math.isfinite(diversity_ratio(xn, xh)) and math.isfinite(cosine_loss(xn, xh))
    assert math.isnan(r2(np.full((2, 1, 2, 2), np.nan), np.zeros((2, 1, 2, 2))))


def test_sharpness_hand_values(rng):
    x = np.array([[0.0, 2.0], [0.0, 2.0]]).reshape(1, 1, 2, 2)
    xh = np.array([[0.5, 1.5], [0.5, 1.5]]).reshape(1, 1, 2, 2)
    assert sharpness_ratio(x, xh) == pytest.approx(0.25)  # (1²·2) / (2²·2)
    assert sharpness_ratio(x, x) == 1.0
    # median over channels; a channel with no gradient in x is left out
    three = np.concatenate([x, x, np.ones_like(x)], axis=1)
    three_h = np.concatenate([xh, 2 * x, np.ones_like(x)], axis=1)
    assert sharpness_ratio(three, three_h) == pytest.approx(0.25)  # lower median of (0.25, 4)
    data = rng.normal(size=(20, 3, 8, 8)).astype(np.float32)
    assert sharpness_ratio(data, _blur(data)) < 0.5
    assert math.isnan(sharpness_ratio(np.zeros((2, 1, 4, 4)), data[:2, :1, :4, :4]))


def test_diversity_hand_values(rng):
    x = rng.normal(size=(30, 2, 4, 4))
    assert diversity_ratio(x, x) == pytest.approx(1.0)
    assert diversity_ratio(x, 0.5 * x + 3) == pytest.approx(0.25)
    constant = np.broadcast_to(x.mean(axis=0, keepdims=True), x.shape)
    assert diversity_ratio(x, constant) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(diversity_ratio(np.ones_like(x), x))


def test_active_units_counts_dims_above_threshold(rng):
    z = rng.normal(size=(4000, 4)) * np.sqrt([1.0, 0.0, 0.02, 0.005])
    assert active_units(z) == 2
    assert active_units(z, threshold=0.001) == 3
    assert active_units(torch.as_tensor(z[:1])) == 0
    with pytest.raises(ValueError, match=r"mu must have shape \(N, D\)"):
        active_units(z[None])


def test_cosine_hand_values():
    x = np.zeros((1, 2, 1, 3))
    xh = np.zeros((1, 2, 1, 3))
    x[0, :, 0, 0], xh[0, :, 0, 0] = [1, 0], [1, 1]  # cos = 1/√2
    x[0, :, 0, 1], xh[0, :, 0, 1] = [0, 3], [0, 0]  # zero reconstruction: cos 0
    # pixel 2: all-zero truth, left out whatever the reconstruction
    xh[0, :, 0, 2] = [5, 5]
    assert cosine_loss(x, xh) == pytest.approx(((1 - 1 / math.sqrt(2)) + 1) / 2)
    assert cosine_loss(x, x) == pytest.approx(0.0, abs=1e-12)
    assert cosine_loss(x, -x) == pytest.approx(2.0)
    assert math.isnan(cosine_loss(np.zeros((1, 2, 2, 2)), xh[:, :, :1, :2].repeat(2, 2)))


def test_numpy_and_torch_agree(rng):
    x = rng.normal(size=(5, 3, 4, 4)).astype(np.float32)
    xh = _blur(x)
    for f in (r2, mse, sharpness_ratio, diversity_ratio, cosine_loss):
        assert f(x, xh) == pytest.approx(f(torch.from_numpy(x), torch.from_numpy(xh)))


@pytest.mark.parametrize("f", [r2, mse, sharpness_ratio, diversity_ratio, cosine_loss])
def test_shape_errors(f):
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, P, P\)"):
        f(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="x_hat must have the shape of x"):
        f(np.zeros((2, 3, 4, 4)), np.zeros((2, 3, 4, 5)))


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


def test_reconstruction_measures_equal_the_five_functions_with_nan():
    from napari_imc_vae.engine.quality import metrics

    rng = np.random.default_rng(4)
    x, xh = rng.normal(size=(20, 3, 6, 6)), rng.normal(size=(20, 3, 6, 6))
    x[0, 1, 2, 2] = np.nan
    xh[3, 0, 0, 1] = np.inf
    together = metrics.reconstruction_measures(x, xh)
    for name in ("r2", "mse", "sharpness_ratio", "diversity_ratio", "cosine_loss"):
        assert together[name] == getattr(metrics, name)(x, xh)
