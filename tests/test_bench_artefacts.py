"""The artefact bench (bench/artefacts.py): each kind injected where planned, and one tiny run's table."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import artefacts  # noqa: E402

from napari_imc_vae.io import read_imc  # noqa: E402
from napari_imc_vae.preprocessing import DEFAULT_NORMALIZATION, Normalizer  # noqa: E402
from napari_imc_vae.preprocessing.transforms import filter_hot_pixels  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
HELD = 3  # 20210305_NE_mockData2_001, 87×103 px


@pytest.fixture(scope="module")
def images(imc_testdata):
    return [read_imc(f) for f in sorted((imc_testdata / "steinbock_img").glob("*.ome.tiff"))]


def _neighbour_max(plane, y, x):
    window = plane[y - 1 : y + 2, x - 1 : x + 2].copy()
    window[1, 1] = -np.inf
    return window.max()


def test_each_kind_changes_only_its_own_pixels_by_its_own_rule(images):
    data = images[HELD].data
    planned = artefacts.plan_artefacts(data, np.random.default_rng(7))
    assert {k: sum(a.kind == k for a in planned) for k in artefacts.LOCAL_KINDS} == artefacts.COUNTS
    injected = artefacts.inject(data, planned)
    shape = data.shape[1:]
    footprints = np.zeros(data.shape, bool)
    p99 = np.percentile(data, 99, axis=(1, 2))
    filtered = filter_hot_pixels(injected, artefacts.HOT_PIXEL_T)
    for a in planned:
        m = a.mask(shape)
        assert m.sum() == {"hot_above": 1, "hot_below": 1, "streak": 40, "blob": 36, "dead": 100}[a.kind]
        # GAP px of untouched pixels around every artefact, none on the border
        ring = np.zeros(shape, bool)
        ring[max(0, a.y - 2) : a.y + a.height + 2, max(0, a.x - 2) : a.x + a.width + 2] = True
        assert not (ring & ~m & np.any([b.mask(shape) for b in planned if b is not a], axis=0)).any()
        assert 2 <= a.y and a.y + a.height <= shape[0] - 2 and 2 <= a.x and a.x + a.width <= shape[1] - 2
        if a.kind == "dead":
            footprints[:, m] = True
            assert (injected[:, m] == 0).all()
            continue
        footprints[a.channel, m] = True
        values = injected[a.channel][m]
        if a.kind == "hot_above":
            assert values[0] == pytest.approx(p99[a.channel] * 4 + 100)
            assert values[0] - _neighbour_max(injected[a.channel], a.y, a.x) > artefacts.HOT_PIXEL_T
            assert filtered[a.channel][m][0] < values[0]  # the filter replaces it
        elif a.kind == "hot_below":
            assert values[0] - _neighbour_max(injected[a.channel], a.y, a.x) == pytest.approx(40)
            assert filtered[a.channel][m][0] == values[0]  # the filter leaves it
        else:  # streak (one row) and blob: the channel raised by its p99, at least 5 counts
            assert np.allclose(values - data[a.channel][m], max(p99[a.channel], 5.0))
            if a.kind == "streak":
                assert a.height == 1 and a.width == 40
    assert np.array_equal(injected[~footprints], data[~footprints])  # nothing else moved


def test_spillover_leaks_five_percent_of_one_channel_into_the_next(images):
    data = images[HELD].data
    normalizer = Normalizer.fit([images[HELD]], **asdict(DEFAULT_NORMALIZATION))
    spilled, positives, negatives, c = artefacts.spillover(data, normalizer, np.random.default_rng(0))
    assert np.percentile(data[c], 99) >= 10
    assert np.allclose(spilled[c + 1], data[c + 1] + 0.05 * data[c])
    others = [k for k in range(data.shape[0]) if k != c + 1]
    assert np.array_equal(spilled[others], data[others])
    assert not (positives & negatives).any()
    assert (data[c][positives] > 0).all() and (data[c][negatives] == 0).all()
    assert 0.03 < positives.mean() < 0.06  # the top 5%, give or take ties
    # positives are where the leak adds most: the brightest source pixels
    assert data[c][positives].min() >= np.quantile(data[c], 0.9)


def test_one_tiny_run_scores_every_kind_and_writes_the_tables(images, tmp_path):
    row = artefacts.run_one(images, HELD, seed=0, steps=3, model_config={"width": 32})
    assert row["steps"] == 3 and row["hot_above_filtered"] == 1.0
    assert set(row["auroc"]) == {*artefacts.KINDS, "spillover_clean", "spillover_shift"}
    for kind, by_method in row["auroc"].items():
        assert set(by_method) == set(artefacts.SCORES)
        assert all(0.0 <= v <= 1.0 for v in by_method.values()), kind
    # hot pixels far above the filter's threshold stand out in every map, even untrained
    assert min(row["auroc"]["hot_above"].values()) > 0.9
    assert len(row["regions"]) == sum(artefacts.COUNTS.values())
    assert row["clean"]["pixels"] == 87 * 103 and row["clean"]["regions"] == len(row["clean"]["region_areas"])
    assert all(a >= 2 for a in row["clean"]["region_areas"])  # areas; single pixels are spikes, apart
    assert row["clean"]["spikes"] >= row["clean"]["hot_pixel_spikes"] >= 0
    assert all(j["rank"] is None or j["shape"] in ("single pixel", "line", "blob") for j in row["regions"])
    # injected hot pixels above T are single high pixels: isolated spikes, not regions (a 3-step model
    # misfits enough that a few touch another high pixel)
    hot = [j for j in row["regions"] if j["kind"] == "hot_above"]
    assert sum(j["spike"] for j in hot) >= len(hot) / 2 and sum(j["rank"] is None for j in hot) >= len(hot) / 2
    doc = tmp_path / "artefacts.md"
    doc.write_text(f"# Artefacts\n\nintro\n\n{artefacts.TABLE_START}\nstale table\n{artefacts.TABLE_END}\n\nconclusions\n")
    artefacts.write_markdown(doc, artefacts.markdown_tables([row, row]), "header")
    text = doc.read_text()
    assert text.startswith("# Artefacts\n\nintro") and text.rstrip().endswith("conclusions") and "stale table" not in text
    for kind in (*artefacts.KINDS, "spillover_clean", "spillover_shift"):
        assert artefacts.LABELS[kind] in text
    assert "± 0.000" in text  # two equal runs: spread 0
    assert f"| {artefacts.LABELS['hot_above']} | {artefacts.COUNTS['hot_above'] * 2} |" in text
