"""GPU memory goes back when training in napari ends, is stopped, or its widget closes; the
widget shows GPU memory while training on CUDA (issue 11 point 6). No GPU here: torch.cuda
reports an initialized CUDA and counts empty_cache calls; the model really moves to the CPU."""

from __future__ import annotations

import pytest
import torch

from napari_imc_vae._napari.train_task import TrainJob, TrainRequest, TrainUpdate, training_updates
from napari_imc_vae.engine.model.critic import CriticConfig
from napari_imc_vae.engine.training.trainer import TrainConfig, TrainProgress
from napari_imc_vae.io import read_imc

FILE = "steinbock_img/20210305_NE_mockData5_003.ome.tiff"
TINY = {"patch_size": 8, "latent_dim": 4, "width": 32, "depth": 1}


@pytest.fixture
def cuda_in_use(monkeypatch):
    """torch.cuda as after a run on the GPU; records empty_cache calls and modules sent to the CPU."""
    seen = {"empty_cache": 0, "to_cpu": []}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: seen.update(empty_cache=seen["empty_cache"] + 1))
    to_cpu = torch.nn.Module.cpu

    def recording_cpu(module):
        seen["to_cpu"].append(module)
        return to_cpu(module)

    monkeypatch.setattr(torch.nn.Module, "cpu", recording_cpu)
    return seen


@pytest.fixture
def request_for(imc_testdata):
    image = read_imc(imc_testdata / FILE)

    def make(steps: int) -> TrainRequest:
        return TrainRequest(images=[image], normalization=None, model_config=dict(TINY),
                            critic_config=CriticConfig(),
                            train_config=TrainConfig(steps=steps, batch_size=32, device="cpu", val_every=50,
                                                     max_val_patches=64, log_every=5))
    return make


@pytest.fixture
def runs(monkeypatch):
    """Weak references to the training runs the use case makes: none may outlive its training."""
    import weakref

    from napari_imc_vae.engine.training import use_case

    made = []

    class Recorded(use_case.TrainingRun):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(weakref.ref(self))

    monkeypatch.setattr(use_case, "TrainingRun", Recorded)
    return made


def _run_freed(runs) -> bool:
    import gc

    gc.collect()
    return len(runs) == 1 and runs[0]() is None


def drive(gen, on_update=lambda update: None):
    """Run a training generator to its end; its return value (the TrainOutcome)."""
    try:
        while True:
            on_update(next(gen))
    except StopIteration as done:
        return done.value


@pytest.mark.usefixtures("one_torch_thread")
def test_gpu_memory_goes_back_when_training_ends(cuda_in_use, request_for, runs):
    job = TrainJob()
    outcome = drive(training_updates(request_for(10), job))
    assert not outcome.stopped and outcome.trained.step == 10
    assert cuda_in_use["empty_cache"] == 1
    assert any(m is outcome.trained.model for m in cuda_in_use["to_cpu"])
    assert _run_freed(runs)  # no reference left to the run's sampler (its pixels on the GPU)
    state = outcome.trained.optimizer_state["state"]
    assert state and all(t.device.type == "cpu" for s in state.values() for t in s.values())
    assert outcome.report is not None  # the report ran before the model left the GPU


@pytest.mark.usefixtures("one_torch_thread")
def test_gpu_memory_goes_back_when_training_is_stopped(cuda_in_use, request_for):
    job = TrainJob()
    outcome = drive(training_updates(request_for(10_000), job), lambda update: job.stop())
    assert outcome.stopped and outcome.trained.step < 10_000
    assert cuda_in_use["empty_cache"] == 1 and any(m is outcome.trained.model for m in cuda_in_use["to_cpu"])


@pytest.mark.usefixtures("one_torch_thread")
def test_gpu_memory_goes_back_when_the_widget_closes(cuda_in_use, request_for, runs):
    job = TrainJob()
    gen = training_updates(request_for(10_000), job)
    first = next(gen)
    while not isinstance(first, TrainUpdate):  # the plan comes first
        first = next(gen)
    model = runs[0]().model
    assert cuda_in_use["empty_cache"] == 0 and first.records[-1].run_step >= 5
    gen.close()  # what the worker does when the widget or viewer closes mid-run
    assert cuda_in_use["empty_cache"] == 1 and any(m is model for m in cuda_in_use["to_cpu"])
    assert _run_freed(runs)


def test_widget_shows_gpu_memory_only_while_training_on_cuda(make_napari_viewer):
    from napari_imc_vae._napari.train_widget import TrainWidget

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-imc-vae", "Train VAE")
    assert isinstance(widget, TrainWidget)
    label = widget.gpu_memory_label
    metrics = {"loss": 1.0, "mse": 0.5}
    widget._on_yielded(TrainUpdate([TrainProgress(10, 10, 100, metrics, device="cpu")]))
    assert not label.isVisibleTo(widget)
    widget._shown_at = float("-inf")  # the progress is shown at most twice a second: as if 0.5 s had passed
    widget._on_yielded(TrainUpdate([TrainProgress(20, 20, 100, metrics, device="cuda:0",
                                                  gpu_memory=(1_500_000_000, 2_000_000_000, 80_000_000_000))]))
    assert label.isVisibleTo(widget)
    assert label.text() == "GPU memory: 1.50 GB in tensors, 2.00 GB held by torch, of 80.0 GB"
    widget._finish_progress()
    assert not label.isVisibleTo(widget)


@pytest.mark.usefixtures("one_torch_thread")
def test_reconstruction_runs_on_the_best_device_then_hands_gpu_memory_back(cuda_in_use, request_for,
                                                                          imc_testdata, monkeypatch):
    from napari_imc_vae._napari.reconstruct_task import run_reconstruction
    from napari_imc_vae.engine import device as device_module

    outcome = drive(training_updates(request_for(5), TrainJob()))
    asked, resolve = [], device_module.resolve_device
    monkeypatch.setattr(device_module, "resolve_device", lambda name="auto": asked.append(name) or resolve(name))
    before = cuda_in_use["empty_cache"]
    image = read_imc(imc_testdata / FILE)
    result = run_reconstruction(outcome.trained, image, k=0)
    assert asked == ["auto"]  # not "wherever the model happens to be" (the CPU, after training)
    assert cuda_in_use["empty_cache"] == before + 1
    assert cuda_in_use["to_cpu"][-1] is outcome.trained.model
    assert result.raw.shape == image.shape
