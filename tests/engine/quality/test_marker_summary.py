"""Per-marker summaries (engine.quality.marker_summary): signal above counting noise, share explained, words."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_imc_vae.engine.apply.use_case import apply_to_image
from napari_imc_vae.engine.quality.marker_summary import MIN_SIGNAL_TO_NOISE, marker_label, summarize_markers
from napari_imc_vae.engine.quality.smoothing import gaussian_smooth
from napari_imc_vae.engine.training.trainer import TrainConfig
from napari_imc_vae.engine.training.run import TrainingRun
from napari_imc_vae.io import read_imc

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN = ("20210305_NE_mockData2_001", "20210305_NE_mockData3_001")
MOCK5 = ("20210305_NE_mockData5_001", "20210305_NE_mockData5_002", "20210305_NE_mockData5_003")
NAMES = ["Nd143_Structured", "Pr141_Cytokeratin 5", "Er166_Dim noise"]


def _tissue(rng, shape=(96, 96)) -> np.ndarray:
    """A rate map with cell-sized blobs (0 … ~1 before scaling)."""
    spots = np.zeros(shape)
    spots[rng.integers(0, shape[0], 60), rng.integers(0, shape[1], 60)] = 1.0
    return gaussian_smooth(spots, 2.0).astype(np.float64) * 25.0


@pytest.fixture
def synthetic(rng):
    """True rates (C, Y, X) and one Poisson draw: channel 0 tissue (peaks ~30 counts), channel 1
    pure counting noise at 0.05 counts/px (no structure: an unstained marker), channel 2 pure
    counting noise at 4 counts/px (bright, still no structure)."""
    tissue = _tissue(rng)
    rate = np.stack([30 * tissue / tissue.max(), np.full(tissue.shape, 0.05), np.full(tissue.shape, 4.0)])
    return rate, rng.poisson(rate).astype(np.float32)


def test_pure_counting_noise_has_no_signal_and_tissue_is_explained_by_its_true_rate(synthetic):
    rate, counts = synthetic
    tissue, empty, bright_noise = summarize_markers(counts, rate, NAMES)
    assert tissue.has_signal and tissue.signal_to_noise > 3 * MIN_SIGNAL_TO_NOISE
    assert tissue.explained > 0.9 and tissue.sentence == "Structured: most structure kept"
    for noise in (empty, bright_noise):  # whatever the count level, noise alone is not signal
        assert not noise.has_signal and noise.explained is None
        assert 0.5 < noise.signal_to_noise < 2.0  # ~1: the variance counting noise predicts
        assert not noise.predicts_pattern  # a flat rate is no pattern
    assert empty.label == "Cytokeratin 5"
    assert empty.sentence == "Cytokeratin 5: the image has almost no signal, and the model predicts none"


def test_a_pattern_predicted_where_the_image_has_none_is_called_out(synthetic):
    rate, counts = synthetic
    haze = rate.copy()
    haze[1] = 0.05 + 0.3 * rate[0] / rate[0].max()  # the tissue's shape, faintly, in the empty channel
    empty = summarize_markers(counts, haze, NAMES)[1]
    assert not empty.has_signal and empty.predicts_pattern
    assert empty.sentence == ("Cytokeratin 5: the image has almost no signal; the model predicts some — "
                              "do not read it as expression")


def test_the_share_explained_falls_as_the_reconstruction_loses_structure(synthetic):
    rate, counts = synthetic
    blurred = gaussian_smooth(rate, 3.0)
    shares = [summarize_markers(counts, r, NAMES)[0].explained
              for r in (rate, blurred, np.full_like(rate, rate[0].mean()))]
    assert shares[0] > shares[1] > shares[2] == 0.0
    negative = summarize_markers(counts, -rate, NAMES)[0]  # a negative rate means 0 counts
    assert negative.explained == 0.0 and negative.sentence == "Structured: little of its structure kept"


def test_one_hot_pixel_is_not_a_signal_once_filtered_as_the_model_input_was(synthetic):
    rate, counts = synthetic
    counts = counts.copy()
    counts[1, 40, 40] = 400.0  # one hot pixel in the empty channel
    assert summarize_markers(counts, rate, NAMES)[1].has_signal  # counted as structure unfiltered
    assert not summarize_markers(counts, rate, NAMES, hot_pixel_threshold=50.0)[1].has_signal


def test_bad_input_is_named(synthetic):
    rate, counts = synthetic
    with pytest.raises(ValueError, match=r"image and reconstruction must both have shape \(C, Y, X\)"):
        summarize_markers(counts, rate[:2], NAMES)
    with pytest.raises(ValueError, match=r"one entry per channel \(3\); got 2"):
        summarize_markers(counts, rate, NAMES[:2])


def test_marker_labels_drop_the_metal():
    assert marker_label("Pr141_Cytokeratin 5") == "Cytokeratin 5"
    assert marker_label("Ag107") == "Ag107"
    assert marker_label("DNA_1") == "DNA_1"  # not a metal prefix


@pytest.fixture(scope="module")
def tiny_model(imc_testdata):
    torch.set_num_threads(1)
    images = [read_imc(imc_testdata / "steinbock_img" / f"{s}.ome.tiff") for s in TRAIN]
    trained, _ = TrainingRun(images, model_config={"latent_dim": 8, "width": 32, "depth": 1},
                             train_config=TrainConfig(steps=60, batch_size=64, device="cpu", seed=0)).run()
    return trained


@pytest.mark.parametrize("stem", MOCK5)
def test_on_mockdata5_cytokeratin_5_has_no_signal_and_the_stained_markers_do(tiny_model, imc_testdata, stem):
    """The dataset's README: Pr141 (Cytokeratin 5) is only detectable in mockData1 and mockData3."""
    image = read_imc(imc_testdata / "steinbock_img" / f"{stem}.ome.tiff")
    app = apply_to_image(tiny_model, image)
    markers = {m.label: m for m in app.markers}
    assert [m.name for m in app.markers] == app.channel_names
    ck5 = markers["Cytokeratin 5"]
    assert not ck5.has_signal and ck5.explained is None and ck5.signal_to_noise < 2.0
    assert ck5.sentence.startswith("Cytokeratin 5: the image has almost no signal")
    assert ("do not read it as expression" in ck5.sentence) == ck5.predicts_pattern
    for stained in ("YBX1", "H3K27Ac"):
        m = markers[stained]
        assert m.has_signal and m.signal_to_noise > 3 * MIN_SIGNAL_TO_NOISE and 0.0 <= m.explained <= 1.0
        assert m.sentence.startswith(f"{stained}: ") and "no signal" not in m.sentence


