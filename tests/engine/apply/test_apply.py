"""Applying a model (engine.apply.use_case): one home for the CLI and the widget, a fair baseline, motifs."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import tifffile
import torch

from napari_imc_vae.cli import main
from napari_imc_vae.engine.apply.use_case import ApplySettings, apply_to_image, assess_image, steinbock_names
from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
from napari_imc_vae.engine.training.trainer import TrainConfig
from napari_imc_vae.engine.data.content import ImageContentError
from napari_imc_vae.engine.training.run import TrainingRun
from napari_imc_vae.io import ImcImage, read_imc

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN = ("20210305_NE_mockData2_001", "20210305_NE_mockData3_001")
HELD_OUT = "20210305_NE_mockData5_003"


def _read(imc_testdata, stem: str) -> ImcImage:
    return read_imc(imc_testdata / "steinbock_img" / f"{stem}.ome.tiff")


@pytest.fixture(scope="module")
def trained_on_two(imc_testdata, tmp_path_factory):
    """A small model trained on two real ROIs, saved: (path, TrainedModel)."""
    torch.set_num_threads(1)
    images = [_read(imc_testdata, s) for s in TRAIN]
    trained, _ = TrainingRun(
        images, model_config={"latent_dim": 8, "width": 64, "depth": 1},
        train_config=TrainConfig(steps=150, batch_size=128, device="cpu", seed=0),
    ).run()
    path = trained.save(tmp_path_factory.mktemp("model") / "m.pt")
    return path, TrainedModel.load(path)


def test_the_model_file_stores_the_training_baseline(trained_on_two):
    path, trained = trained_on_two
    assert trained.baseline is not None and trained.baseline.k == 8
    info = trained.baseline_info
    assert info["images"] == list(TRAIN) and info["n_patches"] > 1000
    assert "training patches" in trained.baseline_source and TRAIN[0] in trained.baseline_source
    assert path.stat().st_size < 3_000_000
    d = torch.load(path, weights_only=True)  # plain data only
    assert torch.equal(d["baseline"]["components"].float(), trained.baseline.components.float())


def test_a_model_file_without_a_baseline_loads_and_gives_no_verdict_against_pca(trained_on_two, imc_testdata):
    path, _ = trained_on_two
    d = torch.load(path, weights_only=True)
    del d["baseline"]  # the format of model files written before baselines were stored
    d["format_version"], _ = 1, d.pop("content_sha256")  # ... and before the content hash
    old = TrainedModel.from_dict(d, source="old.pt")
    assert old.baseline is None
    report, quality = assess_image(old, _read(imc_testdata, HELD_OUT))
    assert "none stored" in quality["baseline"]
    text = " ".join(report.verdicts())
    assert "no stored baseline" in text.lower() or "baseline" in text.lower()
    assert "Beats PCA" not in text and "Falls short of PCA" not in text
    assert quality["report"]["pca"]["r2"] is None and quality["report"]["model"]["r2"] is not None


def _patches(norm: np.ndarray, p: int = 8, stride: int = 4) -> np.ndarray:
    w = np.lib.stride_tricks.sliding_window_view(norm, (p, p), axis=(1, 2))[:, ::stride, ::stride]
    return w.transpose(1, 2, 0, 3, 4).reshape(-1, norm.shape[0], p, p)


def _pooled_r2(x: np.ndarray, x_hat: np.ndarray) -> float:
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    return 1.0 - float(((x - x_hat) ** 2).sum() / ((x - mean) ** 2).sum())


def test_the_verdict_on_an_unseen_image_matches_an_independent_pca_fitted_on_the_training_images(
        trained_on_two, imc_testdata):
    """ΔR² against PCA: the report's (stored baseline) vs scikit-learn PCA on the training images."""
    from sklearn.decomposition import PCA

    _, trained = trained_on_two
    held = _read(imc_testdata, HELD_OUT)
    report, _ = assess_image(trained, held)
    train_x = np.concatenate([_patches(trained.normalizer(_read(imc_testdata, s))) for s in TRAIN])
    test_x = _patches(trained.normalizer(held))
    pca = PCA(n_components=8).fit(train_x.reshape(len(train_x), -1))
    pca_rec = pca.inverse_transform(pca.transform(test_x.reshape(len(test_x), -1))).reshape(test_x.shape)
    with torch.no_grad():
        model_rec = trained.model.eval().reconstruct(torch.from_numpy(test_x))[0].numpy()
    independent = _pooled_r2(test_x, model_rec) - _pooled_r2(test_x, pca_rec)
    reported = report.model.r2 - report.pca.r2
    assert abs(reported - independent) <= 0.03, (reported, independent)
    assert np.sign(reported) == np.sign(independent) or abs(independent) < 0.03


