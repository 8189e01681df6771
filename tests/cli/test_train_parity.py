"""The CLI's ``train`` and the Train widget's task are one use case (issue 19): the same small
training through both gives the same steps, validation interval, report and model settings, for
a new model and then for a resume of the same model file.

The widget side is the widget's own path without a viewer: its form (``TrainForm``, filled from
the resumed model as ``TrainWidget.resume_from`` does) builds the ``TrainRequest``, and
``train_task.training_updates`` runs it.
"""

from __future__ import annotations

from dataclasses import asdict

import pytest

from napari_imc_vae.cli import main
from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
from napari_imc_vae.engine.defaults import validation_interval
from napari_imc_vae.io import read_imc

FILE = "steinbock_img/20210305_NE_mockData1_001.ome.tiff"
MODEL = {"patch_size": 4, "latent_dim": 4, "width": 32, "depth": 1}
CLI_MODEL = ["--patch", "4", "--latent", "4", "--width", "32", "--depth", "1"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cli(args: list[str], capsys) -> str:
    assert main(["train", *args, "--device", "cpu"]) == 0
    return capsys.readouterr().out


def _widget(form, image, resume=None):
    """What TrainWidget.request() builds from its form, run as the widget's worker runs it."""
    from napari_imc_vae._napari.train_task import TrainJob, TrainPlan, TrainRequest, training_updates

    request = TrainRequest(images=[image], normalization=form.normalization(),
                           model_config=None if resume else form.model_config(),
                           critic_config=form.critic_config(), train_config=form.train_config(),
                           resume=resume, budget_minutes=form.budget_minutes())
    gen, plans = training_updates(request, TrainJob()), []
    try:
        while True:
            update = next(gen)
            if isinstance(update, TrainPlan):
                plans.append(update)
    except StopIteration as done:
        outcome = done.value
    assert len(plans) == 1 and outcome.plan is plans[0]
    return outcome


def _same_run(cli_out: str, cli_model: TrainedModel, outcome, steps: int) -> None:
    from napari_imc_vae._napari.train_task import format_report

    trained = outcome.trained
    assert cli_model.step == trained.step == steps
    # the same validation policy: the interval of the run's length, validations at the same steps
    assert cli_model.train_config.val_every == trained.train_config.val_every == outcome.plan.val_every
    assert f"validation every {outcome.plan.val_every} steps" in cli_out
    assert [v["step"] for v in cli_model.validation_history] == [v["step"] for v in trained.validation_history]
    # the same settings recorded in the model file
    assert asdict(cli_model.train_config) == asdict(trained.train_config)
    assert asdict(cli_model.critic_config) == asdict(trained.critic_config)
    assert asdict(cli_model.model.config) == asdict(trained.model.config)
    assert cli_model.normalizer.to_dict() == trained.normalizer.to_dict()
    # the same report, after training, in both (the CLI prints the text the widget shows)
    assert outcome.report is not None and format_report(outcome) in cli_out


def test_cli_and_widget_task_train_and_resume_alike(imc_testdata, tmp_path, capsys, qapp):
    from napari_imc_vae._napari.train_form import EXACT_STEPS, TrainForm
    from napari_imc_vae.preprocessing import DEFAULT_NORMALIZATION

    path = imc_testdata / FILE
    image = read_imc(path)
    first, resumed = tmp_path / "first.pt", tmp_path / "resumed.pt"

    # a new model: 60 steps, batch 16, seed 3, a small model; everything else the defaults
    out = _cli([str(path), "-o", str(first), "--steps", "60", "--batch", "16", "--seed", "3", *CLI_MODEL], capsys)
    form = TrainForm(DEFAULT_NORMALIZATION, ["cpu"])
    form.patch.value, form.latent.value = MODEL["patch_size"], MODEL["latent_dim"]
    form.hidden_width.value, form.depth.value = MODEL["width"], MODEL["depth"]
    form.budget.value, form.steps.value = EXACT_STEPS, 60
    form.batch.value, form.seed.value, form.device.value = 16, 3, "cpu"
    _same_run(out, TrainedModel.load(first), _widget(form, image), steps=60)
    # the validation policy: at least 50 steps apart, and at the end
    assert validation_interval(60) == TrainedModel.load(first).train_config.val_every == 50
    assert [v["step"] for v in TrainedModel.load(first).validation_history] == [50, 60]

    # resuming that file: only the steps given; batch, learning rate, seed and loss weights are the model's
    out = _cli([str(path), "-o", str(resumed), "--resume", str(first), "--steps", "8"], capsys)
    loaded = TrainedModel.load(first)
    form = TrainForm(DEFAULT_NORMALIZATION, ["cpu"])  # as TrainWidget.resume_from fills it
    form.set_values(model_config=asdict(loaded.model.config), critic=loaded.critic_config,
                    train=loaded.train_config)
    form.budget.value, form.steps.value, form.device.value = EXACT_STEPS, 8, "cpu"
    outcome = _widget(form, image, resume=loaded)
    _same_run(out, TrainedModel.load(resumed), outcome, steps=68)
    assert outcome.trained.train_config.batch_size == 16 and outcome.trained.train_config.seed == 3
    assert "resuming from step 60" in out and "resuming from step 60" in outcome.plan.data
