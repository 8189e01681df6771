"""Training steps in N seconds: the Train VAE widget docked in napari against the same work headless.

    xvfb-run -a python bench/bench_widget_rate.py [--seconds 10] [--repeats 1]

Headless runs :func:`napari_imc_vae._napari.train_task.training_updates` (the widget's worker
body, no Qt) on the synthetic sample (32 channels, 256 × 256 px); docked trains the same
model from the widget (activity-dock progress off) while napari's event loop runs. Both stop
after ``--seconds`` of training; back to back, alternating which goes first. Quote ``uptime``.
"""

from __future__ import annotations

import argparse
import os
import time

import napari_imc_vae  # noqa: F401 - first, as napari imports it: passive OpenMP waiting

MODEL = {"patch_size": 8, "latent_dim": 16, "width": 256}


def headless(seconds: float) -> tuple[int, str]:
    from napari_imc_vae._napari.train_task import TrainJob, TrainRequest, describe_device, training_updates
    from napari_imc_vae.datasets import synthetic_tissue
    from napari_imc_vae.engine.critic import CriticConfig
    from napari_imc_vae.engine.trainer import TrainConfig

    request = TrainRequest(images=[synthetic_tissue()], normalization=None, model_config=dict(MODEL),
                           critic_config=CriticConfig(),
                           train_config=TrainConfig(steps=100_000, batch_size=256, device="cpu"))
    job, start = TrainJob(), None
    gen = training_updates(request, job)
    try:
        while True:
            next(gen)
            start = start or time.perf_counter()  # the first update: data prepared, training on
            if time.perf_counter() - start >= seconds:
                job.stop()
    except StopIteration as done:
        return done.value.trained.step, describe_device("cpu")


def docked(seconds: float) -> tuple[int, str]:
    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    viewer = napari.Viewer(title="bench: widget training rate")
    viewer.open_sample("napari-imc-vae", "synthetic_tissue")
    _, widget = viewer.window.add_plugin_dock_widget("napari-imc-vae", "Train VAE")
    f = widget.form
    f.patch.value, f.latent.value, f.hidden_width.value = MODEL["patch_size"], MODEL["latent_dim"], MODEL["width"]
    f.steps.value, f.batch.value, f.device.value = 100_000, 256, "cpu"
    widget.activity.setChecked(False)
    loop, outcome, started = QEventLoop(), [], []

    def first_update(*_):
        if not started:  # time from the first progress, as headless
            started.append(time.perf_counter())
            QTimer.singleShot(int(seconds * 1000), widget.stop)

    widget.finished.connect(lambda o: (outcome.append(o), loop.quit()))
    assert widget.train() is not None
    widget.worker.yielded.connect(first_update)
    QTimer.singleShot(int((seconds + 300) * 1000), loop.quit)
    loop.exec()
    text = widget.device_label.text()
    viewer.close()
    return (outcome[0].trained.step if outcome and outcome[0] else 0), text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    for i in range(args.repeats):
        order = (headless, docked) if i % 2 == 0 else (docked, headless)
        steps = {}
        for fn in order:
            steps[fn.__name__], device = fn(args.seconds)
            print(f"{fn.__name__:8}: {steps[fn.__name__]} steps in {args.seconds:g} s ({device})", flush=True)
        print(f"docked / headless: {steps['docked'] / max(1, steps['headless']):.0%}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
