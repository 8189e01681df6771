"""What a finished run says (engine.training.outcome): a run its time budget ended says so, with
the planned steps, and the report on several training images speaks of "these images"."""

from __future__ import annotations

import re

import pytest

from napari_imc_vae.engine.training.settings import TrainSettings
from napari_imc_vae.engine.training.use_case import train_model
from napari_imc_vae.io import read_imc

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODEL = {"patch_size": 4, "latent_dim": 4, "width": 32, "depth": 1}
TRAIN = {"batch_size": 16, "device": "cpu", "precision": "fp32", "max_val_patches": 64, "seed": 0}
STEMS = ("20210305_NE_mockData1_001", "20210305_NE_mockData1_002", "20210305_NE_mockData1_003")


@pytest.fixture(scope="module")
def rois(imc_testdata):
    return [read_imc(imc_testdata / "steinbock_img" / f"{s}.ome.tiff") for s in STEMS]


@pytest.fixture(scope="module")
def sixty_steps(rois):
    return train_model(rois, TrainSettings(model=MODEL, train={**TRAIN, "steps": 60}))


def test_a_run_of_its_planned_steps_is_done_and_its_report_speaks_of_these_images(sixty_steps):
    assert re.fullmatch(r"done after 60 steps in total \([\d.]+ s\)", sixty_steps.summary().splitlines()[0])
    first = sixty_steps.report_text().splitlines()[0]
    # the report is measured on held-out patches of the three ROIs: "these images", not "this image"
    assert first == ("Look with care: a simple linear summary fitted on the same training images keeps more of "
                     "these images than the model does; train it longer or on more images.")


def test_a_run_its_time_budget_ended_says_so_with_the_planned_steps(rois, sixty_steps):
    ended = train_model(rois, TrainSettings(model=MODEL, train={**TRAIN, "steps": 100_000, "time_limit_s": 1.0}))
    ran = ended.trained.step
    assert not ended.stopped and 0 < ran < 100_000
    assert re.fullmatch(rf"the time budget \(1 s\) ran out after {ran:,} of the 100,000 planned steps \([\d.]+ s\)",
                        ended.summary().splitlines()[0])
    # resumed: the steps of this run against its plan, and the model's steps in total
    resumed = train_model(rois, TrainSettings(train={**TRAIN, "steps": 100_000, "time_limit_s": 1.0}),
                          resume=sixty_steps.trained)
    ran = resumed.trained.step - 60
    assert 0 < ran < 100_000 and re.fullmatch(
        rf"the time budget \(1 s\) ran out after {ran:,} of the 100,000 planned steps, {ran + 60:,} in total "
        r"\([\d.]+ s\)",
        resumed.summary().splitlines()[0])
