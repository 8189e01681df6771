"""Training budgets: presets and minutes, the step rate measured here, and the CLI's --budget."""

import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_imc_vae.cli import main
from napari_imc_vae.engine.training.budget import (
    PRESETS,
    BudgetError,
    StepRate,
    describe_plan,
    format_duration,
    measure_step_rate,
    parse_budget,
    plan_budget,
    plan_run,
    probe_step_rate,
)
from napari_imc_vae.engine.training.trainer import TrainConfig
from napari_imc_vae.engine.training.run import TrainingRun
from napari_imc_vae.io import read_imc

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY_MODEL = {"patch_size": 4, "latent_dim": 4, "width": 32, "depth": 1}
TINY = ["--patch", "4", "--latent", "4", "--width", "32", "--depth", "1", "--batch", "16", "--device", "cpu"]


@pytest.fixture(scope="module")
def rois(imc_testdata):
    return [read_imc(p) for p in sorted((imc_testdata / "steinbock_img").glob("*.ome.tiff"))[:3]]


def test_presets_and_minutes_are_read_and_anything_else_is_refused_by_name():
    assert parse_budget("Standard") == PRESETS["standard"]
    assert parse_budget("quick") < parse_budget("standard") < parse_budget("thorough")
    assert parse_budget("2.5") == 2.5 and parse_budget(7) == 7.0
    for bad in ("fast", "0", "-1", "nan", "inf", ""):
        with pytest.raises(BudgetError, match=r"quick \(1 min\), standard .* or a number of minutes"):
            parse_budget(bad)


def test_a_budget_buys_the_steps_of_the_measured_rate_and_is_the_time_limit():
    rate = StepRate(steps_per_s=12.5, device="cpu", bf16=False, batch_size=256)
    planned = plan_budget(TrainConfig(), 2.0, rate)
    assert planned.steps == 1500 and planned.time_limit_s == 120.0
    assert rate.seconds_for(1500) == 120.0
    assert "under one pass" in describe_plan(100, rate, 1.0, passes=0.4)
    assert "under one pass" not in describe_plan(100, rate, 1.0, passes=3.0)
    assert format_duration(45) == "45 s" and format_duration(210) == "3.5 min" and format_duration(4800) == "1 h 20 min"


def test_measuring_the_rate_leaves_the_run_exactly_as_it_would_have_been(rois):
    def trained_weights(measure: bool):
        run = TrainingRun(rois, model_config=TINY_MODEL,
                          train_config=TrainConfig(steps=6, batch_size=16, device="cpu", seed=3, val_every=3))
        if measure:
            rate = measure_step_rate(run.trainer, steps=3, warmup=1)
            assert rate.steps_per_s > 0 and rate.device == "cpu" and rate.batch_size == 16
            assert run.trainer.step == 0
        trained, _ = run.run()
        return trained.step, [p.detach().clone() for p in trained.model.parameters()]

    steps_a, weights_a = trained_weights(False)
    steps_b, weights_b = trained_weights(True)
    assert steps_a == steps_b == 6
    assert all(torch.equal(a, b) for a, b in zip(weights_a, weights_b))


def test_running_out_of_memory_while_timing_names_a_smaller_batch(rois, monkeypatch):
    from napari_imc_vae.engine.training.trainer import TrainingError

    run = TrainingRun(rois, model_config=TINY_MODEL, train_config=TrainConfig(batch_size=16, device="cpu"))

    def out_of_memory(*_):
        raise torch.OutOfMemoryError("no room")

    monkeypatch.setattr(run.trainer, "_train_step", out_of_memory)
    with pytest.raises(TrainingError, match="out of memory on cpu at batch size 16; try a smaller batch, e.g. --batch 8"):
        measure_step_rate(run.trainer)


def test_plan_run_says_what_a_budget_buys_and_leaves_the_run_as_it_was(rois):
    run = TrainingRun(rois, model_config=TINY_MODEL, train_config=TrainConfig(batch_size=16, device="cpu"))
    plan = plan_run(run, 0.02)
    assert run.trainer.config == run.train_config == TrainConfig(batch_size=16, device="cpu")  # unchanged
    assert plan.time_limit_s == pytest.approx(1.2) and plan.steps == plan.rate.steps_for(1.2)
    assert f"budget 0.02 min: {plan.steps:,} steps" in plan.text and "passes over the training patches" in plan.text
    assert plan_run(run, None).steps == 2000  # no budget: the run's own steps, timed
    run.use_train_config(replace(run.train_config, steps=plan.steps, time_limit_s=plan.time_limit_s))
    trained, _ = run.run()
    assert 0 < trained.step <= plan.steps  # the time limit may end it first on a busy machine
    assert trained.train_config.steps == plan.steps and trained.train_config.time_limit_s == pytest.approx(1.2)
    with pytest.raises(ValueError, match="may change steps, time_limit_s, val_every only, got changes to batch_size"):
        run.use_train_config(replace(run.train_config, batch_size=32))


