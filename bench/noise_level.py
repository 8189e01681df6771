"""How close is the synthetic tissue's noise to real IMC's? (#13, docs/denoising.md)

    python bench/noise_level.py

Shot noise is judged by the mean–variance relation: in 3×3 windows, variance / mean against
the window's mean. Texture (cell edges) inflates the variance of most windows, so the table
gives a low quantile (the flattest windows); pure Poisson counts of a constant rate are printed
beside it as the reference that quantile takes without any texture. Rows: the shared steinbock
ROIs, the synthetic twin of their markers (bench/capacity.py: rates scaled to the ROIs' means,
gamma–Poisson φ = 0.05), and the plain synthetic tissue's counts of those markers. A second table compares the intensity levels channel by channel.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from capacity import DATA, TWIN_METALS, TWIN_OVERDISPERSION, synthetic_twin  # noqa: E402

from napari_imc_vae.datasets import synthetic_tissue_with_truth  # noqa: E402
from napari_imc_vae.io import read_imc  # noqa: E402

BINS = (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, np.inf)
QUANTILE = 0.1


def window_ratios(stacks) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance/mean of every 3×3 window of every channel."""
    means, ratios = [], []
    for stack in stacks:
        for channel in stack:
            w = np.lib.stride_tricks.sliding_window_view(channel, (3, 3)).reshape(-1, 9).astype(np.float64)
            m = w.mean(axis=1)
            keep = m > 0
            means.append(m[keep])
            ratios.append(w[keep].var(axis=1, ddof=1) / m[keep])
    return np.concatenate(means), np.concatenate(ratios)


def row(stacks) -> list[str]:
    means, ratios = window_ratios(stacks)
    cells = []
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        k = (means >= lo) & (means < hi)
        cells.append(f"{np.quantile(ratios[k], QUANTILE):.2f}" if k.sum() >= 200 else "–")
    return cells


def main() -> None:
    rois = [read_imc(f) for f in sorted(DATA.glob("*.ome.tiff"))]
    if not rois:
        raise SystemExit(f"no ROIs under {DATA}")
    keep = [rois[0].metals.index(m) for m in TWIN_METALS]
    real = [im.data[keep] for im in rois]
    twin = [synthetic_twin(seed)[0].data for seed in (0, 1, 2)]
    rng = np.random.default_rng(0)
    poisson = [rng.poisson(lam, size=(1, 200, 200)).astype(np.float32)
               for lam in (0.35, 0.7, 1.4, 2.8, 5.6, 11, 22, 45, 90)]
    rows = {"real ROIs (15)": row(real), f"synthetic twin (φ = {TWIN_OVERDISPERSION}, real means)": row(twin)}
    for phi in (0.0, 0.05):  # the plain synthetic tissue's counts of these markers
        plain = []
        for seed in (0, 1, 2):
            image, _ = synthetic_tissue_with_truth((384, 384), 40, seed=seed, overdispersion=phi)
            plain.append(image.data[[image.metals.index(m) for m in TWIN_METALS]])
        rows[f"synthetic tissue, φ = {phi:g}"] = row(plain)
    rows["Poisson, constant rate"] = row(poisson)
    print(f"{QUANTILE:.0%} quantile of variance/mean in 3×3 windows, by window mean (counts)\n")
    print("| data | " + " | ".join(f"{lo:g}–{hi:g}" for lo, hi in zip(BINS[:-1], BINS[1:])) + " |")
    print("|---" * (len(BINS)) + "|")
    for name, cells in rows.items():
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nintensity levels per channel (counts)\n")
    print("| marker | real mean | twin mean | real p99 | twin p99 | real zeros | twin zeros |")
    print("|---|---|---|---|---|---|---|")
    for i, metal in enumerate(TWIN_METALS):
        r = np.concatenate([x[i].ravel() for x in real])
        t = np.concatenate([x[i].ravel() for x in twin])
        print(f"| {rois[0].channel_names[keep[i]]} ({metal}) | {r.mean():.2f} | {t.mean():.2f} | "
              f"{np.percentile(r, 99):.1f} | {np.percentile(t, 99):.1f} | {(r == 0).mean():.0%} | {(t == 0).mean():.0%} |")


if __name__ == "__main__":
    main()