def test_nonfinite_pixels_are_left_out_and_counted(trained_on_two, imc_testdata):
    _, trained = trained_on_two
    clean = _read(imc_testdata, HELD_OUT)
    data = clean.data.copy()
    data[0, 10, 10], data[1, 30, 40], data[2, 50, 60] = np.nan, np.inf, -np.inf
    with warnings.catch_warnings():  # the NaN/Inf warning is the reader's business, not this test's
        warnings.simplefilter("ignore")
        dirty = ImcImage(data, clean.channel_names, metals=clean.metals, source="dirty.ome.tiff")
    report_dirty, q_dirty = assess_image(trained, dirty)
    report_clean, _ = assess_image(trained, clean)
    assert report_dirty.model.active_units == report_clean.model.active_units > 0
    assert "posterior_collapse" not in report_dirty.problems
    assert 3 <= q_dirty["n_skipped_nonfinite"] <= 3 * 4  # each pixel lies in at most 4 stride-4 patches
    assert abs(report_dirty.model.r2 - report_clean.model.r2) < 0.01


def test_an_image_without_signal_is_refused_before_any_work(trained_on_two, imc_testdata, tmp_path, capsys):
    path, trained = trained_on_two
    like = _read(imc_testdata, HELD_OUT)
    for kind, value in (("no finite pixel", np.nan), ("is constant", 7.0)):
        data = np.full(like.shape, value, np.float32)
        image = ImcImage(data, like.channel_names, metals=like.metals, source=f"{kind[:2]}.ome.tiff")
        with pytest.raises(ImageContentError, match=kind):
            apply_to_image(trained, image)
        with pytest.raises(ImageContentError, match=kind):
            TrainingRun([image], train_config=TrainConfig(steps=1, device="cpu"))
        file = tmp_path / f"blank_{kind[:2]}.ome.tiff"
        tifffile.imwrite(file, data, metadata={"axes": "CYX", "Channel": {"Name": [
            f"{m}_{n}" for m, n in zip(like.channel_keys, like.channel_names)]}})
        for argv in (["train", str(file), "-o", str(tmp_path / "x.pt"), "--steps", "1"],
                     ["reconstruct", str(path), str(file), "-o", str(tmp_path / "out")],
                     ["quality", str(path), str(file)]):
            assert main(argv) == 1
            err = capsys.readouterr().err
            assert kind in err and file.name in err and "Traceback" not in err
        assert not (tmp_path / "x.pt").exists() and not any((tmp_path / "out").glob("*"))


def test_cli_and_widget_give_identical_arrays_motifs_and_figures(trained_on_two, imc_testdata, tmp_path, capsys):
    from napari_imc_vae._napari.reconstruct_task import run_reconstruction
    from napari_imc_vae.engine.apply.motifs import upsample_grid

    path, _ = trained_on_two
    file = imc_testdata / "steinbock_img" / f"{HELD_OUT}.ome.tiff"
    assert main(["reconstruct", str(path), str(file), "-o", str(tmp_path), "--device", "cpu"]) == 0
    capsys.readouterr()
    widget = run_reconstruction(TrainedModel.load(path), read_imc(file), k=6, stride=None)
    stem = HELD_OUT
    np.testing.assert_array_equal(tifffile.imread(tmp_path / f"{stem}_recon.ome.tiff"), widget.raw)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / f"{stem}_error.tiff"), widget.error)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / f"{stem}_latent.tiff"), widget.latent)
    grid = tifffile.imread(tmp_path / f"{stem}_motifs.tiff")
    np.testing.assert_array_equal(upsample_grid(grid, widget.stride, widget.image.shape[1:]), widget.motifs)
    cli_quality = json.loads((tmp_path / f"{stem}_quality.json").read_text())
    widget_quality = json.loads(json.dumps(widget.quality))
    assert cli_quality["report"] == widget_quality["report"]
    assert cli_quality["report"]["model"]["r2"] == pytest.approx(widget.report.model.r2)
    assert "training patches" in widget.report_text