def test_a_model_not_built_yet_gets_a_rate_from_random_patches_of_its_shape():
    before = torch.random.get_rng_state()
    rate = probe_step_rate(7, TINY_MODEL, train_config=TrainConfig(batch_size=16, device="cpu"), steps=2, warmup=1)
    assert rate.steps_per_s > 0 and "steps/s" in str(rate)
    assert torch.equal(before, torch.random.get_rng_state())  # the probe does not move the user's seed


def test_cli_estimate_prints_the_plan_and_writes_nothing(imc_testdata, tmp_path, capsys):
    model = tmp_path / "m.pt"
    assert main(["train", str(imc_testdata / "steinbock_img"), "-o", str(model), "--budget", "quick",
                 "--estimate", *TINY]) == 0
    out = capsys.readouterr().out
    assert re.search(r"budget 1 min: [\d,]+ steps, [\d.]+ passes over the training patches at [\d.]+ steps/s", out)
    assert not model.exists()


def test_cli_budget_trains_the_planned_steps(imc_testdata, tmp_path, capsys):
    model = tmp_path / "m.pt"
    assert main(["train", str(imc_testdata / "steinbock_img"), "-o", str(model), "--budget", "0.03", *TINY]) == 0
    out = capsys.readouterr().out
    planned = int(re.search(r"budget 0.03 min: ([\d,]+) steps", out).group(1).replace(",", ""))
    # all planned steps done, or the budget ran out first (validation and reads are not in the timed steps)
    done, of = re.search(r"(?:done after (\d+) steps in total|the time budget \(1.8 s\) ran out after ([\d,]+) of "
                         rf"the {planned:,} planned steps)", out).groups()
    assert model.exists() and (int(done) == planned if done else 0 < int(of.replace(",", "")) < planned)


def test_cli_exact_steps_get_an_estimate_too(imc_testdata, tmp_path, capsys):
    assert main(["train", str(imc_testdata / "steinbock_img"), "-o", str(tmp_path / "m.pt"), "--steps", "5",
                 *TINY]) == 0
    out = capsys.readouterr().out
    assert re.search(r"5 steps: about \d+ s", out) and "done after 5 steps" in out


def test_cli_refuses_an_unknown_budget_as_a_usage_error(imc_testdata, tmp_path, capsys):
    model = tmp_path / "m.pt"
    with pytest.raises(SystemExit) as exit_:  # argparse's own check of --budget (cli._arguments.budget_arg)
        main(["train", str(imc_testdata / "steinbock_img"), "-o", str(model), "--budget", "fast", *TINY])
    assert exit_.value.code == 2 and not model.exists()
    assert "--budget: expected quick, standard, thorough or a number of minutes, got 'fast'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--budget", "1", "--steps", "4"], "give --budget, or --steps"),
    (["--budget", "1", "--time-limit", "30"], "give --budget, or --steps"),
])
def test_cli_refuses_a_bad_budget_before_reading(imc_testdata, tmp_path, capsys, argv, message):
    model = tmp_path / "m.pt"
    assert main(["train", str(imc_testdata / "steinbock_img"), "-o", str(model), *argv, *TINY]) == 1
    assert message in capsys.readouterr().err and not model.exists()


def test_kl_target_asks_for_a_capacity_in_nats():
    from napari_imc_vae.engine.model.critic import CriticConfig, critic

    x = torch.zeros(4, 2, 4, 4)
    mu, logvar = torch.full((4, 3), 2.0, requires_grad=True), torch.zeros(4, 3)  # KL = 3 × ½·4 = 6 nats
    free = critic(x, x, mu, logvar, CriticConfig())
    assert float(free.kld_loss) == pytest.approx(6.0) and float(free.kld_floored) == pytest.approx(6.0)
    for target, direction in ((10.0, +1), (3.0, -1)):  # below the target the KL is pulled up, above it down
        terms = critic(x, x, mu, logvar, CriticConfig(kl_target=target))
        assert float(terms.kld_floored) == pytest.approx(abs(6.0 - target))
        (grad,) = torch.autograd.grad(terms.loss, mu)
        assert np.all(np.sign(-grad.numpy()) == direction)  # a descent step moves |mu| (the KL) that way
