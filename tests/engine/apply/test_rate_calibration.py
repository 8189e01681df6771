"""Rate calibration: a model trained on real ROIs carries per-channel factors that bring the sum of
its reconstruction in counts toward the measured counts of a ROI it never saw; the model file
stores them (schema-checked) and older files load with factor 1 and a note."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from napari_imc_vae.engine.model_file.checkpoint import ModelFileError, TrainedModel
from napari_imc_vae.engine.apply.inference import apply_model, ordered_data, reconstruct_image
from napari_imc_vae.engine.model_file.schema import stamp
from napari_imc_vae.engine.apply.rate_calibration import measure_rate_calibration

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HELD_OUT = "20210305_NE_mockData5_003"


@pytest.fixture(scope="module")
def trained_and_held_out(imc_testdata):
    """A small model trained 300 steps on the 14 other steinbock ROIs (~10 s), and the held-out ROI."""
    from napari_imc_vae.engine.training.trainer import TrainConfig
    from napari_imc_vae.engine.training.run import TrainingRun
    from napari_imc_vae.io import read_imc

    paths = sorted((imc_testdata / "steinbock_img").glob("*.ome.tiff"))
    images = [read_imc(p) for p in paths if HELD_OUT not in p.name]
    assert len(images) == 14
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small model on shared cores: a second thread only adds contention
    try:
        trained, _ = TrainingRun(
            images, model_config={"patch_size": 8, "latent_dim": 8, "width": 128, "depth": 1},
            train_config=TrainConfig(steps=300, batch_size=128, device="cpu", val_every=150, max_val_patches=64),
        ).run()
    finally:
        torch.set_num_threads(threads)
    held_out = read_imc(imc_testdata / "steinbock_img" / f"{HELD_OUT}.ome.tiff")
    return trained, held_out


def test_trained_model_has_factors_in_range_and_the_file_keeps_them(trained_and_held_out, tmp_path):
    trained, _ = trained_and_held_out
    factors = trained.rate_factors
    assert len(factors) == trained.model.config.in_channels == 5
    assert all(0.5 <= f <= 2.0 for f in factors)  # the range the schema test pins, not the code's constant
    assert any(f != 1.0 for f in factors)
    assert "training patches" in trained.rate_calibration.measured_on
    loaded = TrainedModel.load(trained.save(tmp_path / "m.pt"))
    assert loaded.rate_factors == factors and loaded.notes == []
    assert loaded.rate_calibration.measured_on == trained.rate_calibration.measured_on


def test_held_out_sum_ratio_of_strong_channels_moves_toward_1(trained_and_held_out):
    """Calibrated on the training ROIs only, measured on the held-out one."""
    trained, held_out = trained_and_held_out
    data = ordered_data(trained, held_out)
    observed = np.nan_to_num(data.astype(np.float64)).sum(axis=(1, 2))
    before = reconstruct_image(trained.model, data, trained.normalizer, outputs=("raw",)).raw
    after = apply_model(trained, held_out, precision="fp32").raw
    ratio_before = observed / before.astype(np.float64).sum(axis=(1, 2))
    ratio_after = observed / after.astype(np.float64).sum(axis=(1, 2))
    strong = np.argsort(observed)[-2:]  # the two channels with the most counts (YBX1, H3K27Ac)
    assert {trained.channel_names[c] for c in strong} == {"YBX1", "H3K27Ac"}
    for c in strong:
        assert abs(ratio_after[c] - 1) < abs(ratio_before[c] - 1), (trained.channel_names[c], ratio_before, ratio_after)
    # the reconstruction in counts is the inverse normalization times the factor; normalized units unchanged
    factors = np.asarray(trained.rate_factors, dtype=np.float32)[:, None, None]
    np.testing.assert_allclose(after, before * factors, rtol=1e-5, atol=1e-6)
    assert (after >= 0).all()


def test_factors_are_clipped_to_their_range(trained_and_held_out):
    """Patches far above what the model predicts: the factor stops at the range's top."""
    trained, held_out = trained_and_held_out
    normalized = torch.from_numpy(trained.normalizer(ordered_data(trained, held_out))[:, :64, :64].copy())
    patches = normalized.unfold(1, 8, 8).unfold(2, 8, 8).permute(1, 2, 0, 3, 4).reshape(-1, 5, 8, 8)
    shifted = measure_rate_calibration(trained.model, trained.normalizer, patches + 8.0)
    assert shifted.factors == (2.0,) * 5  # the range's top, as a literal: the constant could drift with the code
    assert measure_rate_calibration(trained.model, trained.normalizer, patches[:0]) is None


@pytest.mark.parametrize(("factors", "message"), [
    ([1.1, float("nan"), 1.0, 1.0, 1.0], "field rate_calibration.factors[1]: must be a finite number >= 0.5 and <= 2, got nan"),
    ([1.1, 1.0, 1.0, 1.0], "field rate_calibration.factors: must be a list of 5 numbers (one per channel), got [1.1, 1.0, 1.0, 1.0]"),
    ([1.1, 1.0, 1.0, 1.0, 7.0], "field rate_calibration.factors[4]: must be a finite number >= 0.5 and <= 2, got 7.0"),
])
def test_schema_refuses_a_bad_factor_in_one_line_naming_the_field(trained_and_held_out, tmp_path, factors, message):
    trained, _ = trained_and_held_out
    d = trained.to_dict()
    d["rate_calibration"]["factors"] = factors
    torch.save(stamp(d), tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match=re.escape(f"model file {tmp_path / 'bad.pt'} is damaged: {message}")) as e:
        TrainedModel.load(tmp_path / "bad.pt")
    assert "\n" not in str(e.value)


def test_older_file_without_calibration_loads_with_factor_1_and_a_note(trained_and_held_out, tmp_path):
    trained, held_out = trained_and_held_out
    d = trained.to_dict()
    del d["rate_calibration"]
    torch.save(stamp(d), tmp_path / "old.pt")
    old = TrainedModel.load(tmp_path / "old.pt")
    assert old.rate_calibration is None and old.rate_factors is None
    assert len(old.notes) == 1 and "old.pt has no rate calibration" in old.notes[0] and "factor 1" in old.notes[0]
    data = ordered_data(old, held_out)
    uncalibrated = reconstruct_image(trained.model, data, trained.normalizer, outputs=("raw",)).raw
    np.testing.assert_array_equal(apply_model(old, held_out, precision="fp32").raw, uncalibrated)
