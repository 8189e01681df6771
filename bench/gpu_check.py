"""The figures of the one-command GPU check (``bench/gpu_check.sh``), in one process.

    python bench/gpu_check.py --device cuda --out DIR          # the real run, ~4 min on an H200
    python bench/gpu_check.py --device cpu --quick --out DIR   # a dry run of every section

Sections, each timed and written as soon as it is done (a failing one is recorded, the rest
still run): the machine; bf16 and fp32 matmul rates; training throughput at 5, 40 and 512
channels with the share of the bf16 matmul rate measured in the same run; the training loop
reading its loss every step against every ``log_every`` steps; whole-image reconstruction of a
4096×4096×40 image (time, peak GPU memory); bf16 against fp32 quality on one held-back ROI.
Writes ``DIR/gpu_check.json`` (all figures) and ``DIR/gpu_check.md`` (tables for
docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np

import napari_imc_vae  # noqa: F401 - before torch, as the CLI and napari import it (OpenMP waiting)
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_train beside this file
from bench_train import matmul_rate, run as train_rate  # noqa: E402

from napari_imc_vae.engine.device import compute_policy, resolve_device, resolve_precision  # noqa: E402

IMC_TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imc-testdata" / "steinbock_img"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine(args, device: torch.device) -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
            "cpu": platform.processor() or platform.machine(),
            "compute_policy": compute_policy(device, resolve_precision("auto", device))}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 1e9, 1),
                    multiprocessors=props.multi_processor_count, cuda=torch.version.cuda)
    return info


def matmuls(args, device: torch.device) -> dict:
    n = 1024 if args.quick else (8192 if device.type == "cuda" else 2048)
    seconds = 0.5 if args.quick else 3.0
    return {"n": n, "bf16_flop_per_s": matmul_rate(device, torch.bfloat16, n, seconds),
            "fp32_flop_per_s": matmul_rate(device, torch.float32, n, seconds)}


def training(args, device: torch.device, bf16_rate: float) -> list[dict]:
    """The default model's training step, timed back to back (no loop overhead, no reads)."""
    channels = [5, 40] if args.quick else [5, 40, 512]
    batches = [64] if args.quick else [256, 2048]
    seconds = 1.0 if args.quick else 6.0
    precision = "bf16" if device.type == "cuda" else "auto"
    rows = []
    for c in channels:
        for batch in batches:
            r = train_rate(c, 8, "mlp", precision, batch, str(device), seconds, 512)
            rows.append({"channels": c, "batch": batch, "precision": precision, **r,
                         "share_of_bf16_matmul": r["flop_per_s"] / bf16_rate})
            print(f"  train C={c} batch={batch}: {r['patches_per_s']:,.0f} patches/s, "
                  f"{100 * r['flop_per_s'] / bf16_rate:.1f}% of the bf16 matmul rate", flush=True)
    return rows


def loop_reads(args, device: torch.device) -> list[dict]:
    """Trainer.fit reading the loss every step against every log_every (default) steps."""
    from napari_imc_vae.engine.model.critic import CriticConfig
    from napari_imc_vae.engine.data.patches import PatchSampler
    from napari_imc_vae.engine.model.vae import ModelConfig, PatchVAE
    from napari_imc_vae.engine.training.trainer import TrainConfig, Trainer

    steps = 30 if args.quick else 400
    images = [torch.randn(40, 256, 256).numpy()]
    rows = []
    for log_every in (1, TrainConfig.log_every):
        torch.manual_seed(0)
        config = TrainConfig(steps=steps, batch_size=256, device=str(device), val_every=10**9, log_every=log_every,
                             val_fraction=0.0)
        trainer = Trainer(PatchVAE(ModelConfig(in_channels=40)), PatchSampler(images, 8, val_fraction=0.0,
                                                                               device=device),
                          CriticConfig(), config)
        trainer.fit()  # warm-up run, then the timed one on the same trainer
        trainer = Trainer(trainer.model, trainer.sampler, CriticConfig(), config)
        sync(device)
        t0 = time.perf_counter()
        trainer.fit()
        sync(device)
        rows.append({"log_every": log_every, "steps": steps,
                     "steps_per_s": steps / (time.perf_counter() - t0)})
        print(f"  fit, read every {log_every} step(s): {rows[-1]['steps_per_s']:,.0f} steps/s", flush=True)
    return rows


