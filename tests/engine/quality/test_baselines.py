"""PCA-k and the mean predictor: exactness, the randomized path, NaN/Inf patches, storage."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from napari_imc_vae.engine.quality import baselines
from napari_imc_vae.engine.quality.baselines import MeanBaseline, PCABaseline


@pytest.mark.parametrize("n", [5, 40])  # fewer and more patches than features (F = 2·3·3 = 18)
def test_pca_full_rank_reconstructs_exactly(n, rng):
    x = rng.normal(size=(n, 2, 3, 3)).astype(np.float32)
    pca = PCABaseline.fit(x, min(n, 18))
    assert np.allclose(pca.reconstruct(x), x, atol=1e-5)
    comps = pca.components
    assert comps.dtype == torch.float32 and pca.mean.dtype == torch.float32
    assert torch.allclose(comps @ comps.T, torch.eye(pca.k), atol=1e-6)


def test_pca_k0_is_the_mean_predictor(rng):
    x = rng.normal(size=(30, 2, 3, 3))
    y = rng.normal(size=(4, 2, 3, 3))
    expected = np.broadcast_to(x.mean(axis=0), y.shape)
    assert np.allclose(PCABaseline.fit(x, 0).reconstruct(y), expected, atol=1e-6)
    assert np.allclose(MeanBaseline.fit(x).reconstruct(y), expected, atol=1e-6)
    np.testing.assert_allclose(PCABaseline.fit(x, 3).mean_patch().numpy(), x.mean(axis=0), atol=1e-6)


def test_pca_error_equals_trailing_singular_values(rng):
    x = rng.normal(size=(60, 1, 4, 4)) @ np.diag(np.linspace(0.2, 3, 4))
    flat = x.reshape(60, -1)
    s = np.linalg.svd(flat - flat.mean(0), compute_uv=False)
    for k in (1, 5, 10):
        rec = PCABaseline.fit(x, k).reconstruct(x)
        assert ((rec - x) ** 2).sum() == pytest.approx((s[k:] ** 2).sum(), rel=1e-4)


def test_pca_randomized_path_close_to_exact(rng, monkeypatch):
    x = (rng.normal(size=(300, 1, 6, 6)) * np.linspace(3, 0.1, 36).reshape(1, 1, 6, 6)).astype(np.float32)
    exact = PCABaseline.fit(x, 4).reconstruct(x)
    monkeypatch.setattr(baselines, "_EXACT_FLOPS", 8)
    approx = PCABaseline.fit(x, 4)
    assert np.abs(approx.reconstruct(x) - exact).max() < 1e-3
    # seeded: the same patches give the same components
    assert torch.equal(PCABaseline.fit(x, 4).components, approx.components)


def test_pca_randomized_explains_what_exact_does_on_real_patches(imc_patches, monkeypatch):
    """On real IMC patches (F = 320) the randomized fit's R² is that of the exact one (±1e-4)."""
    train, held_out = imc_patches

    sst = ((held_out - held_out.mean(axis=(0, 2, 3), keepdims=True)) ** 2).sum()

    def r2(pca):
        return 1 - ((pca.reconstruct(held_out) - held_out) ** 2).sum() / sst

    exact = PCABaseline.fit(train, 32)
    monkeypatch.setattr(baselines, "_EXACT_FLOPS", 0)
    fast = PCABaseline.fit(train, 32)
    assert 0.3 < r2(exact) < 1
    assert r2(fast) == pytest.approx(r2(exact), abs=1e-4)


def test_pca_leaves_out_nonfinite_patches(rng):
    x = rng.normal(size=(20, 1, 2, 2))
    dirty = x.copy()
    dirty[0, 0, 0, 0], dirty[5, 0, 1, 1], dirty[7, 0, 1, 0] = np.nan, np.inf, -np.inf
    pca = PCABaseline.fit(dirty, 2)
    clean = PCABaseline.fit(np.delete(x, [0, 5, 7], axis=0), 2)
    assert (pca.n_patches, pca.n_skipped_nonfinite) == (17, 3)
    torch.testing.assert_close(pca.mean, clean.mean)
    torch.testing.assert_close(pca.components.abs(), clean.components.abs())
    assert np.isfinite(pca.reconstruct(dirty)).all()  # a missing value reads as the mean
    with pytest.raises(ValueError, match="at least one patch without NaN/Inf values, got 0 of 2"):
        PCABaseline.fit(np.full((2, 1, 2, 2), np.nan), 0)
    with pytest.raises(ValueError, match="at least one patch without NaN/Inf values, got 0 of 0"):
        PCABaseline.fit(np.zeros((0, 1, 2, 2)), 0)


