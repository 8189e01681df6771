"""The calibrated error unit: counting noise reads ~|Z|, artefacts stand out, one unit for everything;
the map users see (pixel and small windows) keeps it: faint areas gain, spikes and streaks stay sharp."""

import numpy as np
import pytest
from scipy.stats import norm

from napari_imc_vae.engine.apply import error_unit
from napari_imc_vae.engine.apply.error_unit import (
    ERROR_UNIT_NAME,
    ERROR_UNIT_SENTENCE,
    REGION_THRESHOLD,
    count_residual,
    dead_area_error,
    pixel_error,
)
from napari_imc_vae.engine.apply.multiscale_error import POOL_WINDOWS, multiscale_error, pooling_inflation
from napari_imc_vae.engine.apply.noise_model import estimate_noise
from napari_imc_vae.engine.apply.regions import find_regions, find_spikes


@pytest.fixture
def tissue_rate():
    """A smooth, tissue-like rate of 40 channels (0.5 … ~60 counts), (40, 160, 160) float32."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:160, :160] / 160.0
    bright = rng.uniform(2, 40, size=(40, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(40, 1, 1))
    return (0.5 + bright * (1 + np.sin(6 * yy + phase) * np.cos(5 * xx - phase)) / 2).astype(np.float32)


def test_poisson_counts_at_the_true_rate_read_as_one_noise_sd(tissue_rate):
    observed = np.random.default_rng(1).poisson(tissue_rate).astype(np.float32)
    r = count_residual(observed, tissue_rate)
    assert r.dtype == np.float32 and r.shape == observed.shape
    assert np.mean(np.abs(r)) == pytest.approx(0.8, abs=0.05)  # E|Z| = 0.798
    assert np.std(r) == pytest.approx(1.0, abs=0.05)
    assert abs(np.mean(r)) < 0.1
    e = pixel_error(r)
    assert e.shape == tissue_rate.shape[1:] and e.min() >= 0
    assert np.mean(e) == pytest.approx(0.8, abs=0.08)  # a pixel of 40 noisy channels reads like one |Z|
    regions, _ = find_regions(e, r, [f"c{i}" for i in range(40)])
    assert len(regions) <= 1  # 25,600 pixels: at most 1 region per 100,000 expected, none here


def test_overdispersed_counts_read_flat_once_the_noise_is_estimated(tissue_rate):
    rng = np.random.default_rng(2)
    a = np.linspace(0.0, 0.3, 40)
    # negative binomial of mean mu and variance mu + a mu² (a = 0: Poisson)
    n = 1.0 / np.maximum(a, 1e-9)[:, None, None]
    rate = tissue_rate + 10  # bright enough everywhere for the estimate (rates of 3 counts and more)
    observed = rng.poisson(rng.gamma(n, rate / n)).astype(np.float32)
    scale, dispersion = estimate_noise(observed, rate)
    assert dispersion.shape == scale.shape == (40,) and dispersion.min() >= 0 and scale.min() >= 1
    np.testing.assert_allclose(dispersion[20:], a[20:], rtol=0.3)
    assert np.corrcoef(dispersion, a)[0, 1] > 0.9
    assert np.median(scale) < 1.15 and scale.max() < 1.7  # φ and a trade off a little within a channel
    r = count_residual(observed, rate, dispersion, scale=scale)
    assert np.std(r) == pytest.approx(1.0, abs=0.06)
    poisson = count_residual(observed, rate)
    assert np.std(poisson[30:]) > 1.5  # without it the bright overdispersed channels look noisy


def test_values_in_units_finer_than_one_ion_are_scaled(tissue_rate):
    """IMC's values vary more than whole ions would: y = φ·Poisson(mu/φ) reads flat with the estimated φ."""
    rate = tissue_rate + 5
    observed = (2.5 * np.random.default_rng(3).poisson(rate / 2.5)).astype(np.float32)
    scale, dispersion = estimate_noise(observed, rate)
    np.testing.assert_allclose(scale, 2.5, rtol=0.2)
    assert dispersion.max() < 0.02
    r = count_residual(observed, rate, dispersion, scale=scale)
    assert np.mean(np.abs(r)) == pytest.approx(0.8, abs=0.08)
    assert np.std(count_residual(observed, rate)) > 1.4  # as whole ions they would look noisy


