"""Bias of the reconstruction in counts with and without the model's rate calibration.

Usage: ``python bench/bench_rate_calibration.py MODEL.pt IMAGE [IMAGE ...]``

For each image and channel, with the model's factors and with factor 1 (the same model): the sum
of measured counts over the sum of predicted counts (1 = unbiased); the share of pixels with a
positive signed residual and the mean signed residual (noise SDs, engine.apply.error_unit.count_residual
as the plugin computes it) in tissue (the channel smoothed with a Gaussian of σ = 2 px above its
median) and in bright pixels (smoothed >= BRIGHT counts). In brackets the same figures for counts
drawn at the calibrated rate with the plugin's own noise model: what an unbiased model shows (the
residual's sign is skewed by counting noise, so 0.5 and 0 are not the targets). Then the ratio in
quintiles of the predicted rate (pooled over the images), to see whether one factor leaves a
level-dependent bias.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from scipy import ndimage

from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
from napari_imc_vae.engine.apply.error_unit import count_residual
from napari_imc_vae.engine.apply.inference import reconstruct_image
from napari_imc_vae.engine.apply.inference import ordered_data
from napari_imc_vae.io import read_imc

#: counts (smoothed, σ = 2 px) from which a pixel of a channel is "bright"
BRIGHT = 5.0


def masks(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel (C, Y, X): tissue (smoothed channel above its median, as the lead measured) and
    bright (smoothed channel >= BRIGHT counts, where a count residual is nearly symmetric)."""
    smooth = np.stack([ndimage.gaussian_filter(np.nan_to_num(ch.astype(np.float64)), 2.0) for ch in data])
    return smooth > np.median(smooth, axis=(1, 2), keepdims=True), smooth >= BRIGHT


def simulated_counts(rate: np.ndarray, scale: np.ndarray, dispersion: np.ndarray) -> np.ndarray:
    """Counts drawn with mean ``rate`` and the plugin's noise model, variance φ·mu + a·mu²
    (engine.apply.error_unit): y = φ·Poisson(Gamma-mixed rate/φ), a gamma of shape 1/a (none when a = 0)."""
    rng = np.random.default_rng(0)
    m = rate.astype(np.float64) / scale[:, None, None]
    a = np.broadcast_to(dispersion[:, None, None], m.shape)
    mixed = np.where(a > 0, rng.gamma(1.0 / np.maximum(a, 1e-12), np.maximum(m, 1e-12) * a), m)
    return scale[:, None, None] * rng.poisson(mixed)


def measure(trained: TrainedModel, data: np.ndarray, factors, *, simulate: bool = False) -> dict:
    """Figures of one reconstruction; ``simulate``: of counts drawn at the reconstructed rate
    with the plugin's noise model instead of the image: what a model without bias shows."""
    rec = reconstruct_image(trained.model, data, trained.normalizer, outputs=("raw", "residual"),
                            precision="fp32", rate_factors=factors)
    observed = np.nan_to_num(data.astype(np.float64))
    residual = rec.residual
    if simulate:
        observed = simulated_counts(rec.raw, rec.noise_scale, rec.dispersion)
        residual = count_residual(observed, rec.raw, rec.dispersion, scale=rec.noise_scale)
    tissue, bright = masks(data)
    out = {"ratio": observed.sum(axis=(1, 2)) / rec.raw.astype(np.float64).sum(axis=(1, 2)), "raw": rec.raw}
    for key, mask in (("tissue", tissue), ("bright", bright)):
        out[f"{key}_positive"] = np.array([(r[m] > 0).mean() if m.any() else np.nan for r, m in zip(residual, mask)])
        out[f"{key}_mean"] = np.array([np.nanmean(r[m]) if m.any() else np.nan for r, m in zip(residual, mask)])
    return out


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    torch.set_num_threads(2)
    trained = TrainedModel.load(argv[0])
    names = [n.split("_", 1)[-1] for n in trained.channel_names]
    print(f"model {argv[0]}: step {trained.step}, factors "
          + ", ".join(f"{n} {f:.3f}" for n, f in zip(names, trained.rate_factors or [1.0] * len(names))))
    if trained.rate_calibration is not None:
        print(f"  measured on: {trained.rate_calibration.measured_on}")
    pooled_obs, pooled_pred = [], []
    for path in argv[1:]:
        image = read_imc(path)
        data = ordered_data(trained, image).astype(np.float32)
        start = time.perf_counter()
        before, after = measure(trained, data, None), measure(trained, data, trained.rate_factors)
        ideal = measure(trained, data, trained.rate_factors, simulate=True)
        print(f"\n{image.name} {data.shape} ({time.perf_counter() - start:.1f} s); before → after (counts drawn at the "
              f"calibrated rate with the plugin's noise model)")
        columns = (("sum ratio", "ratio"), ("tissue: resid > 0", "tissue_positive"),
                   ("tissue: mean resid", "tissue_mean"), ("bright: resid > 0", "bright_positive"),
                   ("bright: mean resid", "bright_mean"))
        print(f"{'channel':<14}" + "".join(f"{title:>25}" for title, _ in columns))
        for c, name in enumerate(names):
            print(f"{name[:13]:<14}" + "".join(f"{before[k][c]:>8.2f} → {after[k][c]:5.2f} ({ideal[k][c]:5.2f})"
                                               for _, k in columns))
        pooled_obs.append(np.nan_to_num(data).reshape(len(names), -1))
        pooled_pred.append(after["raw"].reshape(len(names), -1))
    observed, predicted = np.concatenate(pooled_obs, 1), np.concatenate(pooled_pred, 1).astype(np.float64)
    print("\nsum ratio after calibration in quintiles of the predicted rate (pooled), lowest → highest "
          "(share of the measured counts):")
    for c, name in enumerate(names):
        edges = np.quantile(predicted[c], np.linspace(0, 1, 6))
        bins = np.clip(np.searchsorted(edges, predicted[c], side="right") - 1, 0, 4)
        total = max(observed[c].sum(), 1e-9)
        cells = [f"{observed[c][bins == b].sum() / max(predicted[c][bins == b].sum(), 1e-9):6.2f} "
                 f"({observed[c][bins == b].sum() / total:4.0%})" for b in range(5)]
        print(f"{name[:13]:<14}" + " ".join(cells) + f"   edges {', '.join(f'{e:.2g}' for e in edges)}")


if __name__ == "__main__":
    main(sys.argv[1:])
