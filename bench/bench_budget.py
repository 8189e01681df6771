"""Does a budget end on time? The step rate timed before training against the run it planned.

    python bench/bench_budget.py                 # 0.5 min on the shared ROIs, quiet
    python bench/bench_budget.py --busy          # the same beside a busy core (napari's GUI thread)

For each budget: the steps per second :func:`plan_run` measured, the steps it planned, the steps
done, and the training's wall time against the budget (the time limit ends it on a slower
machine; a faster one finishes the planned steps early). Also the throwaway probe the widget uses
(:func:`probe_step_rate`, random patches of the run's shape) against the same run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imc-testdata" / "steinbock_img"


def _spin() -> None:
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[0.5])
    parser.add_argument("--busy", action="store_true", help="one busy process beside the run")
    args = parser.parse_args()
    busy = multiprocessing.Process(target=_spin, daemon=True) if args.busy else None
    if busy:
        busy.start()
    from napari_imc_vae.engine.training.budget import plan_run, probe_step_rate
    from napari_imc_vae.engine.device import compute_policy
    from napari_imc_vae.engine.training.trainer import TrainConfig
    from napari_imc_vae.engine.training.run import TrainingRun
    from napari_imc_vae.io import read_imc

    images = [read_imc(f) for f in sorted(DATA.glob("*.ome.tiff"))]
    import torch

    print(f"{platform.processor() or platform.machine()}, capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{'beside a busy process' if busy else 'quiet'}, load {os.getloadavg()[0]:.2f}")
    for minutes in args.minutes:
        run = TrainingRun(images, train_config=TrainConfig(device="cpu"))
        print(f"compute: {compute_policy(run.device, run.trainer.bf16)}")
        probe = probe_step_rate(run.model.config.in_channels, {"latent_dim": run.model.config.latent_dim})
        line = plan_run(run, minutes)
        planned = run.trainer.config.steps
        start = time.perf_counter()
        trained, _ = run.run()
        seconds = time.perf_counter() - start
        print(f"{line}\n  widget probe: {probe.steps_per_s:.1f} steps/s; run: {trained.step} of {planned} "
              f"steps in {seconds:.1f} s against a budget of {60 * minutes:.0f} s "
              f"({trained.step / seconds:.1f} steps/s including validation and the final fits)", flush=True)
    if busy:
        busy.terminate()


if __name__ == "__main__":
    main()
