"""train_model leaves the process group however the run ends, also when building the run fails
after the Trainer joined it (a resumed optimizer state that does not load)."""

import pytest
import torch.distributed as dist

from napari_imc_vae.engine import device
from napari_imc_vae.engine.device import DistributedContext
from napari_imc_vae.engine.training import trainer
from napari_imc_vae.engine.training.settings import TrainSettings
from napari_imc_vae.engine.training.use_case import train_model
from napari_imc_vae.io import read_imc

FILE = "steinbock_img/20210305_NE_mockData1_001.ome.tiff"
MODEL = {"patch_size": 4, "latent_dim": 4, "width": 32, "depth": 1}
TRAIN = {"steps": 2, "batch_size": 16, "device": "cpu", "precision": "fp32", "max_val_patches": 32}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def one_process_group(one_gloo_process, monkeypatch):
    """As under torchrun, with one gloo process: init_distributed joins a real process group."""
    # init_distributed joins only a job of more than one process; this one is its own whole job
    monkeypatch.setattr(device, "process_context", lambda: DistributedContext(0, 2, 0))
    joined = []

    def init_and_record(where):
        context = device.init_distributed(where)
        joined.append(dist.is_initialized())
        return context

    monkeypatch.setattr(trainer, "init_distributed", init_and_record)
    return joined


def test_a_run_failing_after_the_group_was_joined_leaves_it(imc_testdata, one_process_group):
    image = read_imc(imc_testdata / FILE)
    first = train_model(image, TrainSettings(model=MODEL, train=TRAIN)).trained
    assert one_process_group == [True] and not dist.is_initialized()  # a run that ends leaves it too
    first.optimizer_state = {"state": {}, "param_groups": []}  # loaded by the Trainer after joining
    with pytest.raises(ValueError, match="different number of parameter groups"):
        train_model(image, TrainSettings(train=TRAIN), resume=first)
    assert one_process_group == [True, True]
    assert not dist.is_initialized()


def test_a_group_the_caller_joined_stays_joined(imc_testdata, one_process_group):
    """A caller that joined the job's group itself (init_distributed reuses it) still has it afterwards."""
    image = read_imc(imc_testdata / FILE)
    dist.init_process_group("gloo")
    train_model(image, TrainSettings(model=MODEL, train=TRAIN))
    assert one_process_group == [True]
    assert dist.is_initialized()