def test_reconstruct_writes_motifs_and_physical_pixel_sizes(trained_on_two, imc_testdata, tmp_path, capsys):
    path, trained = trained_on_two
    file = imc_testdata / "steinbock_img" / f"{HELD_OUT}.ome.tiff"
    assert main(["reconstruct", str(path), str(file), "-o", str(tmp_path), "--motifs", "4", "--stride", "2"]) == 0
    capsys.readouterr()
    image = read_imc(file)
    stem = HELD_OUT
    labels = tifffile.imread(tmp_path / f"{stem}_motifs.tiff")
    latent = tifffile.imread(tmp_path / f"{stem}_latent.tiff")
    assert labels.dtype == np.int32 and labels.shape == latent.shape[1:]
    assert set(np.unique(labels)) <= {1, 2, 3, 4} and labels.min() == 1
    for name, size in (("motifs.tiff", 2.0), ("latent.tiff", 2.0), ("error.tiff", 1.0), ("recon.ome.tiff", 1.0)):
        with tifffile.TiffFile(tmp_path / f"{stem}_{name}") as tf:
            assert f'PhysicalSizeX="{image.pixel_size_um * size}"' in tf.ome_metadata, name
    import csv

    with open(tmp_path / f"{stem}_motifs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["motif"] for r in rows] == ["1", "2", "3", "4"]
    assert set(trained.channel_names) <= set(rows[0]) or any("Cytokeratin 5" in c for c in rows[0])
    assert sum(float(r["fraction"]) for r in rows) == pytest.approx(1.0, abs=1e-4)
    assert sum(int(r["pixels"]) for r in rows) == image.shape[1] * image.shape[2]
    assert [int(r["pixels"]) for r in rows] == sorted((int(r["pixels"]) for r in rows), reverse=True)


def test_output_folder_is_checked_before_the_work(trained_on_two, imc_testdata, tmp_path, capsys):
    path, _ = trained_on_two
    file = imc_testdata / "steinbock_img" / f"{HELD_OUT}.ome.tiff"
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    assert main(["reconstruct", str(path), str(file), "-o", str(blocker)]) == 1
    err = capsys.readouterr().err
    assert "a_file" in err and "not a folder" in err and "reconstructing" not in err
    assert blocker.read_text() == "keep me"


def test_cancel_stops_between_batches(trained_on_two, imc_testdata):
    from napari_imc_vae.engine.apply.use_case import ApplyCancelled

    _, trained = trained_on_two
    calls = []
    with pytest.raises(ApplyCancelled, match="cancelled"):
        apply_to_image(trained, _read(imc_testdata, HELD_OUT), ApplySettings(batch_size=64),
                       on_progress=lambda stage, done, total: calls.append(done),
                       cancel=lambda: len(calls) >= 2)
    assert len(calls) == 2


def test_the_error_map_shows_what_the_hot_pixel_filter_removed(trained_on_two, imc_testdata, tmp_path, capsys):
    """Error against the image as read: an injected hot pixel is an isolated spike, listed apart from the
    regions (areas) and marked as removed by the hot-pixel filter."""
    from scipy import ndimage

    path, trained = trained_on_two
    clean = _read(imc_testdata, HELD_OUT)
    data = clean.data.copy()
    # where the clean image's map is quiet: this small model predicts the held-out ROI's bright
    # H3K27Ac 2.3 times too low, a misfit estimate_noise does not take as noise (more than 2 times),
    # so the map shows it, and a hot pixel next to it would join its area
    quiet_map = np.nan_to_num(apply_to_image(trained, clean, ApplySettings(motifs=0, quality=False)).error_map,
                              nan=np.inf)
    quiet = ndimage.maximum_filter(quiet_map, size=5) < 3.0
    quiet[:8], quiet[-8:], quiet[:, :8], quiet[:, -8:] = False, False, False, False
    y, x = min(zip(*np.nonzero(quiet)), key=lambda p: (p[0] - 40) ** 2 + (p[1] - 50) ** 2)
    data[1, y, x] = np.percentile(data[1], 99) * 4 + 200  # far above the filter's T = 50 counts
    image = ImcImage(data, clean.channel_names, metals=clean.metals, source="hot.ome.tiff")
    app = apply_to_image(trained, image)
    rec = app.reconstruction
    assert rec.hot_pixels[y, x] >= 1 and rec.hot_pixels.dtype == np.uint8
    assert (rec.hot_pixels > 0).sum() < 0.01 * rec.hot_pixels.size
    assert rec.error[y, x] > np.nanpercentile(rec.error, 99)  # before: the filter hid it
    assert not [r for r in app.regions if r["bbox"][0] <= y < r["bbox"][2] and r["bbox"][1] <= x < r["bbox"][3]]
    at = [s for s in app.spikes if (s["y"], s["x"]) == (y, x)]
    assert at and at[0]["hot_pixel"] and at[0]["error"] == pytest.approx(float(rec.error[y, x]))
    assert clean.channel_names[1] in at[0]["channels"].split(";")[0]
    assert all(r["area"] >= 2 for r in app.regions)
    assert app.quality["error"]["n_hot_pixel_spikes"] >= 1
    assert "hot pixel" in " ".join(app.summary_sentences())  # counted apart from the areas
    # the per-channel error is in units of each channel's typical error
    assert np.nanmean(rec.channel_error[0]) == pytest.approx(1.0, rel=1e-3)
    # the CLI writes the mask and the regions
    file = tmp_path / "hot.ome.tiff"
    tifffile.imwrite(file, data, metadata={"axes": "CYX", "Channel": {"Name": [
        f"{m}_{n}" for m, n in zip(clean.channel_keys, clean.channel_names)]}})
    assert main(["reconstruct", str(path), str(file), "-o", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "region(s) of high error" in printed and f"{len(app.spikes)} isolated single-pixel spike(s)" in printed
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "hot_hotpixels.tiff"), rec.hot_pixels)
    import csv

    with open(tmp_path / "out" / "hot_regions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(app.regions) and all(int(row["area"]) >= 2 for row in rows)


def test_motifs_fitted_on_the_training_images_are_the_same_on_every_image(trained_on_two, imc_testdata,
                                                                          tmp_path, capsys):
    import csv

    path, trained = trained_on_two
    stored = trained.motif_model
    assert stored is not None and stored.k == 6
    held = [_read(imc_testdata, s) for s in (HELD_OUT, "20210305_NE_mockData4_003")]
    for image in held:
        app = apply_to_image(trained, image, ApplySettings(quality=False, regions=False))
        assert "training images" in app.motif_source and app.motif_model is stored
        np.testing.assert_array_equal(app.motifs, stored.assign(app.reconstruction.latent))
    files = [imc_testdata / "steinbock_img" / f"{im.name}.ome.tiff" for im in held]
    assert main(["motifs", str(path), *map(str, files), "-o", str(tmp_path / "m")]) == 0
    assert main(["reconstruct", str(path), str(files[0]), "-o", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "m" / f"{HELD_OUT}_motifs.tiff"),
                                  tifffile.imread(tmp_path / "r" / f"{HELD_OUT}_motifs.tiff"))
    with open(tmp_path / "m" / "motif_abundance.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 6 and {r["image"] for r in rows} == {im.name for im in held}
    for im in held:
        assert sum(float(r["fraction"]) for r in rows if r["image"] == im.name) == pytest.approx(1.0, abs=1e-4)
    # another K is fitted on the image alone, and says so
    app = apply_to_image(trained, held[0], ApplySettings(motifs=3, quality=False, regions=False))
    assert app.motif_model.k == 3 and "this image alone" in app.motif_source


def test_a_model_file_without_motifs_gets_pooled_motifs_for_a_cohort(trained_on_two, imc_testdata, tmp_path,
                                                                     capsys):
    path, _ = trained_on_two
    d = torch.load(path, weights_only=True)
    del d["motifs"]
    d["format_version"], _ = 1, d.pop("content_sha256")  # a file from before motifs and the hash
    old = tmp_path / "old.pt"
    torch.save(d, old)
    files = [imc_testdata / "steinbock_img" / f"{s}.ome.tiff" for s in (HELD_OUT, "20210305_NE_mockData4_003")]
    assert main(["motifs", str(old), *map(str, files), "-o", str(tmp_path / "m")]) == 0
    assert "fitted once on latent vectors of all 2 image(s)" in capsys.readouterr().err
    assert TrainedModel.load(old).motif_model is None


def test_the_report_reuses_the_reconstructions_tiles(trained_on_two, imc_testdata, monkeypatch):
    """The quality patches are tiles of the reconstruction: the model is not run on them twice."""
    from napari_imc_vae.engine.quality import evaluate as quality

    _, trained = trained_on_two
    image = _read(imc_testdata, HELD_OUT)
    seen = {}
    real = quality.evaluate

    def spy(*args, **kwargs):
        seen["predictions"] = kwargs.get("predictions")
        return real(*args, **kwargs)

    monkeypatch.setattr(quality, "evaluate", spy)
    app = apply_to_image(trained, image, ApplySettings(regions=False, motifs=0))
    assert seen["predictions"] is not None
    rerun, _ = assess_image(trained, image)  # runs the model on the patches
    for key in ("r2", "mse", "sharpness_ratio", "diversity_ratio", "cosine_loss"):
        assert getattr(app.report.model, key) == pytest.approx(getattr(rerun.model, key), abs=1e-5), key
    assert app.report.model.active_units == rerun.model.active_units
    with pytest.raises(ValueError, match="predictions must be"):
        real(trained.model, np.zeros((4, 5, 8, 8), np.float32), baseline=trained.baseline,
             predictions=(np.zeros((3, 5, 8, 8)), np.zeros((3, 8))))


def test_bf16_inference_matches_fp32(trained_on_two, imc_testdata):
    """precision 'auto' may run the model in bf16 (native bf16 CPUs, CUDA): same figures within 0.002 R²."""
    _, trained = trained_on_two
    image = _read(imc_testdata, HELD_OUT)
    fp32 = apply_to_image(trained, image, ApplySettings(precision="fp32", regions=False))
    with warnings.catch_warnings():  # emulated bf16 on CPUs without it warns; the figures are the point
        warnings.simplefilter("ignore", RuntimeWarning)
        bf16 = apply_to_image(trained, image, ApplySettings(precision="bf16", regions=False))
    assert abs(bf16.report.model.r2 - fp32.report.model.r2) <= 0.002
    assert bf16.reconstruction.raw.dtype == np.float32
    assert (bf16.motifs == fp32.motifs).mean() > 0.95
    with pytest.raises(ValueError, match="precision must be"):
        apply_to_image(trained, image, ApplySettings(precision="fp16"))


def test_training_after_reconstructing_in_the_same_process(trained_on_two, imc_testdata):
    """Reconstruct (inference mode) first, then resume training: cached tensors must allow autograd."""
    from napari_imc_vae.engine.model import d4

    path, _ = trained_on_two
    trained = TrainedModel.load(path)
    d4._on_device.cache_clear()
    d4._permutations_cpu.cache_clear()  # so the reconstruction is the first to build them
    image = _read(imc_testdata, HELD_OUT)
    apply_to_image(trained, image, ApplySettings(motifs=0, regions=False, quality=False))
    run = TrainingRun([image], resume=trained, train_config=TrainConfig(steps=3, device="cpu"))
    again, _ = run.run()
    assert again.step == trained.step + 3


def test_error_tiff_regions_csv_and_quality_json_speak_one_unit(trained_on_two, imc_testdata, tmp_path, capsys):
    """One run of ``reconstruct``: the map, the regions and the JSON are the same calibrated unit."""
    import csv

    from napari_imc_vae.engine.apply.error_unit import ERROR_UNIT_NAME, ERROR_UNIT_SENTENCE, REGION_THRESHOLD

    path, trained = trained_on_two
    clean = _read(imc_testdata, HELD_OUT)
    data = clean.data.copy()
    data[2, 30, 10:50] += 40.0  # a one-channel streak: a region to compare
    file = tmp_path / "streak.ome.tiff"
    tifffile.imwrite(file, data, metadata={"axes": "CYX", "Channel": {"Name": [
        f"{m}_{n}" for m, n in zip(clean.channel_keys, clean.channel_names)]}})
    out = tmp_path / "out"
    assert main(["reconstruct", str(path), str(file), "-o", str(out)]) == 0
    assert f"(error > {REGION_THRESHOLD:g} noise SD, areas of 2 px or more)" in capsys.readouterr().out
    error = tifffile.imread(out / "streak_error.tiff")
    with open(out / "streak_regions.csv") as f:
        rows = list(csv.DictReader(f))
    quality = json.loads((out / "streak_quality.json").read_text())
    unit = quality["error"]
    assert unit["name"] == ERROR_UNIT_NAME and unit["sentence"] == ERROR_UNIT_SENTENCE
    assert unit["region_threshold"] == REGION_THRESHOLD and unit["n_regions"] == len(rows) >= 1
    assert unit["max"] == pytest.approx(float(np.nanmax(error)), rel=1e-6)
    assert unit["pixels_above_threshold"] == int((error > REGION_THRESHOLD).sum())
    assert set(unit["scale"]) == set(unit["dispersion"]) == set(steinbock_names(trained))
    covered = np.zeros(error.shape, bool)
    for row in rows:  # each region's figures are error.tiff's values over its pixels
        y0, x0, y1, x1 = map(int, row["bbox"].split())
        box = error[y0:y1, x0:x1]
        assert float(row["peak_error"]) == pytest.approx(float(box.max()), rel=1e-5)
        assert float(row["mean_error"]) > REGION_THRESHOLD
        covered[y0:y1, x0:x1] = True
    # nothing above the threshold is left out but isolated single pixels, counted apart in the JSON
    high = error > REGION_THRESHOLD
    left = high & ~covered
    from scipy import ndimage

    assert (ndimage.convolve(high.astype(int), np.ones((3, 3), int), mode="constant")[left] == 1).all()
    assert left.sum() == unit["n_isolated_spikes"] + unit["n_hot_pixel_spikes"]
    streak = [r for r in rows if int(r["bbox"].split()[0]) <= 30 < int(r["bbox"].split()[2])]
    assert streak and streak[0]["channels"].split(";")[0] == steinbock_names(trained)[2]
    # the widget's arrays are the CLI's: the same engine call
    app = apply_to_image(trained, read_imc(file))
    np.testing.assert_allclose(app.error_map, error, rtol=1e-5, atol=1e-6)
    assert app.residual.shape == (5, *error.shape) and app.residual.dtype == np.float32


def test_the_raw_reconstruction_has_no_negative_counts(trained_on_two, imc_testdata):
    _, trained = trained_on_two
    for stem in (HELD_OUT, "20210305_NE_mockData1_001"):  # mockData1_001: nearly blank
        app = apply_to_image(trained, _read(imc_testdata, stem), ApplySettings(motifs=0, quality=False))
        raw = app.reconstruction.raw
        assert raw.min() >= 0.0 and np.isfinite(raw).all()
        assert (raw == 0).any()  # below-background predictions are clipped to 0 counts, not negative
        # clean tissue reads like counting noise: most of the map under 2 noise SDs
        assert np.nanmedian(app.error_map) < 1.0 and np.nanmean(np.abs(app.residual)) < 1.2


def test_the_error_map_by_bands_of_rows_is_the_whole_image_map(trained_on_two, imc_testdata, monkeypatch):
    """The pooled error needs rows beyond each band: bands of a few rows give the same map, and the
    inflation measured on sampled bands (a large image) stays close to the whole image's."""
    from napari_imc_vae.engine.apply import multiscale_error, reconstruction_outputs

    _, trained = trained_on_two
    image = _read(imc_testdata, HELD_OUT)
    data = image.data.copy()
    data[3, 20:26, 30:36] += 15.0  # a faint blob: pooled windows matter here
    image = ImcImage(data, image.channel_names, metals=image.metals, source="blob.ome.tiff")
    settings = ApplySettings(motifs=0, quality=False)
    whole = apply_to_image(trained, image, settings)
    monkeypatch.setattr(reconstruction_outputs, "_RESIDUAL_BLOCK", 5 * 91 * 4)  # bands of 4 rows (5 channels, 91 columns)
    banded = apply_to_image(trained, image, settings)
    np.testing.assert_allclose(banded.error_map, whole.error_map, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(banded.residual, whole.residual)
    assert [r["area"] for r in banded.regions] == [r["area"] for r in whole.regions]
    tall = ImcImage(np.concatenate([data, data[:, ::-1]], axis=1), image.channel_names, metals=image.metals,
                    source="tall.ome.tiff")  # 162 rows
    whole = apply_to_image(trained, tall, settings)
    monkeypatch.setattr(multiscale_error, "_INFLATION_PIXELS", 8 * 12 * 91)  # 8 bands of 12 rows, NaN rows between
    sampled = apply_to_image(trained, tall, settings)
    assert not np.array_equal(sampled.error_map, whole.error_map)  # measured on the bands only
    assert np.nanmax(np.abs(sampled.error_map - whole.error_map)) < 1.0
