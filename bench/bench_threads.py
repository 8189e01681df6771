"""CPU training throughput per thread policy, quiet and beside one busy process, back to back.

    python bench/bench_threads.py [--seconds 10] [--repeats 2] [--channels 5] [--policies ...]

Each policy runs in a fresh process (OpenMP reads its environment when torch is imported),
first on the quiet machine, then beside ``python -c "while True: pass"`` (as napari's GUI thread
is while it draws). Policies:

- ``default``: torch's own choice (one thread per core, OpenMP's default spin-then-sleep wait);
- ``one``: one torch thread;
- ``passive``: torch's thread count with ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep);
- ``one-passive``: both;
- ``engine``: what importing the package sets (passive waiting) and what the trainer applies
  (:func:`napari_imc_vae.engine.device.apply_thread_policy`).

Prints patches/s per policy and condition and the busy/quiet ratio; quote ``uptime`` with them:
other jobs on a shared machine change every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

POLICIES = ("default", "one", "passive", "one-passive", "engine")


def child(policy: str, seconds: float, channels: int, batch: int) -> dict:
    """Train the default model for ``seconds`` (after a warm-up); runs in its own process."""
    os.environ.pop("OMP_WAIT_POLICY", None)
    if policy in ("passive", "one-passive"):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    if policy == "engine":
        import napari_imc_vae  # noqa: F401 - before torch, as the CLI and napari import it
    import torch

    from napari_imc_vae.engine.model.critic import CriticConfig
    from napari_imc_vae.engine.data.patches import PatchSampler
    from napari_imc_vae.engine.device import apply_thread_policy
    from napari_imc_vae.engine.model.vae import ModelConfig, PatchVAE
    from napari_imc_vae.engine.training.trainer import TrainConfig, Trainer

    described = f"{torch.get_num_threads()} threads"
    if policy in ("one", "one-passive"):
        torch.set_num_threads(1)
        described = "1 thread"
    elif policy == "engine":
        described = apply_thread_policy()
    torch.manual_seed(0)
    images = [torch.randn(channels, 256, 256).numpy()]
    model = PatchVAE(ModelConfig(in_channels=channels))
    config = TrainConfig(steps=10**9, batch_size=batch, device="cpu", precision="fp32", val_every=10**9)
    trainer = Trainer(model, PatchSampler(images, 8, val_fraction=0.0, device="cpu"), CriticConfig(), config)
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        trainer._train_step(trainer.model, generator)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        trainer._train_step(trainer.model, generator)
        steps += 1
    return {"patches_per_s": steps * batch / (time.perf_counter() - start), "threads": torch.get_num_threads(),
            "policy": described}


def measure(policy: str, busy: bool, args) -> dict:
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        time.sleep(0.5 if busy else 0.0)  # let the scheduler see the busy process
        out = subprocess.run([sys.executable, __file__, "--child", policy, "--seconds", str(args.seconds),
                              "--channels", str(args.channels), "--batch", str(args.batch)],
                             capture_output=True, text=True, timeout=args.seconds * 4 + 120, check=True)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=2, help="quiet/busy pairs per policy (best kept)")
    parser.add_argument("--channels", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    parser.add_argument("--child", choices=POLICIES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.seconds, args.channels, args.batch)))
        return
    print(f"cores {len(os.sched_getaffinity(0))}, load average {os.getloadavg()}, "
          f"{args.seconds:g} s per run, best of {args.repeats}, {args.channels} channels, batch {args.batch}")
    print(f"{'policy':8} {'what it set':44} {'quiet':>8} {'busy':>8}  busy/quiet")
    for policy in args.policies:
        quiet, busy = [], []
        for _ in range(args.repeats):  # interleaved, so drifting load hits both conditions alike
            quiet.append(measure(policy, False, args))
            busy.append(measure(policy, True, args))
        q = max(r["patches_per_s"] for r in quiet)
        b = max(r["patches_per_s"] for r in busy)
        print(f"{policy:8} {quiet[0]['policy'][:44]:44} {q:8.0f} {b:8.0f}  {b / q:6.0%}", flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
