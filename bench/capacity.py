"""Capacity and budget sweep (#13): latent size, KL setting, training length, architecture.

    python bench/capacity.py --data real --latent 16 32 64 128 --out docs/capacity/runs.jsonl
    python bench/capacity.py --data synthetic --latent 64 --free-bits 2 4 --steps 2000 8000 --out ...
    python bench/capacity.py --summary docs/capacity/runs.jsonl        # the tables of docs/capacity.md

Every combination of the listed settings is trained (CLI defaults otherwise) and measured with a
yardstick independent of the product's report: scikit-learn PCA with k = latent dims fitted on
the *training* images' patches, both reconstructions made whole from Hann-weighted overlapping
tiles at stride P/2, pooled R² in normalized (hot pixels → arcsinh(x/5) → z-score) units.

``--data real``: leave-one-ROI-out on the shared steinbock ROIs (train on the other 14).
``--data synthetic``: train on synthetic tissues (seeds 0, 1) with the shared ROIs' markers,
measure on seed 2, against its noisy counts *and* against the noise-free intensities it was drawn
from (``truth``), next to Gaussian and median filters tuned on the training images' truth.

Each run appends one JSON line to ``--out`` as it finishes, so a long sweep survives a stop.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from sklearn.decomposition import PCA

from napari_imc_vae.datasets import synthetic_tissue_with_truth
from napari_imc_vae.engine.quality.measures import active_units, reconstruction_measures
from napari_imc_vae.engine.model.critic import CriticConfig
from napari_imc_vae.engine.training.trainer import TrainConfig
from napari_imc_vae.engine.apply.inference import apply_model
from napari_imc_vae.engine.training.run import TrainingRun
from napari_imc_vae.io import ImcImage, read_imc

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imc-testdata" / "steinbock_img"
#: The two largest held-out ROIs, on different slides (mockData2_001 103×87, mockData5_003 91×81).
DEFAULT_HELD = (3, 14)
SYNTHETIC_SHAPE = (384, 384)
#: The signal channels of the shared ROIs (their Ag107 is empty in the synthetic panel), and
#: their mean counts over the 15 ROIs (bench/noise_level.py): the twin's rates are scaled to them.
TWIN_MEANS = {"Pr141": 4.28, "Sm147": 5.05, "Eu153": 2.74, "Yb172": 3.06}
TWIN_METALS = tuple(TWIN_MEANS)
#: gamma–Poisson overdispersion that matches the ROIs' mean–variance relation (docs/denoising.md)
TWIN_OVERDISPERSION = 0.05
MAX_FIT_PATCHES = 20_000


# -- an independent yardstick ---------------------------------------------------------------------

def cut_patches(image: np.ndarray, patch: int, stride: int) -> np.ndarray:
    """(C, Y, X) → (N, C, P, P) on a stride grid (no padding)."""
    windows = np.lib.stride_tricks.sliding_window_view(image, (patch, patch), axis=(1, 2))[:, ::stride, ::stride]
    return np.ascontiguousarray(windows.transpose(1, 2, 0, 3, 4).reshape(-1, image.shape[0], patch, patch))


def fit_pca(train_normalized: list[np.ndarray], patch: int, k: int, seed: int) -> PCA:
    """PCA-k on (at most MAX_FIT_PATCHES of) the training images' patches at stride 2."""
    patches = np.concatenate([cut_patches(x, patch, 2) for x in train_normalized])
    patches = patches[np.isfinite(patches).all(axis=(1, 2, 3))]
    rng = np.random.default_rng(seed)
    if len(patches) > MAX_FIT_PATCHES:
        patches = patches[rng.choice(len(patches), MAX_FIT_PATCHES, replace=False)]
    return PCA(n_components=min(k, *patches.reshape(len(patches), -1).shape), random_state=seed).fit(
        patches.reshape(len(patches), -1))


