"""The ablation bench (bench/ablation.py): the settings the issue asks for, fair units, the figure."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import ablation  # noqa: E402
from ablation_figure import save_figure  # noqa: E402

from napari_imc_vae.datasets import synthetic_tissue  # noqa: E402
from napari_imc_vae.engine.model.critic import CriticConfig  # noqa: E402
from napari_imc_vae.engine.training.run import DEFAULT_NORMALIZATION  # noqa: E402
from napari_imc_vae.io import ImcImage  # noqa: E402


def test_settings_are_the_reference_before_after_and_one_term_removed_each():
    by_key = {s.key: s for s in ablation.SETTINGS}
    before = by_key["before"]
    assert not before.normalize
    assert asdict(before.critic) == dict(cosine_weight=0.0, gradient_weight=0.0, kld_scale=1e-4, free_bits=0.5,
                                         perm_loss_scale=0.0, kl_target=0.0)
    assert by_key["norm"].normalize and by_key["norm"].critic == before.critic
    assert by_key["after"].critic == CriticConfig.reference()
    full = asdict(CriticConfig.reference())
    for key, term in [("no_cosine", "cosine_weight"), ("no_gradient", "gradient_weight"), ("no_perm", "perm_loss_scale")]:
        changed = {k for k, v in asdict(by_key[key].critic).items() if v != full[k]}
        assert changed == {term} and getattr(by_key[key].critic, term) == 0.0


def test_raw_reconstructions_are_measured_in_the_normalized_units():
    image = synthetic_tissue((48, 48), n_channels=6, seed=2)
    split = ablation.prepare_split([image], image, DEFAULT_NORMALIZATION, patch=8, latent=4)
    to_eval = ablation.without_hot_pixel_filter(split.reference)
    raw_patches = ablation.cut_patches(image.data, 8, 4)
    mapped = ablation.patches_through(to_eval, raw_patches)
    # a perfect raw reconstruction maps onto the target except where the hot-pixel filter acted
    same = np.isclose(mapped, split.x_val, atol=1e-5)
    assert same.mean() > 0.99
    assert split.x_val.shape == (121, 6, 8, 8) and split.pca.k == 4


def test_one_setting_trains_and_is_measured_like_pca(tmp_path):
    images = [synthetic_tissue((40, 40), n_channels=5, seed=s) for s in range(3)]
    data = ablation.Dataset("t", "tiny", [(images[:2], images[2])], DEFAULT_NORMALIZATION, steps=3, batch=16)
    split = ablation.prepare_split(images[:2], images[2], DEFAULT_NORMALIZATION, 8, 8)
    args = argparse.Namespace(lr=1e-3, seed=0, latent=8, patch=8)
    rows = {"pca": ablation.run_pca(split, 8)}
    for s in ablation.SETTINGS[:2]:
        rows[s.key] = ablation.run_setting(s, images[:2], split, data, args)
        assert rows[s.key]["steps"] == 3 and 0 <= rows[s.key]["perm_accuracy"] <= 1
        assert np.isfinite(rows[s.key]["r2"]) and rows[s.key]["r2"] < rows["pca"]["r2"]  # 3 steps learn little
        assert split.images[s.key].shape == images[2].data.shape
    assert rows["pca"]["r2"] > 0.3
    held = {"held": images[2].name}
    table = ablation.markdown_table({k: [v | held] for k, v in rows.items()},
                                    {"pca": "PCA"} | {s.key: s.label for s in ablation.SETTINGS}, reference="before")
    assert table.count("\n") == 2 + 2 and "PCA" in table and "nan" not in table
    delta = rows["norm"]["r2"] - rows["before"]["r2"]
    norm_row = next(line for line in table.splitlines() if line.startswith("| 2. + normalization"))
    assert f"| {delta:+.3f} |" in norm_row  # the paired column
    png = tmp_path / "f.png"
    save_figure(png, split.target_image, split.images, [(k, k) for k in rows], title="tiny")
    with Image.open(png) as im:
        assert im.width > 3 * 40 and im.height > 3 * 40


def test_markdown_keeps_the_hand_written_conclusions(tmp_path):
    doc = tmp_path / "ablation.md"
    ablation.write_markdown(doc, ["first table"])
    doc.write_text(doc.read_text() + "\n## Conclusions\nwritten by hand\n")
    ablation.write_markdown(doc, ["second table"])
    text = doc.read_text()
    assert "second table" in text and "first table" not in text and "written by hand" in text


def test_a_failed_setting_is_a_row_not_a_crash():
    table = ablation.markdown_table({"before": [{"failed": "the loss became nan at step 3", "train_s": 1.0}]},
                                    {"before": "1. before"})
    assert "1 of 1 runs failed: the loss became nan at step 3" in table


@pytest.mark.skipif(not ablation.DATA.is_dir(), reason="needs ../shared/data/imc-testdata beside the project")
def test_imc_dataset_holds_out_whole_rois():
    data = ablation.imc_dataset([3, 7], steps=1)
    for train, held in data.splits:
        assert len(train) == 14 and held.name not in {im.name for im in train}
    assert isinstance(data.splits[0][1], ImcImage)


def test_our_candidate_row_drops_exactly_cosine_and_gradient():
    ours = {s.key: s for s in ablation.SETTINGS}["mse_kld_perm"]
    assert ours.normalize and ours.critic == CriticConfig(cosine_weight=0.0, gradient_weight=0.0)
    assert {s.key: s for s in ablation.SETTINGS}["no_gradient"].critic == CriticConfig()  # row 5 is the default


def test_render_only_rebuilds_tables_and_figures_from_a_saved_run(tmp_path, monkeypatch):
    monkeypatch.setattr(ablation, "ARRAYS", tmp_path / "arrays")
    (tmp_path / "arrays").mkdir()
    target = np.random.default_rng(0).normal(size=(4, 20, 20)).astype(np.float32)
    np.savez_compressed(tmp_path / "arrays" / "doc_imc.npz", target=target, after=target * 0.5)
    rows = {"after": [{"held": "a", "r2": 0.5}, {"held": "b", "r2": 0.7}],
            "pca": [{"held": "a", "r2": 0.4}, {"held": "b", "r2": 0.5}]}
    run = {"command": "python bench/ablation.py", "machine": "m", "date": "d", "minutes": 1.0,
           "results": {"imc": {"title": "T", "steps": 5, "batch": 8, "held_label": "held-out ROI", "held": ["a", "b"],
                               "figure_held": "a", "labels": {"after": "3. after", "pca": "PCA"}, "rows": rows}}}
    doc = tmp_path / "doc.md"
    ablation.render(doc, run)
    text = doc.read_text()
    assert "| 3. after | 0.600 ± 0.100 |" in text
    assert "| -0.150 ± 0.050 |" in text  # PCA's R² paired with row 3: (0.4-0.5, 0.5-0.7)
    assert (tmp_path / "doc_imc.png").exists() and "![input, reconstruction and error per setting](doc_imc.png)" in text