def test_on_mockdata3_cytokeratin_5_is_stained_and_explained(tiny_model, imc_testdata):
    image = read_imc(imc_testdata / "steinbock_img" / "20210305_NE_mockData3_002.ome.tiff")
    ck5 = next(m for m in apply_to_image(tiny_model, image).markers if m.label == "Cytokeratin 5")
    assert ck5.has_signal and ck5.signal_to_noise > 100 and ck5.explained is not None


JARGON = ("R²", "PCA", "KLD", "latent", "permutation", "active unit", "posterior", "ΔR")


def test_the_first_layer_is_plain_words_and_the_numbers_follow(tiny_model, imc_testdata):
    from napari_imc_vae.engine.quality.summary import NUMBERS_HEADER, split_two_layers

    app = apply_to_image(tiny_model, read_imc(imc_testdata / "steinbock_img" / f"{MOCK5[2]}.ome.tiff"))
    sentences = app.summary_sentences()
    assert 3 <= len(sentences) <= 5
    for s in sentences:
        assert not any(word in s for word in JARGON), s
    overall = sentences[0]
    assert overall.startswith(("Good enough to look at", "Look with care", "Not good enough to look at"))
    empty = next(s for s in sentences if "almost no signal" in s)
    assert "Cytokeratin 5" in empty
    places = sentences[-1]
    n = len(app.regions)
    assert places.startswith("No place looks like an artefact" if n == 0 else
                             "1 place looks like an artefact" if n == 1 else f"{n} places look like artefacts")
    text = app.report_text()
    first, numbers = split_two_layers(text)
    assert first == sentences and text.startswith(sentences[0])
    assert f"\n{NUMBERS_HEADER}\n" in text and "R²" in numbers and "Cytokeratin 5" in numbers


def test_the_cli_prints_the_plain_sentences_first(tiny_model, imc_testdata, tmp_path, capsys):
    from napari_imc_vae.cli import main
    from napari_imc_vae.engine.quality.summary import NUMBERS_HEADER

    model = tiny_model.save(tmp_path / "m.pt")
    image = imc_testdata / "steinbock_img" / f"{MOCK5[0]}.ome.tiff"
    assert main(["quality", str(model), str(image), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    first, numbers = out.split(f"\n{NUMBERS_HEADER}\n")
    assert first.startswith(("Good enough to look at", "Look with care", "Not good enough to look at"))
    assert not any(word in first for word in JARGON)
    assert numbers.startswith(f"{MOCK5[0]}: all ") and "patches of 8 px" in numbers.splitlines()[0]
    assert "verdict's test" in numbers and "healthy" not in numbers