def stitch_linear(pca: PCA, image: np.ndarray, patch: int) -> np.ndarray:
    """Whole-image PCA reconstruction: reflect-padded tiles at stride P/2, Hann-weighted mean."""
    c, h, w = image.shape
    stride, pad = max(1, patch // 2), patch // 2
    padded = np.pad(image, ((0, 0), (pad, pad + patch), (pad, pad + patch)), mode="reflect")
    tiles = cut_patches(padded, patch, stride)
    ny = len(range(0, padded.shape[1] - patch + 1, stride))
    nx = len(range(0, padded.shape[2] - patch + 1, stride))
    recon = pca.inverse_transform(pca.transform(tiles.reshape(len(tiles), -1))).reshape(tiles.shape)
    window = np.sin(np.pi * (np.arange(patch) + 0.5) / patch) ** 2 + 1e-3
    weight2d = np.outer(window, window)
    acc = np.zeros(padded.shape, np.float64)
    wsum = np.zeros(padded.shape[1:], np.float64)
    for i, (ty, tx) in enumerate(itertools.product(range(ny), range(nx))):
        y, x = ty * stride, tx * stride
        acc[:, y:y + patch, x:x + patch] += recon[i] * weight2d
        wsum[y:y + patch, x:x + patch] += weight2d
    return (acc / np.maximum(wsum, 1e-12))[:, pad:pad + h, pad:pad + w].astype(np.float32)


def pooled_r2(target: np.ndarray, recon: np.ndarray) -> float:
    """1 − SSE/SST over all channels, SST about each channel's mean (finite target pixels)."""
    t, r = target.reshape(len(target), -1).astype(np.float64), recon.reshape(len(recon), -1).astype(np.float64)
    ok = np.isfinite(t) & np.isfinite(r)
    sst = sum(((t[c][ok[c]] - t[c][ok[c]].mean()) ** 2).sum() for c in range(len(t)))
    return float(1.0 - ((t - r)[ok] ** 2).sum() / sst)


def measures(target: np.ndarray, recon: np.ndarray, patch: int) -> dict:
    """R² (independent numpy), sharpness and diversity (the product's definitions) on the whole image."""
    tp, rp = cut_patches(target, patch, patch), cut_patches(recon, patch, patch)
    return {"r2": pooled_r2(target, recon),
            "sharpness": reconstruction_measures(target[None], recon[None])["sharpness_ratio"],
            "diversity": reconstruction_measures(tp, rp)["diversity_ratio"]}


# -- filters, tuned against the truth of the training images -------------------------------------

SIGMAS = (0.5, 0.75, 1.0, 1.5, 2.0)


def _filtered(normalizer, counts: np.ndarray, kind: str, param: float, domain: str) -> np.ndarray:
    """A filter on the counts (then normalized) or on the normalized image; normalized units."""
    def run(x):
        if kind == "gaussian":
            return ndimage.gaussian_filter(x, sigma=(0, param, param), mode="reflect")
        return ndimage.median_filter(x, size=(1, int(param), int(param)), mode="reflect")
    return normalizer(run(counts)) if domain == "counts" else run(normalizer(counts))


def filter_baselines(normalizer, train_pairs, counts: np.ndarray, truth: np.ndarray) -> dict:
    """R² against the truth of Gaussian σ = 1, the best Gaussian and a 3×3 median on the held-out
    image; σ and whether to filter counts or normalized values are chosen on the training images."""
    def train_r2(kind, param, domain):
        return np.mean([pooled_r2(normalizer(t), _filtered(normalizer, im.data, kind, param, domain))
                        for im, t in train_pairs])
    clean = normalizer(truth)
    out = {}
    for name, kind, params in (("gaussian_sigma1", "gaussian", (1.0,)), ("gaussian_tuned", "gaussian", SIGMAS),
                               ("median3", "median", (3,))):
        best = max(((p, d) for p in params for d in ("counts", "normalized")), key=lambda pd: train_r2(kind, *pd))
        out[name] = {"r2_truth": pooled_r2(clean, _filtered(normalizer, counts, kind, *best)),
                     "param": best[0], "domain": best[1]}
    return out


# -- data -----------------------------------------------------------------------------------------

def synthetic_twin(seed: int) -> tuple[ImcImage, np.ndarray]:
    """Synthetic tissue with the shared ROIs' markers at their mean counts and noise, and its truth.

    The layout and marker programs are :func:`synthetic_tissue_with_truth`'s; each channel's
    noise-free rate is scaled to the real ROIs' mean and the counts are drawn gamma–Poisson
    with φ = TWIN_OVERDISPERSION (no hot pixels: this image is for judging denoising).
    """
    _, truth = synthetic_tissue_with_truth(SYNTHETIC_SHAPE, 40, seed=seed)
    panel = synthetic_tissue_with_truth((16, 16), 40)[0]  # channel order only
    keep = [panel.metals.index(m) for m in TWIN_METALS]
    rates = np.stack([truth[i] * (TWIN_MEANS[m] / truth[i].mean()) for i, m in zip(keep, TWIN_METALS)])
    rng = np.random.default_rng(10_000 + seed)
    phi = TWIN_OVERDISPERSION
    counts = rng.poisson(rates * rng.gamma(1.0 / phi, phi, size=rates.shape)).astype(np.float32)
    twin = ImcImage(counts, [panel.channel_names[i] for i in keep], metals=list(TWIN_METALS),
                    pixel_size_um=1.0, source=f"synthetic_twin_seed{seed}")
    return twin, rates.astype(np.float32)


def splits(data: str, held: list[int]):
    """(name, training images, held-out image, its truth or None) per fold."""
    if data == "real":
        images = [read_imc(f) for f in sorted(DATA.glob("*.ome.tiff"))]
        if not images:
            raise SystemExit(f"no ROIs under {DATA}")
        for i in held:
            yield images[i].name, [im for j, im in enumerate(images) if j != i], images[i], None
    elif data == "synthetic10":
        made = [synthetic_tissue_with_truth((1000, 1000), 10, seed=seed) for seed in (0, 1, 2)]
        yield "synthetic10_seed2", [made[0][0], made[1][0]], made[2][0], (made[2][1], made[:2])
    else:
        made = [synthetic_twin(seed) for seed in (0, 1, 2)]
        yield "synthetic_twin_seed2", [made[0][0], made[1][0]], made[2][0], (made[2][1], made[:2])


# -- one run --------------------------------------------------------------------------------------

def run_one(setting: dict, train, held, truth) -> dict:
    critic = CriticConfig(kld_scale=setting["kld_scale"], free_bits=setting["free_bits"],
                          kl_target=setting["kl_target"])
    config = TrainConfig(steps=setting["steps"], seed=setting["seed"], device="cpu")
    started = time.perf_counter()
    run = TrainingRun(train, model_config=dict(latent_dim=setting["latent"], arch=setting["arch"]),
                      critic_config=critic, train_config=config)
    trained, _ = run.run()
    train_s = time.perf_counter() - started
    applied = apply_model(trained, held)
    recon = applied.normalized
    target = trained.normalizer(held)
    patch = trained.model.config.patch_size
    pca = fit_pca([trained.normalizer(im) for im in train], patch, setting["latent"], setting["seed"])
    linear = stitch_linear(pca, target, patch)
    row = {**setting, "held": held.name, "train_s": round(train_s, 1),
           "load": round(os.getloadavg()[0], 2), "cpu": platform.processor() or platform.machine(),
           "kl_nats": float(np.mean([h["kld_loss"] for h in trained.history[-50:]])),
           "model": measures(target, recon, patch), "pca": measures(target, linear, patch)}
    mu = applied.latent  # (D, ny, nx) on the tile grid
    row["model"]["active_units"] = active_units(torch.from_numpy(mu.reshape(len(mu), -1).T.copy()))
    if truth is not None:
        truth, train_pairs = truth
        clean = trained.normalizer(truth)
        row["filters"] = filter_baselines(trained.normalizer, train_pairs, held.data, truth)
        row["model"]["r2_truth"] = pooled_r2(clean, recon)
        row["pca"]["r2_truth"] = pooled_r2(clean, linear)
        row["noisy_r2_truth"] = pooled_r2(clean, target)  # the counts themselves as the "denoiser"
    return row


def settings(args) -> list[dict]:
    keys = ("latent", "free_bits", "kld_scale", "kl_target", "steps", "arch", "seed")
    grid = itertools.product(*(getattr(args, k) for k in keys))
    return [dict(zip(keys, values)) for values in grid]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("real", "synthetic", "synthetic10"), default="real",
                        help="synthetic10: the issue's 1000×1000×10 synthetic tissue (bright nuclear channels)")
    parser.add_argument("--held", type=int, nargs="+", default=list(DEFAULT_HELD))
    parser.add_argument("--latent", type=int, nargs="+", default=[32])
    parser.add_argument("--free-bits", type=float, nargs="+", default=[CriticConfig.free_bits])
    parser.add_argument("--kld-scale", type=float, nargs="+", default=[CriticConfig.kld_scale])
    parser.add_argument("--kl-target", type=float, nargs="+", default=[0.0], help="nats per patch (0: free bits)")
    parser.add_argument("--steps", type=int, nargs="+", default=[TrainConfig.steps])
    parser.add_argument("--arch", nargs="+", default=["mlp"])
    parser.add_argument("--seed", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, help="append one JSON line per run")
    parser.add_argument("--summary", type=Path, help="print the tables of a JSON-lines file and stop")
    args = parser.parse_args()
    if args.summary:
        from capacity_summary import print_summary  # noqa: PLC0415 (a sibling script)

        print_summary(args.summary)
        return
    torch.set_num_threads(2)
    folds = list(splits(args.data, args.held))
    todo = settings(args)
    print(f"{len(todo)} settings × {len(folds)} folds on {args.data}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, capability {torch.backends.cpu.get_cpu_capability()}", flush=True)
    for setting in todo:
        for name, train, held, truth in folds:
            row = run_one({"data": args.data, **setting}, train, held, truth)
            m, p = row["model"], row["pca"]
            truth_part = ""
            if truth is not None:
                filters = " ".join(f"{k} {v['r2_truth']:.3f}" for k, v in row["filters"].items())
                truth_part = (f" | truth R² {m['r2_truth']:.3f} vs PCA {p['r2_truth']:.3f}, counts "
                              f"{row['noisy_r2_truth']:.3f}, {filters}")
            print(f"{name:28} {setting} {row['train_s']:6.1f}s load {row['load']}: R² {m['r2']:.3f} vs PCA "
                  f"{p['r2']:.3f} (Δ {m['r2'] - p['r2']:+.3f}) sharp {m['sharpness']:.3f}/{p['sharpness']:.3f} "
                  f"div {m['diversity']:.3f}/{p['diversity']:.3f} AU {m['active_units']} KL {row['kl_nats']:.0f}"
                  f"{truth_part}", flush=True)
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