def test_a_channel_the_model_hallucinates_or_misses_is_not_taken_as_noise(tissue_rate):
    """The noise model is the data's, not the model's misfit: a channel the model predicts where the image has
    almost nothing, or predicts 3 times too low, keeps counting noise, so the misfit shows in the residual
    (fitted on the model's residuals alone: φ 6.8, a 10 and φ 17, medians -0.75 and 0.59)."""
    rng = np.random.default_rng(5)
    rate = tissue_rate[:3] + 5
    observed = rng.poisson(rate).astype(np.float32)
    observed[1] = rng.poisson(0.2, size=observed[1].shape)  # the image has almost nothing here
    predicted = rate.copy()
    predicted[2] = rate[2] / 3  # the model misses two thirds of the counts
    scale, dispersion = estimate_noise(observed, predicted)
    assert scale[0] < 1.2 and dispersion[0] < 0.02  # the channel it explains: counting noise
    assert scale[1] == 1.0 and dispersion[1] == 0.0  # no bright pixels in the data: Poisson
    assert scale[2] < 1.3 and dispersion[2] < 0.02  # the data's own pixel-to-pixel variability
    r = count_residual(observed, predicted, dispersion, scale=scale)
    assert np.median(r[1]) < -3 and np.median(r[2]) > 2 and np.mean(np.abs(r[0])) == pytest.approx(0.8, abs=0.08)


def test_a_dead_area_in_tissue_stands_out_and_background_does_not():
    rng = np.random.default_rng(4)
    rate = np.zeros((5, 60, 60), np.float32)
    rate[:, :, 20:] = 8.0  # tissue on the right, empty background on the left
    observed = rng.poisson(rate).astype(np.float32)
    observed[:, 30:40, 40:50] = 0  # the detector recorded nothing here
    observed[:, 5:8, 40:43] = 0  # a 3×3 gap: below DEAD_MIN_AREA? no, 9 px: also a dead-area candidate
    dead = dead_area_error(observed)
    assert dead[30:40, 40:50].min() > REGION_THRESHOLD  # exp(−40) for one pixel at 5 × 8 counts
    assert (dead[:, :18] == 0).all()  # the background touches the border: not enclosed, not dead
    r = count_residual(observed, np.where(observed > 0, rate, 0.0))  # a model that copies zeros
    e = pixel_error(r, dead)
    assert e[35, 45] == pytest.approx(dead[35, 45]) and np.median(e[:, :18]) < 1


def test_sign_and_magnitude_of_one_channel_artefact_among_40():
    rate = np.full((40, 1, 3), 10.0, np.float32)
    observed = rate.copy()
    observed[7, 0, 0] = 60.0  # more counts measured than predicted
    observed[7, 0, 1] = 0.0  # counts predicted that are not there
    r = count_residual(observed, rate)
    assert r[7, 0, 0] > 9 and r[7, 0, 1] == pytest.approx(-np.sqrt(20.0), rel=1e-5)  # deviance of 0: 2·mu
    assert np.allclose(np.delete(r, 7, axis=0), 0.0)
    e = pixel_error(r)
    assert e[0, 2] == pytest.approx(0.0, abs=1e-6)
    assert e[0, 0] > 0.9 * abs(r[7, 0, 0])  # not averaged away over 40 channels
    one = pixel_error(r[7:8])
    np.testing.assert_allclose(one, np.abs(r[7:8]).max(axis=0), rtol=1e-5, atol=1e-6)  # one channel: |r|


