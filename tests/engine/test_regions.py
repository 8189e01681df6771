"""Regions of high error: threshold from the error's own distribution, ranked, shape guesses."""

import numpy as np
import pytest

from napari_imc_vae.engine.regions import error_threshold, find_regions


@pytest.fixture
def error_map():
    rng = np.random.default_rng(0)
    e = rng.lognormal(mean=-2.0, sigma=0.5, size=(120, 120)).astype(np.float32)
    e[10, 10] = 50.0  # a hot pixel
    e[60, 20:60] = 8.0  # a row streak
    e[90:97, 90:97] = 20.0  # a misstained blob
    return e


def test_threshold_reads_the_error_distribution(error_map):
    t = error_threshold(error_map)
    clean = np.random.default_rng(1).lognormal(-2.0, 0.5, 100_000)
    assert (clean > error_threshold(clean)).mean() < 1e-3  # a clean map flags almost nothing
    assert t < 8.0  # every injected artefact is above it
    assert error_threshold(np.full((4, 4), np.nan)) == np.inf
    assert error_threshold(np.zeros((4, 4))) == np.inf  # reproduced exactly: nothing is high
    covered = error_map.copy()
    covered[:5] = 30.0  # an artefact over 4% of the image does not hide itself
    assert error_threshold(covered) < 30.0


def test_regions_are_ranked_and_shaped(error_map):
    channel_error = np.ones((3, 120, 120), np.float32)
    channel_error[2, 60, 20:60] = 9.0  # the streak is in channel C
    regions, threshold = find_regions(error_map, channel_error, ["A", "B", "C"], pixel_size_um=2.0)
    assert threshold == pytest.approx(error_threshold(error_map))
    by_shape = {r["shape"]: r for r in regions[:3]}
    assert set(by_shape) == {"single pixel", "line", "blob"}
    assert regions[0]["shape"] == "blob" and regions[0]["area"] == 49  # most excess error first
    line = by_shape["line"]
    assert line["area"] == 40 and line["y"] == 60 and line["channels"].split(";")[0] == "C"
    assert line["y_um"] == 120.0
    hot = by_shape["single pixel"]
    assert (hot["y"], hot["x"], hot["area"]) == (10, 10, 1) and hot["peak_error"] == 50.0
    assert [r["rank"] for r in regions] == list(range(1, len(regions) + 1))
    assert all(a["excess"] >= b["excess"] for a, b in zip(regions, regions[1:]))


def test_no_region_on_a_flat_map():
    regions, threshold = find_regions(np.full((20, 20), 0.1, np.float32), None, [])
    assert regions == [] and threshold == pytest.approx(0.3)
