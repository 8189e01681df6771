"""Training steps in N seconds: the Train VAE widget docked in napari against the same work headless.

    xvfb-run -a -s "-screen 0 1920x1080x24" python bench/bench_widget_rate.py \
        [--seconds 10] [--repeats 1] [--activity] [--busy]

Headless runs :func:`napari_imc_vae._napari.train_task.training_updates` (the widget's worker
body, no Qt: the engine's training use case, as the CLI runs it) on the synthetic sample
(32 channels, 256 × 256 px); docked trains the same model from the widget, in napari's window
at 1920 × 1080 with the Normalize and Reconstruct docks tabified beside it (as the launcher
opens them), while napari's event loop runs: once with the activity-dock progress off (the
default) and, with ``--activity``, once with it on. Each stops after ``--seconds`` of training;
back to back, alternating which goes first. ``--busy`` runs it all beside a process spinning
on one core (``python -c "while True: pass"``). Prints the CPU model and the load average.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import napari_imc_vae  # noqa: F401 - first, as napari imports it: passive OpenMP waiting

MODEL = {"patch_size": 8, "latent_dim": 16, "width": 256}


def headless(seconds: float) -> tuple[int, str]:
    from napari_imc_vae._napari.train_task import TrainJob, TrainRequest, describe_device, training_updates
    from napari_imc_vae.datasets import synthetic_tissue
    from napari_imc_vae.engine.model.critic import CriticConfig
    from napari_imc_vae.engine.training.trainer import TrainConfig

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


def docked(seconds: float, activity: bool = False) -> tuple[int, str]:
    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    from napari_imc_vae._napari.launch import WIDGETS, raise_dock

    viewer = napari.Viewer(title="bench: widget training rate")
    viewer.window.resize(1920, 1080)
    viewer.open_sample("napari-imc-vae", "synthetic_tissue")
    docks = {}
    for name in WIDGETS:  # as the launcher opens them
        _, docks[name] = viewer.window.add_plugin_dock_widget("napari-imc-vae", name, tabify=bool(docks))
    widget = docks["Train VAE"]
    raise_dock(widget)
    f = widget.form
    f.patch.value, f.latent.value, f.hidden_width.value = MODEL["patch_size"], MODEL["latent_dim"], MODEL["width"]
    f.steps.value, f.batch.value, f.device.value = 100_000, 256, "cpu"
    widget.activity.setChecked(activity)
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
    updates = widget.activity_updates
    viewer.close()
    if activity:
        text += f"; {updates} activity-dock updates"
    return (outcome[0].trained.step if outcome and outcome[0] else 0), text


def docked_activity(seconds: float) -> tuple[int, str]:
    return docked(seconds, activity=True)


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--activity", action="store_true", help="also dock with the activity progress on")
    parser.add_argument("--busy", action="store_true", help="beside a process spinning on one core")
    args = parser.parse_args()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average before: {os.getloadavg()}; "
              f"{'beside a busy process' if busy else 'no busy process of ours'}")
        runs = [headless, docked, *([docked_activity] if args.activity else [])]
        for i in range(args.repeats):
            steps = {}
            for fn in runs if i % 2 == 0 else runs[::-1]:
                steps[fn.__name__], device = fn(args.seconds)
                print(f"{fn.__name__:15}: {steps[fn.__name__]} steps in {args.seconds:g} s, "
                      f"{steps[fn.__name__] / args.seconds:.2f} steps/s ({device})", flush=True)
            for name in runs[1:]:
                print(f"{name.__name__} / headless: {steps[name.__name__] / max(1, steps['headless']):.0%}")
        print(f"load average after: {os.getloadavg()}")
    finally:
        if busy is not None:
            busy.terminate()
            busy.wait()


if __name__ == "__main__":
    main()