def test_the_rate_floor_keeps_zero_rates_finite():
    rate = np.zeros((2, 1, 2), np.float32)
    observed = np.array([[[0.0, 1.0]], [[0.0, 3.0]]], np.float32)
    r = count_residual(observed, rate)
    assert np.all(np.isfinite(r))
    assert r[0, 0, 0] == pytest.approx(-np.sqrt(2 * error_unit.RATE_FLOOR), rel=1e-5)
    assert 0 < r[0, 0, 1] < r[1, 0, 1] < 10


def test_far_tails_stay_finite_and_ordered():
    r = np.zeros((40, 1, 4), np.float32)
    r[0, 0] = [5.0, 20.0, 60.0, 200.0]
    e = pixel_error(r)
    assert np.all(np.isfinite(e)) and np.all(np.diff(e[0]) > 0)
    assert e[0, 3] == pytest.approx(200.0, rel=0.01)


def test_nan_channels_are_left_out_and_a_pixel_with_none_is_nan():
    observed = np.array([[[np.nan, 5.0]], [[np.nan, np.inf]]], np.float32)
    rate = np.full((2, 1, 2), 5.0, np.float32)
    r = count_residual(observed, rate)
    assert np.isnan(r[:, 0, 0]).all() and np.isnan(r[1, 0, 1]) and r[0, 0, 1] == 0.0
    e = pixel_error(r)
    assert np.isnan(e[0, 0]) and e[0, 1] == pytest.approx(0.0, abs=1e-6)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"observed and predicted must have the same shape .* got \(2, 3\) and \(2, 4\)"):
        count_residual(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"dispersion must be 2 finite values >= 0"):
        count_residual(np.zeros((2, 3)), np.zeros((2, 3)), [0.1, -1.0])
    with pytest.raises(ValueError, match=r"scale must be 2 finite values > 0"):
        count_residual(np.zeros((2, 3)), np.zeros((2, 3)), scale=[1.0, 0.0])
    with pytest.raises(TypeError, match=r"observed must hold real numbers, got dtype <U1"):
        count_residual(np.array([["a"]]), np.zeros((1, 1)))
    with pytest.raises(ValueError, match=r"residual must have shape \(C, Y, X\) or \(C, N\), got shape \(3,\)"):
        pixel_error(np.zeros(3))


def test_the_sentence_names_the_threshold_and_the_unit():
    assert f"{REGION_THRESHOLD:g}" in ERROR_UNIT_SENTENCE and "noise" in ERROR_UNIT_SENTENCE
    assert ERROR_UNIT_NAME == "noise SD"


# -- the map users see: the pixel and the windows around it (engine/apply/multiscale_error.py) --


def test_the_multiscale_map_keeps_the_unit_on_poisson_counts(tissue_rate):
    observed = np.random.default_rng(1).poisson(tissue_rate).astype(np.float32)
    r = count_residual(observed, tissue_rate)
    inflation = pooling_inflation(r, tissue_rate)
    assert inflation.shape == (len(POOL_WINDOWS), 40) and inflation.max() < 1.25  # independent noise: ~1
    e = multiscale_error(r, inflation=inflation)
    assert e.shape == (160, 160) and e.dtype == np.float32 and e.min() >= 0
    assert (e >= pixel_error(r)).all()  # the pixel's own evidence is never lost
    assert np.mean(e) == pytest.approx(0.85, abs=0.1)  # a noise pixel reads like |Z| (0.8), a little more
    for level in (2.0, 3.0):  # the tail: at most 1.5 times |Z|'s (plus sampling error)
        assert np.mean(e > level) < 1.5 * 2 * norm.sf(level) * 1.25
    regions, _ = find_regions(e, r, [f"c{i}" for i in range(40)])
    assert regions == [] and find_spikes(e, r, [f"c{i}" for i in range(40)]) == []