def reconstruction(args, device: torch.device) -> list[dict]:
    """The default 40-channel model over a whole image, stride 4, as ``reconstruct`` does."""
    from napari_imc_vae.engine.apply.inference import reconstruct_image
    from napari_imc_vae.engine.model.vae import ModelConfig, PatchVAE
    from napari_imc_vae.preprocessing import Normalizer

    size = 512 if args.quick else 4096
    rng = np.random.default_rng(0)
    rates = rng.gamma(0.5, 4.0, size=40).astype(np.float32)
    tile = rng.poisson(rates[:, None, None], size=(40, 512, 512)).astype(np.float32)
    image = np.tile(tile, (1, size // 512, size // 512))  # counts like IMC; tiled to be quick to make
    norm = Normalizer.fit(tile, hot_pixel_threshold=50, arcsinh_cofactor=5)
    torch.manual_seed(0)
    model = PatchVAE(ModelConfig(in_channels=40)).eval()
    rows = []
    for batch in [2048]:  # the default of reconstruct and of the widget
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        rec = reconstruct_image(model, image, norm, batch_size=batch, device=device)
        sync(device)
        seconds = time.perf_counter() - t0
        row = {"size": size, "channels": 40, "batch": batch, "seconds": seconds,
               "finite": bool(np.isfinite(rec.error).all())}
        if device.type == "cuda":
            row.update(peak_gpu_allocated_gb=torch.cuda.max_memory_allocated(device) / 1e9,
                       peak_gpu_reserved_gb=torch.cuda.max_memory_reserved(device) / 1e9)
        rows.append(row)
        print(f"  reconstruct {size}²×40, batch {batch}: {seconds:.1f} s", flush=True)
        del rec
    return rows


def quality(args, device: torch.device) -> dict:
    """Train in fp32 and in bf16 (same seed, same time), R² on a held-back ROI, whole image."""
    from napari_imc_vae.engine.quality.measures import reconstruction_measures
    from napari_imc_vae.engine.training.trainer import TrainConfig
    from napari_imc_vae.engine.apply.inference import apply_model
    from napari_imc_vae.engine.training.run import TrainingRun

    files = sorted(IMC_TESTDATA.glob("*.ome.tiff")) if IMC_TESTDATA.is_dir() else []
    if files:
        from napari_imc_vae.io import read_imc

        images, source = [read_imc(f) for f in files], f"steinbock ROIs of {IMC_TESTDATA}"
    else:  # the test data do not travel to a GPU machine unless carried
        from napari_imc_vae.datasets import synthetic_tissue

        images, source = [synthetic_tissue((192, 192), 40, seed=s) for s in range(6)], "synthetic_tissue 192²×40"
    held, train = images[0], images[1:]
    seconds = 3.0 if args.quick else args.quality_seconds
    out = {"data": source, "held": held.name, "seconds": seconds}
    for precision in ("fp32", "bf16"):
        config = TrainConfig(steps=10**7, batch_size=256, seed=0, device=str(device), precision=precision,
                             val_every=10**7, val_fraction=0.0, time_limit_s=seconds)
        run = TrainingRun(train, train_config=config)
        trained, _ = run.run()
        rec = apply_model(trained, held, device=str(device))
        target = trained.normalizer(held)
        whole_r2 = reconstruction_measures(target[None], rec.normalized[None])["r2"]
        out[precision] = {"steps": trained.step, "whole_image_r2": float(whole_r2)}
        print(f"  quality {precision}: {trained.step} steps, held-out R² {out[precision]['whole_image_r2']:.4f}",
              flush=True)
    out["r2_difference_bf16_minus_fp32"] = out["bf16"]["whole_image_r2"] - out["fp32"]["whole_image_r2"]
    return out


def markdown(results: dict) -> str:
    lines = [f"GPU check, {results.get('date')}: {json.dumps(results.get('machine', {}))}", ""]
    mm = results.get("matmul")
    if isinstance(mm, dict) and "bf16_flop_per_s" in mm:
        lines += [f"matmul {mm['n']}²: bf16 {mm['bf16_flop_per_s'] / 1e12:.1f} TFLOP/s, "
                  f"fp32 {mm['fp32_flop_per_s'] / 1e12:.1f} TFLOP/s", ""]
    if isinstance(results.get("training"), list):
        lines += ["| C | batch | precision | patches/s | GFLOP/step | TFLOP/s | % bf16 matmul |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['channels']} | {r['batch']} | {r['precision']} | {r['patches_per_s']:,.0f} | "
                  f"{r['gflop_per_step']:.2f} | {r['flop_per_s'] / 1e12:.2f} | {100 * r['share_of_bf16_matmul']:.1f}% |"
                  for r in results["training"]]
        lines.append("")
    if isinstance(results.get("loop"), list):
        lines += [f"Trainer.fit, 40 channels, batch 256: read every {r['log_every']} step(s): "
                  f"{r['steps_per_s']:,.0f} steps/s" for r in results["loop"]] + [""]
    if isinstance(results.get("reconstruction"), list):
        for r in results["reconstruction"]:
            mem = (f", peak GPU memory {r['peak_gpu_allocated_gb']:.2f} GB allocated / "
                   f"{r['peak_gpu_reserved_gb']:.2f} GB reserved") if "peak_gpu_allocated_gb" in r else ""
            lines.append(f"reconstruct {r['size']}²×{r['channels']}, batch {r['batch']}: {r['seconds']:.1f} s{mem}")
        lines.append("")
    q = results.get("quality")
    if isinstance(q, dict) and "fp32" in q:
        lines.append(f"quality on {q['held']} ({q['data']}, {q['seconds']:g} s each): held-out R² fp32 "
                     f"{q['fp32']['whole_image_r2']:.4f} ({q['fp32']['steps']} steps), bf16 "
                     f"{q['bf16']['whole_image_r2']:.4f} ({q['bf16']['steps']} steps)")
    failed = [k for k, v in results.items() if isinstance(v, dict) and "error" in v]
    if failed:
        lines += ["", "FAILED sections: " + ", ".join(failed)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check that every section runs")
    parser.add_argument("--out", type=Path, default=Path("gpu_check_out"))
    parser.add_argument("--quality-seconds", type=float, default=40.0)
    parser.add_argument("--sections", nargs="+", default=["matmul", "training", "loop", "reconstruction", "quality"])
    args = parser.parse_args()
    device = resolve_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick}

    def save() -> None:
        (args.out / "gpu_check.json").write_text(json.dumps(results, indent=1))
        (args.out / "gpu_check.md").write_text(markdown(results))

    results["machine"] = machine(args, device)
    print(f"machine: {results['machine']}", flush=True)
    save()
    for name in args.sections:
        t0 = time.perf_counter()
        print(f"[{name}]", flush=True)
        try:
            if name == "matmul":
                results[name] = matmuls(args, device)
            elif name == "training":
                bf16 = results.get("matmul", {}).get("bf16_flop_per_s") or matmul_rate(device, torch.bfloat16)
                results[name] = training(args, device, bf16)
            elif name == "loop":
                results[name] = loop_reads(args, device)
            elif name == "reconstruction":
                results[name] = reconstruction(args, device)
            elif name == "quality":
                results[name] = quality(args, device)
            else:
                raise ValueError(f"unknown section {name!r}")
        except Exception as e:  # noqa: BLE001 - record it; the other sections still run
            traceback.print_exc()
            results[name] = {"error": f"{type(e).__name__}: {e}"}
        results.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t0, 1)
        save()
    print(markdown(results), flush=True)
    return 1 if any(isinstance(v, dict) and "error" in v for v in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
