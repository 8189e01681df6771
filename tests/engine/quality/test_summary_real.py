"""The report's words on a real ROI: the single high pixels name the hot-pixel filter and say
what it did with them, and the numbers say which of the image's patches were measured."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_imc_vae.engine.apply.use_case import ApplySettings, apply_to_image
from napari_imc_vae.engine.training.run import TrainingRun
from napari_imc_vae.engine.training.trainer import TrainConfig
from napari_imc_vae.io import ImcImage, read_imc
from napari_imc_vae.preprocessing import DEFAULT_NORMALIZATION

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN = "20210305_NE_mockData2_001"
HELD_OUT = "20210305_NE_mockData5_003"  # 81 × 91 px: 19 × 21 = 399 patches of 8 px at stride 4
TINY = {"patch_size": 8, "latent_dim": 4, "width": 32, "depth": 1}


def _read(imc_testdata, stem: str) -> ImcImage:
    return read_imc(imc_testdata / "steinbock_img" / f"{stem}.ome.tiff")


def _train(imc_testdata, normalization):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on shared cores: a second thread only adds contention
    try:
        trained, _ = TrainingRun([_read(imc_testdata, TRAIN)], normalization=normalization, model_config=TINY,
                                 train_config=TrainConfig(steps=40, batch_size=32, device="cpu", seed=0)).run()
    finally:
        torch.set_num_threads(threads)
    return trained


@pytest.fixture(scope="module")
def filtered(imc_testdata):
    """A tiny model with the default hot-pixel filter (T = 50 counts), and the held-out ROI."""
    return _train(imc_testdata, DEFAULT_NORMALIZATION), _read(imc_testdata, HELD_OUT)


def _spike_sentence(app) -> str:
    (regions,) = [s for s in app.summary_sentences() if "look like artefacts" in s or "looks like an" in s]
    return regions[regions.index("Apart from these, "):]


def test_spikes_the_filter_kept_are_said_to_be_below_its_threshold_in_counts(filtered):
    trained, roi = filtered
    app = apply_to_image(trained, roi, ApplySettings(motifs=0))
    n = len(app.spikes)
    assert n > 1 and not any(s["hot_pixel"] for s in app.spikes)  # salt spikes of the real ROI, none hot
    assert _spike_sentence(app) == (
        f"Apart from these, {n} single pixels differ from the model far beyond counting noise: isolated spikes "
        "the hot-pixel filter kept, as none stands more than 50 counts above its neighbours in any marker.")
    # without the filter's mask, whether the filter replaced them is not known, and not said
    unknown = apply_to_image(trained, roi, ApplySettings(motifs=0, outputs=("raw", "error", "residual", "latent")))
    assert _spike_sentence(unknown) == (f"Apart from these, {n} single pixels differ from the model far beyond "
                                        "counting noise: isolated spikes.")


def test_a_hot_pixel_the_filter_replaced_is_told_apart_from_the_spikes_it_kept(filtered):
    from scipy import ndimage

    trained, roi = filtered
    clean = apply_to_image(trained, roi, ApplySettings(motifs=0, quality=False))
    quiet = ndimage.maximum_filter(np.nan_to_num(clean.error_map, nan=np.inf), size=5) < 3.0
    quiet[:8], quiet[-8:], quiet[:, :8], quiet[:, -8:] = False, False, False, False
    y, x = (int(v[0]) for v in np.nonzero(quiet))  # no high neighbour: an isolated spike once hot
    data = roi.data.copy()
    data[1, y, x] = np.percentile(data[1], 99) * 4 + 200  # far above the filter's T = 50 counts
    app = apply_to_image(trained, ImcImage(data, roi.channel_names, metals=roi.metals, source="hot.ome.tiff"),
                         ApplySettings(motifs=0, quality=False))
    hot = [s for s in app.spikes if s["hot_pixel"]]
    assert [(s["y"], s["x"]) for s in hot] == [(y, x)]
    kept = len(app.spikes) - 1
    assert kept > 1 and _spike_sentence(app) == (
        f"Apart from these, {kept + 1} single pixels differ from the model far beyond counting noise: 1 is a hot "
        "pixel the hot-pixel filter replaced (more than 50 counts above its neighbours in a marker), "
        f"{kept} are isolated spikes it kept.")


def test_without_a_hot_pixel_filter_the_spikes_are_left_as_measured(imc_testdata):
    trained = _train(imc_testdata, replace(DEFAULT_NORMALIZATION, hot_pixel_threshold=None))
    app = apply_to_image(trained, _read(imc_testdata, HELD_OUT), ApplySettings(motifs=0, quality=False))
    n = len(app.spikes)
    assert n > 1 and _spike_sentence(app) == (
        f"Apart from these, {n} single pixels differ from the model far beyond counting noise: isolated spikes, "
        "left as measured (this model has no hot-pixel filter).")


def test_the_numbers_say_which_of_the_image_patches_were_measured(filtered, imc_testdata, tmp_path, capsys):
    from napari_imc_vae.cli import main

    trained, roi = filtered
    every = apply_to_image(trained, roi, ApplySettings(motifs=0, regions=False))
    assert every.quality["n_patches"] == 399
    assert f"{HELD_OUT}: all 399 of the image's patches of 8 px at stride 4." in every.report_text()
    # past the cap: evenly spaced whole rows of the grid, 4 rows × 21 = 84 of the 399
    capped = apply_to_image(trained, roi, ApplySettings(motifs=0, regions=False, max_quality_patches=100))
    assert capped.quality["n_patches"] == 84 and capped.report.n_val == 84
    assert f"{HELD_OUT}: 84 evenly spaced of the image's 399 patches of 8 px at stride 4." in capped.report_text()
    # the CLI's quality command says the same
    model = trained.save(tmp_path / "m.pt")
    assert main(["quality", str(model), str(imc_testdata / "steinbock_img" / f"{HELD_OUT}.ome.tiff")]) == 0
    assert f"{HELD_OUT}: all 399 of the image's patches of 8 px at stride 4." in capsys.readouterr().out
