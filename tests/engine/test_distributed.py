"""Two gloo processes on CPU under torchrun: the ranks end with identical weights at the same step,
a stop asked of one rank ends both at the next read, and only rank 0 writes."""

import os
import subprocess
import textwrap

import pytest
import torch

from dist_helpers import torchrun_cmd

# Runs the real command line under torchrun, recording what each rank ends with.
HELPER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from napari_imc_vae.engine.model_file import checkpoint
    from napari_imc_vae.engine.training import trainer

    OUT = os.environ["RANK_STATE_DIR"]
    rank = int(os.environ["RANK"])
    _fit, _save, _step = trainer.Trainer.fit, checkpoint.TrainedModel.save, trainer.Trainer._train_step
    losses, fitting = [], []

    def train_step(self, net, generator):  # records this rank's own loss; stops one rank
        terms = _step(self, net, generator)
        if not fitting:  # the steps timed before training (engine.training.budget) are undone: not counted
            return terms
        losses.append(float(terms[0]))
        if rank == int(os.environ["STOP_RANK"]) and len(losses) == int(os.environ["STOP_AT"]):
            self.stop()
        return terms

    def fit(self, *args, **kwargs):
        fitting.append(True)
        result = _fit(self, *args, **kwargs)
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        torch.save(state, os.path.join(OUT, f"rank{rank}.pt"))
        info = {"rank": self.dist.rank, "world": self.dist.world_size, "step": self.step,
                "losses": losses, "logged": [h["loss"] for h in result.history],
                "stopped": result.stopped}
        with open(os.path.join(OUT, f"rank{rank}.json"), "w") as f:
            json.dump(info, f)
        return result

    def save(self, path):
        open(os.path.join(OUT, f"saved_by_rank{rank}"), "w").close()
        return _save(self, path)

    trainer.Trainer.fit, checkpoint.TrainedModel.save, trainer.Trainer._train_step = fit, save, train_step
    from napari_imc_vae.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


TINY = ["--patch", "4", "--latent", "4", "--width", "32", "--depth", "1", "--batch", "16", "--device", "cpu"]


def _torchrun_train(imc_testdata, tmp_path, model, options: list[str], stop_rank: int, stop_at: int):
    """``train`` on two ROIs under torchrun with two gloo ranks; returns the run and the states folder."""
    helper = tmp_path / "helper.py"
    helper.write_text(HELPER)
    states = tmp_path / "states"
    states.mkdir()
    images = sorted((imc_testdata / "steinbock_img").glob("*_00[12].ome.tiff"))[:2]
    env = dict(os.environ, RANK_STATE_DIR=str(states), OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1",
               STOP_RANK=str(stop_rank), STOP_AT=str(stop_at))
    cmd = torchrun_cmd(helper, "train", *images, "-o", model, *options, *TINY)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    return out, states


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_two_gloo_ranks_end_identical_at_one_step_and_only_rank0_writes(imc_testdata, tmp_path):
    import json

    model = tmp_path / "out" / "model.pt"
    # rank 1 alone is asked to stop during its 6th step: both end at the read of step 10 (a 40-step
    # run validates at its end only: engine.defaults.validation_interval)
    out, states = _torchrun_train(imc_testdata, tmp_path, model, ["--steps", "40", "--seed", "3"], 1, 6)

    infos = [json.loads((states / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(i["rank"], i["world"], i["step"], i["stopped"]) for i in infos] == [(0, 2, 10, True),
                                                                                 (1, 2, 10, True)]
    # each rank samples its own patches (their losses differ), yet the weights are the same,
    # and both log each step's mean over the two ranks
    assert infos[0]["losses"] != infos[1]["losses"] and len(infos[0]["losses"]) == 10
    assert infos[0]["logged"] == infos[1]["logged"]
    means = [(a + b) / 2 for a, b in zip(infos[0]["losses"], infos[1]["losses"])]
    assert infos[0]["logged"] == pytest.approx(means, rel=1e-5)
    w0, w1 = (torch.load(states / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)

    # only rank 0 wrote the model file and printed the summary
    assert sorted(p.name for p in states.iterdir() if p.name.startswith("saved_by")) == ["saved_by_rank0"]
    assert sorted(p.name for p in model.parent.iterdir()) == ["model.pt"]
    assert out.stdout.count("model written to") == 1 and out.stdout.count("training on cpu") == 1
    from napari_imc_vae.engine.model_file.checkpoint import TrainedModel

    saved = TrainedModel.load(model)
    assert saved.step == 10 and saved.train_config.val_every == 50
    assert all(torch.equal(saved.model.state_dict()[k], w0[k]) for k in w0)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_a_budget_under_torchrun_plans_the_same_steps_on_every_rank(imc_testdata, tmp_path):
    import json
    import re

    model = tmp_path / "model.pt"
    # nobody is asked to stop: the budget ends the run
    out, states = _torchrun_train(imc_testdata, tmp_path, model, ["--budget", "0.03"], 0, 10**6)
    planned = int(re.search(r"budget 0.03 min: ([\d,]+) steps", out.stdout).group(1).replace(",", ""))
    infos = [json.loads((states / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert infos[0]["step"] == infos[1]["step"] and 0 < infos[0]["step"] <= planned
    from napari_imc_vae.engine.model_file.checkpoint import TrainedModel

    saved = TrainedModel.load(model)
    assert saved.train_config.steps == planned and saved.train_config.time_limit_s == pytest.approx(1.8)