def test_pca_bad_arguments(rng):
    x = rng.normal(size=(20, 1, 2, 2))
    pca = PCABaseline.fit(x, 2)
    with pytest.raises(ValueError, match=r"k must be an int in 0..min\(N, C\*P\*P\) = 4, got 5"):
        PCABaseline.fit(x, 5)
    with pytest.raises(ValueError, match=r"patches must have shape \(N, C, P, P\)"):
        PCABaseline.fit(x[0], 1)
    with pytest.raises(ValueError, match=r"patches must have shape \(N, 1, 2, 2\)"):
        pca.reconstruct(np.zeros((3, 2, 2, 2)))
    with pytest.raises(ValueError, match="k must be 0"):
        MeanBaseline.fit(x, 3)


def test_project_finite_equals_reconstruct(rng):
    x = rng.normal(size=(50, 3, 4, 4)).astype(np.float32)
    pca = PCABaseline.fit(x, 6)
    rec, z = pca.project_finite(torch.from_numpy(x[:7]))
    np.testing.assert_allclose(rec.numpy(), pca.reconstruct(x[:7]), atol=1e-5)
    torch.testing.assert_close(z, pca.encode(x[:7]), atol=1e-5, rtol=1e-5)


def test_state_round_trips_through_a_weights_only_load(rng):
    x = rng.normal(size=(40, 3, 4, 4)).astype(np.float32)
    x[3, 0, 0, 0] = np.nan
    pca = PCABaseline.fit(x, 5)
    buffer = io.BytesIO()
    torch.save({"baseline": pca.to_state()}, buffer)
    buffer.seek(0)
    back = PCABaseline.from_state(torch.load(buffer, weights_only=True)["baseline"])
    assert back.patch_shape == (3, 4, 4) and back.k == 5 and (back.n_patches, back.n_skipped_nonfinite) == (39, 1)
    assert torch.equal(back.components, pca.components) and torch.equal(back.mean, pca.mean)
    np.testing.assert_array_equal(back.reconstruct(x), pca.reconstruct(x))


def test_state_size_for_512_channels():
    """512 channels × 8×8 at k = 32, float32: 4.2 MB of tensors (a few MB at most)."""
    f = 512 * 8 * 8
    pca = PCABaseline(torch.zeros(f), torch.zeros(32, f), (512, 8, 8), 4096)
    buffer = io.BytesIO()
    torch.save(pca.to_state(), buffer)
    assert buffer.tell() < 4.5e6


@pytest.mark.parametrize(("edit", "match"), [
    (lambda s: s.pop("components"), "lacks components"),
    (lambda s: s.update(k=4), r"components must have shape \(4, 48\)"),
    (lambda s: s.update(channels=2), r"mean must have shape \(32,\) for patches \(2, 4, 4\)"),
    (lambda s: s.update(mean=s["mean"].numpy()), "mean must be a float tensor, got ndarray"),
    (lambda s: s["components"].__setitem__((0, 0), float("nan")), "components holds NaN/Inf"),
    (lambda s: s.update(format=7), "format 7"),
    (lambda s: s.update(n_patches=-1), "n_patches must be an int >= 0"),
])
def test_state_validation_names_the_problem(rng, edit, match):
    state = PCABaseline.fit(rng.normal(size=(10, 3, 4, 4)), 2).to_state()
    edit(state)
    with pytest.raises(ValueError, match=match):
        PCABaseline.from_state(state)
    with pytest.raises(ValueError, match="must be a dict"):
        PCABaseline.from_state([1, 2])
