"""Regions of high error: a fixed threshold in noise SDs, ranked, shape guesses, channels named."""

import numpy as np
import pytest

from napari_imc_vae.engine.error_unit import REGION_THRESHOLD, count_residual, pixel_error
from napari_imc_vae.engine.regions import find_regions


@pytest.fixture
def counts():
    """Poisson counts of 3 channels at a smooth rate with three injected artefacts: (observed, rate)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:120, :120]
    rate = np.stack([2 + 20 * np.exp(-((yy - 60) ** 2 + (xx - 50) ** 2) / 800.0),
                     np.full((120, 120), 5.0), 1 + 0.1 * xx]).astype(np.float64)
    observed = rng.poisson(rate).astype(np.float32)
    observed[0, 10, 10] += 300  # a hot pixel
    observed[2, 60, 20:60] += 40  # a row streak in channel C
    observed[1, 90:97, 90:97] += 30  # a misstained blob in channel B
    return observed, rate.astype(np.float32)


def test_regions_are_ranked_and_shaped(counts):
    observed, rate = counts
    residual = count_residual(observed, rate)
    error = pixel_error(residual)
    regions, threshold = find_regions(error, residual, ["A", "B", "C"], pixel_size_um=2.0)
    assert threshold == REGION_THRESHOLD
    assert len(regions) == 3  # counting noise alone flags nothing on 14,400 pixels
    by_shape = {r["shape"]: r for r in regions}
    assert set(by_shape) == {"single pixel", "line", "blob"}
    assert by_shape["blob"]["area"] == 49 and by_shape["blob"]["channels"].split(";")[0] == "B"
    line = by_shape["line"]
    assert line["area"] == 40 and line["y"] == 60 and line["channels"].split(";")[0] == "C"
    assert line["y_um"] == 120.0
    hot = by_shape["single pixel"]
    assert (hot["y"], hot["x"], hot["area"]) == (10, 10, 1) and hot["channels"].startswith("A")
    assert hot["peak_error"] == pytest.approx(float(error[10, 10]))
    assert [r["rank"] for r in regions] == list(range(1, len(regions) + 1))
    assert all(a["excess"] >= b["excess"] for a, b in zip(regions, regions[1:]))
    for r in regions:  # peak and mean are of the error map over the region, in its unit
        y0, x0, y1, x1 = r["bbox"]
        assert r["peak_error"] == pytest.approx(float(error[y0:y1, x0:x1].max()))
        assert r["mean_error"] > threshold


def test_no_region_on_counting_noise_and_nan_is_left_out():
    rng = np.random.default_rng(1)
    rate = rng.gamma(2.0, 5.0, size=(5, 200, 200)).astype(np.float32)
    observed = rng.poisson(rate).astype(np.float32)
    observed[:, :3] = np.nan
    error = pixel_error(count_residual(observed, rate))
    regions, threshold = find_regions(error, None, [])
    assert regions == [] and threshold == REGION_THRESHOLD
    assert np.isnan(error[:3]).all()


def test_a_threshold_of_the_caller(counts):
    observed, rate = counts
    error = pixel_error(count_residual(observed, rate))
    regions, threshold = find_regions(error, None, [], threshold=40.0)
    assert threshold == 40.0 and [r["area"] for r in regions] == [1]  # only the hot pixel
    assert regions[0]["channels"] == ""
    with pytest.raises(ValueError, match=r"threshold must be a finite number > 0, got nan"):
        find_regions(error, None, [], threshold=float("nan"))
