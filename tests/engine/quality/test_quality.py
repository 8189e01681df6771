"""Gaussian smoothing, grid patches and the quality report: stand-in models, synthetic and real data."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import float64_oracle as oracle
from napari_imc_vae.engine.quality import report
from napari_imc_vae.engine.quality.baselines import PCABaseline
from napari_imc_vae.engine.model.d4 import D4_INVERSE, d4_apply
from napari_imc_vae.engine.quality.measures import active_units
from napari_imc_vae.engine.quality.evaluate import GridPatches, QualityReport, evaluate, gaussian_smooth
from napari_imc_vae.engine.apply.tiling import TileGrid


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
    if ys.size * xs.size > cap:  # evenly spaced grid rows, each with evenly spaced patches
        ys = ys[np.unique(np.linspace(0, ys.size - 1, min(ys.size, max(1, cap // xs.size))).round().astype(int))]
        xs = xs[np.unique(np.linspace(0, xs.size - 1, min(xs.size, cap // ys.size)).round().astype(int))]
    yy, xx = (a.ravel() for a in np.meshgrid(ys, xs, indexing="ij"))

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


def test_capped_grid_patches_take_whole_rows_evenly_spaced():
    grid = GridPatches((40, 1024, 1024), 8, 4, cap=8192)
    yy, xx = grid.origins
    assert len(yy) <= 8192 and len(np.unique(xx)) == 255  # whole rows of the stride grid
    rows = np.unique(yy)
    assert len(rows) == 32 and rows[0] == 0 and rows[-1] == 1016 and np.ptp(np.diff(rows)) <= 4
    needed = sum(b - a for a, b in grid.row_ranges)
    assert needed <= 600  # about half of the image's rows are read and smoothed, not all
    wide = GridPatches((1, 16, 4000), 8, 4, cap=100)
    assert len(wide.origins[0]) <= 100 and len(np.unique(wide.origins[0])) == 1


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


def test_nan_in_validation_patches_are_left_out(smooth_set):
    train, val = smooth_set
    dirty = val.copy()
    dirty[0, :, 2, 2] = np.nan
    rep = evaluate(StandIn(3, 8), dirty, train)
    clean = evaluate(StandIn(3, 8), val[1:], train)
    assert rep.n_skipped_nonfinite == 1 and rep.n_val == len(val) - 1
    assert rep.model == clean.model and rep.pca == clean.pca and rep.mean_smooth == clean.mean_smooth
    assert any(f"1 of {len(val)} patches touch NaN/Inf pixels" in v for v in rep.verdicts())
    assert "patches with NaN/Inf pixels left out: 1" in rep.format_text()
    json.dumps(rep.to_dict(), allow_nan=False)


def test_no_patch_without_nonfinite_pixels_is_an_error(smooth_set):
    train, val = smooth_set
    dirty = val[:3].copy()
    dirty[:, 0, 0, 0] = [np.nan, np.inf, -np.inf]
    with pytest.raises(ValueError, match="no patch without NaN/Inf pixels among the 3 held-out patches"):
        evaluate(StandIn(3, 8), dirty, train)
    with pytest.raises(ValueError, match="no training patch without NaN/Inf pixels among the 3"):
        evaluate(StandIn(3, 8), val, dirty)
    with pytest.raises(ValueError, match="no training patch without NaN/Inf pixels among the 0 given"):
        evaluate(StandIn(3, 8), val, train[:0])


def test_nan_measures_become_none():
    m = dict(r2=math.nan, mse=0.0, sharpness_ratio=math.nan, diversity_ratio=math.nan, cosine_loss=math.nan)
    from napari_imc_vae.engine.quality.evaluate import Measures

    rep = QualityReport(Measures(**m), Measures(**m), Measures(**m), Measures(**m), Measures(**m),
                        Measures(**m), latent_dim=2, pca_k=2, n_val=1, n_train=1,
                        target_smoothness=math.nan, smooth_data=False)
    json.dumps(rep.to_dict(), allow_nan=False)
    assert rep.to_dict()["model"]["r2"] is None
    assert "—" in rep.format_text()
    assert any("R² is undefined" in v for v in rep.verdicts())
    assert not any("+nan" in v or "Beats" in v for v in rep.verdicts())


@pytest.mark.parametrize(
    "val,train,kwargs,match",
    [
        (np.zeros((3, 8, 8)), np.zeros((4, 3, 8, 8)), {}, "val_patches must have shape"),
        (np.zeros((2, 3, 8, 8)), np.zeros((4, 2, 8, 8)), {}, r"train_patches must have shape \(M, 3, 8, 8\)"),
        (np.zeros((2, 3, 8, 8)), np.zeros((4, 3, 8, 8)), {"smooth_target": np.zeros((1, 3, 8, 8))}, "smooth_target"),
        (np.zeros((2, 3, 8, 8)), np.zeros((4, 3, 8, 8)), {"batch_size": 0}, "batch_size"),
        (np.zeros((2, 3, 8, 8)), None, {"baseline": PCABaseline.fit(np.ones((4, 3, 4, 4)), 1)},
         r"fitted on patches of shape \(3, 4, 4\); val_patches have \(3, 8, 8\)"),
        (np.zeros((2, 3, 8, 8)), None, {"baseline": "PCA"}, "baseline must be a PCABaseline, got str"),
    ],
)
def test_bad_input(val, train, kwargs, match):
    with pytest.raises(ValueError, match=match):
        evaluate(StandIn(3, 8), val, train, **kwargs)


def test_real_model_smoke(smooth_set):
    model_mod = pytest.importorskip("napari_imc_vae.engine.model.vae")
    train, val = smooth_set
    model = model_mod.PatchVAE(model_mod.ModelConfig(in_channels=3, patch_size=8, latent_dim=4, width=16, depth=1))
    rep = evaluate(model, val[:20], train)
    assert rep.pca_k == 4 and 0 <= rep.model.perm_accuracy <= 1
    json.dumps(rep.to_dict(), allow_nan=False)


# --- the baseline: given, stored, or missing ------------------------------------------------------


def test_a_stored_baseline_gives_the_figures_of_fitting_on_the_training_patches(smooth_set):
    train, val = smooth_set
    fitted = evaluate(StandIn(3, 8, "channel_mean"), val, train)
    source = "PCA-3 fitted on 48 training patches of ROI_001 at the end of training"
    stored = PCABaseline.from_state(PCABaseline.fit(train, 3).to_state())
    rep = evaluate(StandIn(3, 8, "channel_mean"), val, baseline=stored, baseline_source=source)
    assert rep.pca == fitted.pca and rep.mean == fitted.mean and rep.pca_smooth == fitted.pca_smooth
    assert rep.verdicts() == fitted.verdicts() and rep.n_train == fitted.n_train == len(train)
    assert fitted.baseline_source == "training patches given to evaluate" and rep.baseline_source == source
    d = rep.to_dict()
    assert d["baseline"] == {"fitted_on": source, "k": 3} and d["pca"]["r2"] == pytest.approx(fitted.pca.r2)
    assert f"Baseline: {source}" in rep.format_text()
    # the old positional call still works
    assert evaluate(StandIn(3, 8, "channel_mean"), val, train).model == fitted.model


def test_without_a_baseline_only_the_absolute_verdicts(smooth_set):
    train, val = smooth_set
    rep = evaluate(StandIn(3, 8, "constant"), val, baseline_source="ignored without a baseline")
    assert rep.pca is None and rep.mean is None and rep.pca_smooth is None and rep.mean_smooth is None
    assert rep.pca_k is None and rep.n_train is None and rep.baseline_source is None
    # smooth data: collapse, blur, averaging and underfit by the absolute thresholds still apply
    assert {"posterior_collapse", "blur", "averaged_outputs", "underfit"} <= set(rep.problems)
    assert not {"below_pca", "no_better_than_mean"} & set(rep.problems)
    text = "\n".join(rep.verdicts())
    assert "holds no stored baseline (older format)" in text and "retrain (or re-save after training)" in text
    for phrase in ("Beats PCA", "Falls short", "mean patch:", "PCA-"):
        assert phrase not in text
    d = rep.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["pca"]["r2"] is None and d["mean"]["r2"] is None and d["baseline"] == {"fitted_on": None, "k": None}
    assert d["model"]["r2"] == pytest.approx(rep.model.r2)
    assert "Baseline: none stored in the model file" in rep.format_text()
    # shot noise without a baseline: no blur or averaging verdict (nothing fair to compare with)
    noisy = np.random.default_rng(5).normal(size=(40, 3, 8, 8)).astype(np.float32)
    blurry = evaluate(StandIn(3, 8, "channel_mean"), noisy)
    assert not blurry.smooth_data and blurry.problems == []
    assert blurry.verdicts()[-1] == "No problem found by the checks that need no baseline."
    # worse than any constant needs no baseline either
    inverted = evaluate(StandIn(3, 8, "constant"), noisy + 1)
    assert "worse_than_constant" in inverted.problems
    assert any(v.startswith("Worse than a constant: R² ") for v in inverted.verdicts())


def test_thresholds_are_read_by_the_words(smooth_set, monkeypatch):
    train, val = smooth_set
    monkeypatch.setitem(report.THRESHOLDS, "r2", 0.99)
    monkeypatch.setitem(report.THRESHOLDS, "active_fraction", 0.5)
    monkeypatch.setattr(report, "NO_BETTER_THAN_MEAN", 0.02)
    rep = evaluate(StandIn(3, 8, "constant"), val, train)
    text = "\n".join(rep.verdicts())
    assert "below 0.99" in text and "(< 50%)" in text and "R² within 0.02 of" in text
    assert "≥ 0.99" in rep.format_text() and "≥ 50% of dims" in rep.format_text()


def test_one_pass_measures_equal_the_float64_oracle(imc_patches):
    train, val = imc_patches
    model = StandIn(5, 8, "channel_mean")
    rep = evaluate(model, val, train, batch_size=100)
    rec, mu = model.reconstruct(torch.from_numpy(val))
    smooth = gaussian_smooth(val)
    pca = PCABaseline.fit(train, 5).reconstruct(val)
    mean = np.broadcast_to(train.mean(axis=0), val.shape)
    for got, (target, prediction) in [(rep.model, (val, rec)), (rep.model_smooth, (smooth, rec)),
                                      (rep.pca, (val, pca)), (rep.pca_smooth, (smooth, pca)),
                                      (rep.mean, (val, mean)), (rep.mean_smooth, (smooth, mean))]:
        for key in ("r2", "mse", "sharpness_ratio", "diversity_ratio", "cosine_loss"):
            value = getattr(oracle, key)(target, prediction)  # whole arrays, float64
            assert getattr(got, key) == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert rep.target_smoothness == pytest.approx(oracle.sharpness_ratio(val, smooth), rel=1e-5)
    assert rep.model.active_units == active_units(mu)


def test_nonfinite_pixels_leave_active_units_unchanged(imc_patches):
    """One NaN, one +Inf and one −Inf pixel in a real image's patches: 32/32 stays 32/32."""
    model_mod = pytest.importorskip("napari_imc_vae.engine.model.vae")
    train, val = imc_patches
    torch.manual_seed(0)
    model = model_mod.PatchVAE(model_mod.ModelConfig(in_channels=5, latent_dim=32, width=64))
    baseline = PCABaseline.fit(train, 32)
    clean = evaluate(model, val, baseline=baseline, baseline_source="train ROIs")
    dirty = val.copy()
    dirty[10, 0, 3, 3], dirty[50, 2, 0, 7], dirty[90, 4, 5, 1] = np.nan, np.inf, -np.inf
    rep = evaluate(model, dirty, baseline=baseline, baseline_source="train ROIs")
    assert clean.model.active_units == 32 and rep.model.active_units == 32
    assert "posterior_collapse" not in rep.problems and rep.n_skipped_nonfinite == 3
    assert rep.model.r2 == pytest.approx(clean.model.r2, abs=0.01)
    json.dumps(rep.to_dict(), allow_nan=False)


