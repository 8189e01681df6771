"""Real-data acceptance (engine issue): leave-one-ROI-out on the steinbock OME-TIFFs, and smooth
synthetic 512-channel feature maps, against PCA with as many components as latent dimensions.

    python bench/acceptance.py --minutes 10 --held 0 7 14 --seeds 0 1     # the issue's protocol
    python bench/acceptance.py --minutes 2 --held 0 --seeds 0             # a quick look
    python bench/acceptance.py --smooth --minutes 3                       # 512-channel feature maps

For each held-back ROI and seed: train on the other 14 ROIs for at most ``--minutes`` (2 CPU threads),
reconstruct the held-back ROI whole (overlapping tiles, DESIGN §5), then measure model, PCA-k and the
mean predictor (fitted on the training ROIs' patches) on the held-back ROI's patches (DESIGN §4).
Prints one line per run, the means and the targets' verdicts, and writes JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from napari_imc_vae.datasets import synthetic_feature_maps
from napari_imc_vae.engine.quality.measures import reconstruction_measures
from napari_imc_vae.engine.model.critic import CriticConfig
from napari_imc_vae.engine.quality.evaluate import evaluate
from napari_imc_vae.engine.training.trainer import TrainConfig
from napari_imc_vae.engine.apply.inference import apply_model
from napari_imc_vae.engine.training.run import TrainingRun
from napari_imc_vae.io import ImcImage, read_imc
from napari_imc_vae.preprocessing import NormalizationParams

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imc-testdata" / "steinbock_img"


def cut_patches(image: np.ndarray, patch: int, stride: int) -> np.ndarray:
    """(C, Y, X) → (N, C, P, P) on a stride grid."""
    c, h, w = image.shape
    return np.stack([image[:, y : y + patch, x : x + patch]
                     for y in range(0, h - patch + 1, stride) for x in range(0, w - patch + 1, stride)])


def run_one(train: list[ImcImage], held: ImcImage, *, seed: int, minutes: float, args) -> dict:
    params = NormalizationParams(zscore=True) if args.smooth else NormalizationParams(
        hot_pixel_threshold=50.0, arcsinh_cofactor=5.0, zscore=True)
    model_config = dict(patch_size=args.patch, latent_dim=args.latent, arch=args.arch, width=args.width, depth=args.depth)
    train_config = TrainConfig(steps=args.steps or 10**7, batch_size=args.batch, lr=args.lr, seed=seed, device="cpu",
                               val_every=10**7, val_fraction=0.0, time_limit_s=None if args.steps else 60 * minutes,
                               precision=args.precision)
    critic_config = CriticConfig(kld_scale=args.kld_scale, free_bits=args.free_bits)
    if args.mse_only:
        critic_config = CriticConfig(cosine_weight=0, gradient_weight=0, kld_scale=args.kld_scale, free_bits=args.free_bits)
    started = time.perf_counter()
    run = TrainingRun(train, normalization=params, model_config=model_config, critic_config=critic_config,
                      train_config=train_config)
    trained, _ = run.run()
    seconds = time.perf_counter() - started
    recon = apply_model(trained, held)  # whole held-back image, overlapping tiles
    target = trained.normalizer(held)
    p = args.patch
    val = cut_patches(target, p, max(1, p // 2))
    train_patches = run.sampler.training_patches(20000).cpu().numpy()
    report = evaluate(trained.model, val, train_patches)
    # whole-image figures: the stitched reconstruction against the image, PCA stitched the same way
    whole_r2 = reconstruction_measures(target[None], recon.normalized[None])["r2"]
    return {
        "held": held.name, "seed": seed, "steps": trained.step, "train_s": round(seconds, 1),
        "patches_per_s": round(trained.step * args.batch / seconds),
        "model": vars(report.model), "pca": vars(report.pca), "mean": vars(report.mean),
        "model_smooth_r2": report.model_smooth.r2, "pca_smooth_r2": report.pca_smooth.r2,
        "whole_image_r2": whole_r2, "kld_raw": float(np.mean([h["kld_loss"] for h in trained.history[-50:]])),
        "verdicts": report.verdicts(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--held", type=int, nargs="+", default=[0, 7, 14])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--smooth", action="store_true", help="synthetic 512-channel feature maps instead")
    parser.add_argument("--patch", type=int, default=8)
    parser.add_argument("--latent", type=int, default=32)
    parser.add_argument("--arch", default="mlp")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--mse-only", action="store_true", help="no cosine and gradient terms")
    parser.add_argument("--kld-scale", type=float, default=CriticConfig.kld_scale)
    parser.add_argument("--free-bits", type=float, default=CriticConfig.free_bits)
    parser.add_argument("--precision", default="fp32", choices=("auto", "bf16", "fp32"))
    parser.add_argument("--steps", type=int, default=0, help="train this many steps instead of --minutes")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"machine: {platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"{args.minutes} min/run, arch {args.arch} width {args.width} depth {args.depth} latent {args.latent} "
          f"patch {args.patch} batch {args.batch} lr {args.lr} kld_scale {args.kld_scale} free_bits {args.free_bits}"
          f" {args.precision}{' mse-only' if args.mse_only else ''}{f' steps {args.steps}' if args.steps else ''}", flush=True)
    if args.smooth:
        images = synthetic_feature_maps()
        splits = [(images[:-1], images[-1])]
    else:
        images = [read_imc(f) for f in sorted(DATA.glob("*.ome.tiff"))]
        splits = [([im for j, im in enumerate(images) if j != i], images[i]) for i in args.held]
    rows = []
    for train, held in splits:
        for seed in args.seeds:
            r = run_one(train, held, seed=seed, minutes=args.minutes, args=args)
            rows.append(r)
            m, p = r["model"], r["pca"]
            print(f"{r['held']:28} seed {seed}: {r['steps']} steps {r['patches_per_s']} p/s | "
                  f"R² {m['r2']:.3f} vs PCA {p['r2']:.3f} (Δ {m['r2'] - p['r2']:+.3f}) | sharp {m['sharpness_ratio']:.3f} "
                  f"vs {p['sharpness_ratio']:.3f} | div {m['diversity_ratio']:.3f} vs {p['diversity_ratio']:.3f} | "
                  f"AU {m['active_units']} | perm {m['perm_accuracy']:.3f} | smooth R² {r['model_smooth_r2']:.3f} vs "
                  f"{r['pca_smooth_r2']:.3f} | KL {r['kld_raw']:.0f}", flush=True)
    mean = lambda key, who: float(np.mean([r[who][key] for r in rows]))  # noqa: E731
    d_r2 = [r["model"]["r2"] - r["pca"]["r2"] for r in rows]
    print(f"\nmean over {len(rows)} runs: R² {mean('r2', 'model'):.3f} vs PCA {mean('r2', 'pca'):.3f} "
          f"(Δ {np.mean(d_r2):+.3f} ± {np.std(d_r2):.3f}); sharpness {mean('sharpness_ratio', 'model'):.3f} vs "
          f"{mean('sharpness_ratio', 'pca'):.3f}; diversity {mean('diversity_ratio', 'model'):.3f} vs "
          f"{mean('diversity_ratio', 'pca'):.3f}; active units {mean('active_units', 'model'):.1f}/{args.latent}; "
          f"perm accuracy {mean('perm_accuracy', 'model'):.3f}")
    if args.smooth:
        checks = {"R² ≥ 0.8": mean("r2", "model") >= 0.8, "sharpness ≥ 0.7": mean("sharpness_ratio", "model") >= 0.7,
                  "diversity ≥ 0.7": mean("diversity_ratio", "model") >= 0.7}
    else:
        checks = {
            "R² ≥ PCA-k + 0.02": np.mean(d_r2) >= 0.02,
            "sharpness ≥ 1.2× PCA-k": mean("sharpness_ratio", "model") >= 1.2 * mean("sharpness_ratio", "pca"),
            "diversity ≥ PCA-k": mean("diversity_ratio", "model") >= mean("diversity_ratio", "pca"),
            "active units ≥ 25%": mean("active_units", "model") >= 0.25 * args.latent,
            "perm accuracy ≥ 0.95": mean("perm_accuracy", "model") >= 0.95,
        }
    for name, ok in checks.items():
        print(f"  [{'met' if ok else 'NOT met'}] {name}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "runs": rows}, indent=2, default=str))


if __name__ == "__main__":
    main()