def test_a_faint_blob_no_pixel_shows_is_found_as_a_region():
    rng = np.random.default_rng(2)
    rate = np.full((5, 80, 80), 20.0, np.float32)
    observed = rng.poisson(rate).astype(np.float32)
    observed[3, 30:36, 40:46] += 8  # +1.8 noise SD per pixel: lost in the noise pixel by pixel
    r = count_residual(observed, rate)
    single = pixel_error(r)
    assert find_regions(single, r, list("ABCDE"))[0] == []
    e = multiscale_error(r, inflation=pooling_inflation(r, rate))
    regions, _ = find_regions(e, r, list("ABCDE"))
    assert len(regions) == 1 and regions[0]["channels"].split(";")[0] == "D"
    y0, x0, y1, x1 = regions[0]["bbox"]
    assert 27 <= y0 and y1 <= 39 and 37 <= x0 and x1 <= 49  # on the blob, not spread far around it


def test_a_hot_pixel_stays_a_spike_and_a_streak_stays_sharper_than_its_rows():
    rng = np.random.default_rng(3)
    rate = np.full((5, 60, 60), 10.0, np.float32)
    observed = rng.poisson(rate).astype(np.float32)
    observed[1, 10, 10] = 400.0  # ~50 noise SD in one pixel: its windows must not light up
    observed[2, 40, 10:50] += 12  # a one-row streak, ~3 noise SD per pixel
    r = count_residual(observed, rate)
    e = multiscale_error(r)
    assert e[10, 10] == pytest.approx(pixel_error(r)[10, 10])
    assert e[8:13, 8:13].ravel().tolist().count(e[10, 10]) == 1 and np.sort(e[8:13, 8:13].ravel())[-2] < REGION_THRESHOLD
    spikes = find_spikes(e, r, list("ABCDE"))
    assert [(s["y"], s["x"]) for s in spikes if s["y"] != 40] == [(10, 10)]  # (the streak may break in pieces)
    assert all(s["channels"].startswith("C") for s in spikes if s["y"] == 40)
    streak, above, below = e[40, 15:45], e[39, 15:45], e[41, 15:45]
    assert np.median(streak) > REGION_THRESHOLD and np.median(streak) > 1.5 * max(np.median(above), np.median(below))


def test_spatially_correlated_misfit_is_discounted():
    """A model that misses a smooth pattern: pooled sums vary more than independent noise; the
    measured inflation takes that out, so the smooth misfit is not flagged as areas."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:120, :120]
    true = 30 * (1 + 0.25 * np.sin(yy / 4.0) * np.cos(xx / 5.0))
    observed = rng.poisson(np.broadcast_to(true, (3, 120, 120))).astype(np.float32)
    rate = np.full((3, 120, 120), 30.0, np.float32)  # the model predicts the mean only
    r = count_residual(observed, rate)
    inflation = pooling_inflation(r, rate)
    assert inflation[-1].min() > 1.5  # the 7×7 window's sums vary far more than independent noise
    plain = multiscale_error(r)
    discounted = multiscale_error(r, inflation=inflation)
    assert (discounted <= plain + 1e-6).all()
    assert (discounted > REGION_THRESHOLD).mean() < 0.25 * max((plain > REGION_THRESHOLD).mean(), 1e-9)


def test_multiscale_nan_and_bad_input():
    r = np.zeros((2, 10, 10), np.float32)
    r[:, 0, 0] = np.nan
    e = multiscale_error(r)
    assert np.isnan(e[0, 0]) and np.isfinite(e[1:]).all()
    with pytest.raises(ValueError, match=r"inflation must be values >= 1 of shape \(5, 2\), got \(5, 3\)"):
        multiscale_error(r, inflation=np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"residual must have shape \(C, Y, X\), got shape \(10, 10\)"):
        multiscale_error(r[0])
    with pytest.raises(ValueError, match=r"residual and rate must have the same shape \(C, Y, X\)"):
        pooling_inflation(r, r[:1])