def test_a_pca_fitted_on_the_measured_patches_is_not_a_fair_baseline(imc_patches):
    """Why the baseline comes from the training patches: in-sample PCA scores higher on the same patches."""
    train, val = imc_patches
    in_sample = evaluate(StandIn(5, 8), val, val)
    held_out = evaluate(StandIn(5, 8), val, train)
    assert in_sample.pca.r2 > held_out.pca.r2 + 0.01


def test_a_broken_model_is_named_not_measured(smooth_set):
    train, val = smooth_set

    class Diverged(StandIn):
        def reconstruct(self, x):
            return torch.full_like(x, math.nan), x.mean(dim=(2, 3))

    rep = evaluate(Diverged(3, 8), val, train)
    assert rep.n_nonfinite_reconstructions == len(val) and "nonfinite_reconstruction" in rep.problems
    text = "\n".join(rep.verdicts())
    assert f"reconstruction of {len(val)} of {len(val)} patches holds NaN/Inf" in text
    assert "R² is undefined" in text and "nan" not in text.replace("NaN", "")
    json.dumps(rep.to_dict(), allow_nan=False)


def test_given_predictions_give_the_figures_of_running_the_model(smooth_set):
    train, val = smooth_set
    dirty = val.copy()
    dirty[2, 1, 4, 4] = np.inf  # the kept-patch indexing path
    model = StandIn(3, 8, "channel_mean")
    rec, mu = model.reconstruct(torch.nan_to_num(torch.from_numpy(dirty), posinf=0.0))
    ran = evaluate(model, dirty, train, batch_size=7)
    given = evaluate(model, dirty, train, batch_size=7, predictions=(rec.numpy(), mu))
    assert given.model == ran.model and given.model_smooth == ran.model_smooth and given.n_skipped_nonfinite == 1
    with pytest.raises(ValueError, match="predictions must be \\(recon, mu\\) for the 84 val_patches"):
        evaluate(model, dirty, train, predictions=(rec[:5], mu))
