"""Training throughput: patches/s, model FLOP/s (FlopCounterMode) and the share of this machine's
fp32 and bf16 matmul rates, both measured in the same run.

    python bench/bench_train.py [--device cpu|cuda] [--seconds 20] [--channels 5 40] [--arch mlp conv]

Prints one line per setting; figures go to docs/benchmarks.md by hand (with the machine).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from napari_imc_vae.engine.model.critic import CriticConfig
from napari_imc_vae.engine.data.patches import PatchSampler
from napari_imc_vae.engine.model.vae import ModelConfig, PatchVAE
from napari_imc_vae.engine.training.trainer import TrainConfig, Trainer


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int = 2048, seconds: float = 3.0) -> float:
    """Achieved FLOP/s of an n×n matmul, the machine's practical peak for dense work."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_flops(trainer: Trainer) -> float:
    """FLOPs of one training step (forward + backward), counted by torch."""
    generator = torch.Generator(device=trainer.device).manual_seed(0)
    counter = FlopCounterMode(display=False)
    with counter:
        trainer._train_step(trainer.model, generator)
    return float(counter.get_total_flops())


def run(channels: int, patch: int, arch: str, precision: str, batch: int, device: str, seconds: float,
        width: int) -> dict:
    torch.manual_seed(0)
    images = [torch.randn(channels, 256, 256).numpy()]
    model = PatchVAE(ModelConfig(in_channels=channels, patch_size=patch, arch=arch, width=width))
    config = TrainConfig(steps=10**9, batch_size=batch, device=device, precision=precision, val_every=10**9)
    sampler = PatchSampler(images, patch, val_fraction=0.0, device=config.device if device != "auto" else "cpu")
    trainer = Trainer(model, sampler, CriticConfig(), config)
    flops = step_flops(trainer)
    generator = torch.Generator(device=trainer.device).manual_seed(1)
    for _ in range(5):  # warm-up
        trainer._train_step(trainer.model, generator)
    _sync(trainer.device)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        trainer._train_step(trainer.model, generator)
        steps += 1
    _sync(trainer.device)
    elapsed = time.perf_counter() - start
    return {"patches_per_s": steps * batch / elapsed, "flop_per_s": steps * flops / elapsed,
            "gflop_per_step": flops / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--channels", type=int, nargs="+", default=[5, 40])
    parser.add_argument("--patch", type=int, default=8)
    parser.add_argument("--arch", nargs="+", default=["mlp", "conv"])
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--width", type=int, default=512)
    args = parser.parse_args()
    device = torch.device(args.device)
    fp32 = matmul_rate(device, torch.float32)
    bf16 = matmul_rate(device, torch.bfloat16)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"matmul 2048²: fp32 {fp32 / 1e9:.0f} GFLOP/s, bf16 {bf16 / 1e9:.0f} GFLOP/s")
    print("arch  C   P  precision batch  patches/s  GFLOP/step  GFLOP/s  %fp32-mm  %bf16-mm")
    for arch in args.arch:
        for channels in args.channels:
            for precision in args.precision:
                r = run(channels, args.patch, arch, precision, args.batch, args.device, args.seconds, args.width)
                print(f"{arch:5} {channels:<3} {args.patch:<2} {precision:9} {args.batch:<5}  "
                      f"{r['patches_per_s']:9.0f}  {r['gflop_per_step']:10.2f}  {r['flop_per_s'] / 1e9:7.1f}  "
                      f"{100 * r['flop_per_s'] / fp32:7.1f}%  {100 * r['flop_per_s'] / bf16:7.1f}%", flush=True)


if __name__ == "__main__":
    main()
