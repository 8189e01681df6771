"""Baselines, Gaussian smoothing and the quality report on stand-in models and synthetic data."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from napari_imc_vae.engine import baselines
from napari_imc_vae.engine.baselines import MeanBaseline, PCABaseline
from napari_imc_vae.engine.d4 import D4_INVERSE, d4_apply
from napari_imc_vae.engine.quality import GridPatches, QualityReport, evaluate, gaussian_smooth
from napari_imc_vae.engine.tiling import TileGrid


class StandIn(nn.Module):
    """Reconstructs as ``mode`` says; latent = channel means; an exactly equivariant permuter."""

    def __init__(self, channels: int, patch_size: int, mode: str = "identity"):
        super().__init__()
        self.config = SimpleNamespace(patch_size=patch_size, in_channels=channels, latent_dim=channels)
        g = torch.Generator().manual_seed(0)
        self.template = nn.Parameter(torch.randn(channels, patch_size, patch_size, generator=g))
        self.mode = mode

    @torch.no_grad()
    def reconstruct(self, x):
        mu = x.mean(dim=(2, 3))
        if self.mode == "constant":
            return torch.zeros_like(x), torch.zeros_like(mu)
        if self.mode == "channel_mean":  # each pixel by its patch's channel mean: blurry
            return mu[:, :, None, None].expand_as(x), mu
        return x.clone(), mu

    @torch.no_grad()
    def predict_orientation(self, x):
        scores = [(d4_apply(x, int(D4_INVERSE[k])) * self.template).sum(dim=(1, 2, 3)) for k in range(8)]
        return torch.stack(scores, dim=1).argmax(dim=1)


def _patches(image: np.ndarray, p: int) -> np.ndarray:
    grid = TileGrid.create(image.shape[1:], p, p)
    return grid.extract(image)


@pytest.fixture(scope="module")
def smooth_set():
    rng = np.random.default_rng(1)
    image = gaussian_smooth(rng.normal(size=(3, 96, 96)), sigma=2.5) * 4
    tiles = _patches(image, 8)
    return tiles[::2], tiles[1::2]  # train, val


@pytest.fixture(scope="module")
def noisy_set():
    rng = np.random.default_rng(2)
    tiles = rng.normal(size=(200, 3, 8, 8)).astype(np.float32)
    return tiles[:150], tiles[150:]


# --- baselines ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [5, 40])  # fewer and more patches than features (F = 2·3·3 = 18)
def test_pca_full_rank_reconstructs_exactly(n, rng):
    x = rng.normal(size=(n, 2, 3, 3)).astype(np.float32)
    pca = PCABaseline.fit(x, min(n, 18))
    assert np.allclose(pca.reconstruct(x), x, atol=1e-5)
    comps = pca.components
    assert torch.allclose(comps @ comps.T, torch.eye(pca.k, dtype=comps.dtype), atol=1e-8)


def test_pca_k0_is_the_mean_predictor(rng):
    x = rng.normal(size=(30, 2, 3, 3))
    y = rng.normal(size=(4, 2, 3, 3))
    expected = np.broadcast_to(x.mean(axis=0), y.shape)
    assert np.allclose(PCABaseline.fit(x, 0).reconstruct(y), expected, atol=1e-6)
    assert np.allclose(MeanBaseline.fit(x).reconstruct(y), expected, atol=1e-6)


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
    monkeypatch.setattr(baselines, "_EXACT_LIMIT", 8)
    approx = PCABaseline.fit(x, 4).reconstruct(x)
    assert np.abs(approx - exact).max() < 1e-3


def test_pca_nan_tolerant_and_bad_arguments(rng):
    x = rng.normal(size=(20, 1, 2, 2))
    x[0, 0, 0, 0] = np.nan
    pca = PCABaseline.fit(x, 2)
    assert np.isfinite(pca.reconstruct(x)).all()
    with pytest.raises(ValueError, match=r"k must be an int in 0..min\(N, C\*P\*P\) = 4, got 5"):
        PCABaseline.fit(x, 5)
    with pytest.raises(ValueError, match=r"patches must have shape \(N, C, P, P\)"):
        PCABaseline.fit(x[0], 1)
    with pytest.raises(ValueError, match=r"patches must have shape \(N, 1, 2, 2\)"):
        pca.reconstruct(np.zeros((3, 2, 2, 2)))
    with pytest.raises(ValueError, match="k must be 0"):
        MeanBaseline.fit(x, 3)


# --- smoothing ---------------------------------------------------------------------------------


def test_gaussian_smooth_basic(rng):
    assert np.allclose(gaussian_smooth(np.full((2, 5, 7), 3.0)), 3.0)
    assert gaussian_smooth(np.ones((1, 1))).shape == (1, 1)
    x = np.zeros((21, 21))
    x[10, 10] = 1.0
    s = gaussian_smooth(x, sigma=1.0)
    assert s.sum() == pytest.approx(1.0, abs=1e-6)
    g = np.exp(-0.5 * np.arange(-1, 2) ** 2)
    assert s[10, 11] / s[10, 10] == pytest.approx(g[2] / g[1], rel=1e-5)
    assert s[10, 9] == pytest.approx(s[9, 10])
    noise = rng.normal(size=(4, 32, 32))
    assert gaussian_smooth(noise).std() < 0.4 * noise.std()  # shot noise mostly removed
    with pytest.raises(ValueError, match="sigma must be > 0"):
        gaussian_smooth(x, sigma=0)


def test_gaussian_smooth_nan_aware():
    x = np.ones((1, 6, 6))
    x[0, 2, 3] = np.nan
    s = gaussian_smooth(x)
    assert np.isnan(s[0, 2, 3]) and np.isnan(s).sum() == 1
    assert np.allclose(s[np.isfinite(s)], 1.0)


def test_gaussian_smooth_rows_of_a_band_equal_the_whole_image(rng):
    x = rng.normal(size=(2, 40, 13)) * 30
    x[1, 5, 3] = np.nan
    whole = gaussian_smooth(x)
    for lo, hi in [(0, 40), (0, 3), (10, 20), (37, 40), (4, 5)]:
        a, b = max(lo - 4, 0), min(hi + 4, 40)  # the kernel's radius for sigma 1, truncate 4
        np.testing.assert_array_equal(gaussian_smooth(x[:, a:b], rows=(lo - a, hi - a)), whole[:, lo:hi])
    # float32 arithmetic: within float noise of float64 on normalized-scale data
    z = rng.normal(size=(3, 50, 31))
    np.testing.assert_allclose(gaussian_smooth(z, dtype=torch.float32), gaussian_smooth(z), atol=1e-5)
    with pytest.raises(ValueError, match="rows must be"):
        gaussian_smooth(x, rows=(5, 5))


def _whole_image_patches(image, p, stride, cap):
    """The quality patches as the command line cut them before: from the whole (smoothed) image."""
    c, h, w = image.shape
    ys, xs = np.arange(0, h - p + 1, stride), np.arange(0, w - p + 1, stride)
    yy, xx = (a.ravel() for a in np.meshgrid(ys, xs, indexing="ij"))
    if yy.size > cap:
        keep = np.linspace(0, yy.size - 1, cap).round().astype(int)
        yy, xx = yy[keep], xx[keep]

    def cut(a):
        return np.lib.stride_tricks.sliding_window_view(a, (p, p), axis=(1, 2))[:, yy, xx].transpose(1, 0, 2, 3)

    return cut(image), cut(gaussian_smooth(image))


@pytest.mark.parametrize(("shape", "p", "stride", "cap", "band_values"), [
    ((3, 50, 37), 8, 4, 20_000, 1 << 21),  # one band
    ((3, 50, 37), 8, 4, 30, 300),  # many bands
    ((2, 200, 20), 4, 2, 15, 500),  # sparse rows: gaps between bands are never asked for
    ((4, 9, 9), 8, 3, 100, 10),  # smaller than the kernel
    ((2, 61, 16), 5, 1, 400, 64),  # stride 1
])
def test_grid_patches_equal_cutting_the_whole_image(rng, shape, p, stride, cap, band_values):
    image = (rng.normal(size=shape) * 3).astype(np.float32)
    image[0, 3:6, 4:7] = np.nan
    patches, smooth = _whole_image_patches(image, p, stride, cap)
    pulled = GridPatches(shape, p, stride, cap=cap, band_values=band_values)
    ranges = pulled.row_ranges
    assert all(a < b <= c for (a, b), (c, _) in zip(ranges, ranges[1:]))  # disjoint, increasing
    pulled.read(lambda a, b: image[:, a:b])
    got, got_smooth = pulled.result()
    np.testing.assert_array_equal(got, patches)
    np.testing.assert_allclose(got_smooth, smooth, atol=1e-5)
    assert np.array_equal(np.isnan(got_smooth), np.isnan(smooth))
    # pushed row by row in uneven pieces, as a reconstruction passes them: the same
    pushed = GridPatches(shape, p, stride, cap=cap, band_values=band_values)
    y = 0
    while y < shape[1]:
        n = int(rng.integers(1, 9))
        pushed.add(y, image[:, y : y + n])
        y += n
    for a, b in zip(pushed.result(), (got, got_smooth)):
        np.testing.assert_array_equal(a, b)


def test_grid_patches_refuse_rows_out_of_order_or_missing(rng):
    image = rng.normal(size=(1, 40, 10)).astype(np.float32)
    grid = GridPatches(image.shape, 4, 2, band_values=40)
    grid.add(0, image[:, :10])
    with pytest.raises(ValueError, match="increasing order"):
        grid.add(5, image[:, 5:20])
    with pytest.raises(ValueError, match="needed"):
        grid.result()  # rows 10… never came
    with pytest.raises(ValueError, match=r"rows 10…29 were needed but not given"):
        grid.add(30, image[:, 30:])
    with pytest.raises(ValueError, match="holds no"):
        GridPatches((1, 3, 10), 4, 2)


# --- the report ---------------------------------------------------------------------------------


def test_identity_model_on_smooth_data_is_healthy(smooth_set):
    train, val = smooth_set
    rep = evaluate(StandIn(3, 8), val, train, batch_size=16)
    assert rep.smooth_data and rep.target_smoothness > 0.5
    assert rep.model.r2 == pytest.approx(1.0) and rep.model.sharpness_ratio == pytest.approx(1.0)
    assert rep.model.diversity_ratio == pytest.approx(1.0) and rep.model.cosine_loss == pytest.approx(0, abs=1e-6)
    assert rep.model.perm_accuracy == 1.0 and rep.model.perm_used == len(val)
    assert rep.model.active_units == 3 and rep.model.active_fraction == 1.0
    assert abs(rep.mean.r2) < 0.1 and 0 < rep.pca.r2 < 1 and rep.pca_k == 3
    assert rep.problems == []
    text = " ".join(rep.verdicts())
    assert "Beats PCA-3" in text and "No problem found" in text
    assert rep.model_smooth.r2 < 1.0  # against the smoothed target the identity is not perfect


def test_constant_model_collapses_and_averages(smooth_set):
    train, val = smooth_set
    rep = evaluate(StandIn(3, 8, "constant"), val, train)
    assert {"posterior_collapse", "averaged_outputs", "blur", "below_pca", "underfit"} <= set(rep.problems)
    assert rep.model.active_units == 0 and rep.model.diversity_ratio == 0.0
    text = "\n".join(rep.verdicts())
    for phrase in ("Posterior collapse", "Averaged outputs", "Blurry", "Falls short of PCA-3",
                   "No better than predicting the mean patch"):
        assert phrase in text


def test_blurry_model_flagged_on_noisy_data(noisy_set):
    train, val = noisy_set
    rep = evaluate(StandIn(3, 8, "channel_mean"), val, train)
    assert not rep.smooth_data and rep.target_smoothness < 0.3
    assert rep.model.sharpness_ratio == 0.0 and "blur" in rep.problems
    assert any("shot-noisy" in v for v in rep.verdicts())
    ident = evaluate(StandIn(3, 8), val, train)
    assert "blur" not in ident.problems and ident.problems == []


def test_report_serialises_and_formats(smooth_set):
    train, val = smooth_set
    model = StandIn(3, 8).train()
    rep = evaluate(model, val, train, smooth_target=gaussian_smooth(val), perm_patches=5)
    assert model.training  # mode restored
    assert rep.smooth_source == "image" and rep.model.perm_used + rep.model.perm_left_out == 5
    d = rep.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["model"]["r2"] == pytest.approx(1.0) and d["mean"]["perm_accuracy"] is None
    assert d["verdicts"] == rep.verdicts() and d["problems"] == []
    text = rep.format_text()
    for word in ("R²", "sharpness ratio", "diversity ratio", "active units", "permutation accuracy",
                 "PCA-3", "smoothed target", "Verdicts"):
        assert word in text


def test_nan_in_validation_patches(smooth_set):
    train, val = smooth_set
    val = val.copy()
    val[0, :, 2, 2] = np.nan
    rep = evaluate(StandIn(3, 8), val, train)
    assert math.isfinite(rep.model.r2) and math.isfinite(rep.pca.r2)
    json.dumps(rep.to_dict(), allow_nan=False)


def test_nan_measures_become_none():
    m = dict(r2=math.nan, mse=0.0, sharpness_ratio=math.nan, diversity_ratio=math.nan, cosine_loss=math.nan)
    from napari_imc_vae.engine.quality import Measures

    rep = QualityReport(Measures(**m), Measures(**m), Measures(**m), Measures(**m), Measures(**m),
                        Measures(**m), latent_dim=2, pca_k=2, n_val=1, n_train=1,
                        target_smoothness=math.nan, smooth_data=False)
    json.dumps(rep.to_dict(), allow_nan=False)
    assert rep.to_dict()["model"]["r2"] is None
    assert "—" in rep.format_text()


@pytest.mark.parametrize(
    "val,train,kwargs,match",
    [
        (np.zeros((3, 8, 8)), np.zeros((4, 3, 8, 8)), {}, "val_patches must have shape"),
        (np.zeros((2, 3, 8, 8)), np.zeros((4, 2, 8, 8)), {}, r"train_patches must have shape \(M, 3, 8, 8\)"),
        (np.zeros((2, 3, 8, 8)), np.zeros((4, 3, 8, 8)), {"smooth_target": np.zeros((1, 3, 8, 8))}, "smooth_target"),
        (np.zeros((2, 3, 8, 8)), np.zeros((4, 3, 8, 8)), {"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_input(val, train, kwargs, match):
    with pytest.raises(ValueError, match=match):
        evaluate(StandIn(3, 8), val, train, **kwargs)


def test_real_model_smoke(smooth_set):
    model_mod = pytest.importorskip("napari_imc_vae.engine.model")
    train, val = smooth_set
    model = model_mod.PatchVAE(model_mod.ModelConfig(in_channels=3, patch_size=8, latent_dim=4, width=16, depth=1))
    rep = evaluate(model, val[:20], train)
    assert rep.pca_k == 4 and 0 <= rep.model.perm_accuracy <= 1
    json.dumps(rep.to_dict(), allow_nan=False)
