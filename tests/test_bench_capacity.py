"""The capacity bench's yardstick (bench/capacity.py): independent of the product, and right."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.decomposition import PCA

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import capacity  # noqa: E402
import capacity_summary  # noqa: E402

from napari_imc_vae.engine.quality.measures import reconstruction_measures  # noqa: E402
from napari_imc_vae.preprocessing import Normalizer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_pooled_r2_is_the_products_definition(rng):
    target = rng.normal(size=(3, 40, 40)) * np.array([1.0, 5.0, 0.1])[:, None, None]
    recon = target + rng.normal(scale=0.3, size=target.shape)
    product = reconstruction_measures(target[None], recon[None])["r2"]
    assert capacity.pooled_r2(target, recon) == pytest.approx(product, abs=1e-6)
    assert capacity.pooled_r2(target, target) == 1.0
    assert capacity.pooled_r2(target, np.broadcast_to(target.mean(axis=(1, 2), keepdims=True), target.shape)) \
        == pytest.approx(0.0, abs=1e-12)


def test_a_full_rank_pca_stitches_the_image_back_exactly(rng):
    image = rng.normal(size=(2, 30, 37)).astype(np.float32)
    patches = capacity.cut_patches(image, 4, 1)
    assert patches.shape == (27 * 34, 2, 4, 4)
    assert np.array_equal(patches[35], image[:, 1:5, 1:5])  # row-major over the stride grid
    pca = PCA(n_components=32).fit(patches.reshape(len(patches), -1))
    stitched = capacity.stitch_linear(pca, image, 4)
    np.testing.assert_allclose(stitched, image, atol=1e-4)  # the borders too (reflect padding)


def test_the_twin_has_the_real_rois_markers_at_their_mean_counts():
    twin, truth = capacity.synthetic_twin(0)
    assert twin.metals == list(capacity.TWIN_METALS) and twin.data.shape == truth.shape
    for i, metal in enumerate(capacity.TWIN_METALS):
        assert truth[i].mean() == pytest.approx(capacity.TWIN_MEANS[metal], rel=1e-3)
        assert twin.data[i].mean() == pytest.approx(capacity.TWIN_MEANS[metal], rel=0.05)
    assert np.array_equal(twin.data, np.round(twin.data))  # counts
    again, _ = capacity.synthetic_twin(0)
    assert np.array_equal(again.data, twin.data)


def test_filters_are_tuned_on_the_training_truth_and_denoise_the_held_out_image():
    made = [capacity.synthetic_twin(seed) for seed in (0, 1)]
    normalizer = Normalizer.fit([m[0] for m in made], hot_pixel_threshold=50.0, arcsinh_cofactor=5.0)
    held, truth = capacity.synthetic_twin(2)
    result = capacity.filter_baselines(normalizer, made, held.data, truth)
    counts = capacity.pooled_r2(normalizer(truth), normalizer(held.data))
    assert set(result) == {"gaussian_sigma1", "gaussian_tuned", "median3"}
    assert result["gaussian_tuned"]["param"] in capacity.SIGMAS
    assert result["gaussian_tuned"]["r2_truth"] >= result["gaussian_sigma1"]["r2_truth"] - 0.01
    # tuned on other images, they denoise this one (σ = 1 blurs more than it denoises at these counts)
    assert result["gaussian_tuned"]["r2_truth"] > counts and result["median3"]["r2_truth"] > counts


def test_one_tiny_run_and_its_summary(imc_testdata, tmp_path, monkeypatch, capsys):
    out = tmp_path / "runs.jsonl"
    monkeypatch.setattr(sys, "argv", ["capacity.py", "--data", "real", "--held", "3", "--steps", "3",
                                      "--latent", "4", "--out", str(out)])
    capacity.main()
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["held"] == "20210305_NE_mockData2_001" and row["steps"] == 3 and row["latent"] == 4
    assert 0 < row["model"]["active_units"] <= 4 and -1 < row["pca"]["r2"] < 1
    table = capacity_summary.real_table([row])
    assert table[2].startswith("| 4 | fb 2, β 0.001 | 3 | mlp | 1 |")
