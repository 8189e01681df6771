"""Regions of high error: a fixed threshold in noise SDs, ranked, shape guesses, channels named."""

import numpy as np
import pytest

from napari_imc_vae.engine.apply.error_unit import REGION_THRESHOLD, count_residual, pixel_error
from napari_imc_vae.engine.apply.regions import MIN_REGION_AREA, find_regions, find_spikes
from napari_imc_vae.engine.quality.summary import region_sentence


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
    assert len(regions) == 2  # counting noise alone flags nothing on 14,400 pixels; the hot pixel is a spike
    by_shape = {r["shape"]: r for r in regions}
    assert set(by_shape) == {"line", "blob"}
    assert by_shape["blob"]["area"] == 49 and by_shape["blob"]["channels"].split(";")[0] == "B"
    line = by_shape["line"]
    assert line["area"] == 40 and line["y"] == 60 and line["channels"].split(";")[0] == "C"
    assert line["y_um"] == 120.0
    assert [r["rank"] for r in regions] == list(range(1, len(regions) + 1))
    assert all(a["excess"] >= b["excess"] for a, b in zip(regions, regions[1:]))
    for r in regions:  # peak and mean are of the error map over the region, in its unit
        y0, x0, y1, x1 = r["bbox"]
        assert r["peak_error"] == pytest.approx(float(error[y0:y1, x0:x1].max()))
        assert r["mean_error"] > threshold
    spikes = find_spikes(error, residual, ["A", "B", "C"], pixel_size_um=2.0)
    assert len(spikes) == 1
    hot = spikes[0]
    assert (hot["y"], hot["x"], hot["y_um"]) == (10, 10, 20.0) and hot["channels"].startswith("A")
    assert hot["error"] == pytest.approx(float(error[10, 10])) and hot["hot_pixel"] is False


def test_a_single_high_pixel_is_a_spike_and_two_touching_ones_a_region():
    error = np.zeros((20, 20), np.float32)
    error[2, 2] = 9.0  # alone: an isolated spike
    error[10, 10] = error[11, 11] = 6.0  # diagonal neighbours (8-connected): an area of MIN_REGION_AREA px
    error[15, 3] = 7.0
    hot = np.zeros((20, 20), np.uint8)
    hot[15, 3] = 1  # the hot-pixel filter replaced a value here
    regions, _ = find_regions(error, None, [])
    assert MIN_REGION_AREA == 2 and [(r["area"], r["y"], r["x"]) for r in regions] == [(2, 10.5, 10.5)]
    spikes = find_spikes(error, None, [], hot_pixels=hot)
    assert [(s["y"], s["x"], s["error"], s["hot_pixel"]) for s in spikes] == [(2, 2, 9.0, False), (15, 3, 7.0, True)]
    assert find_spikes(error, None, [], threshold=8.0)[0]["y"] == 2 and len(find_spikes(error, None, [], threshold=8.0)) == 1
    with pytest.raises(ValueError, match=r"threshold must be a finite number > 0, got -1"):
        find_spikes(error, None, [], threshold=-1)


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
    assert threshold == 40.0 and regions == []  # only the hot pixel is that high: a spike, not an area
    spikes = find_spikes(error, None, [], threshold=40.0)
    assert [(s["y"], s["x"]) for s in spikes] == [(10, 10)] and spikes[0]["channels"] == ""
    with pytest.raises(ValueError, match=r"threshold must be a finite number > 0, got nan"):
        find_regions(error, None, [], threshold=float("nan"))


def test_the_report_counts_spikes_apart_from_the_areas():
    spikes = [{"y": 1, "x": 1, "hot_pixel": True}, {"y": 5, "x": 5, "hot_pixel": False},
              {"y": 7, "x": 2, "hot_pixel": False}]
    (none,) = region_sentence([], (50, 50), spikes, hot_pixel_threshold=50.0)
    assert none.startswith("No place looks like an artefact") and none.endswith(
        "Only 3 single pixels differ from the model far beyond counting noise: 1 is a hot pixel the hot-pixel "
        "filter replaced (more than 50 counts above its neighbours in a marker), 2 are isolated spikes it kept.")
    area = {"y": 25.0, "x": 25.0, "area": 12, "shape": "blob", "channels": "Sm147_Laminin"}
    (one,) = region_sentence([area], (50, 50), spikes[1:2], hot_pixel_threshold=50.0)
    assert one.startswith("1 place looks like an artefact") and "a patch of 12 px" in one
    assert one.endswith("Apart from these, 1 single pixel differs from the model far beyond counting noise: an "
                        "isolated spike the hot-pixel filter kept, as it stands no more than 50 counts above its "
                        "neighbours in any marker.")
    assert region_sentence([], (50, 50), [])[0].endswith("counting noise.")
