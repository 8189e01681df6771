"""Test oracle: the DESIGN §4 reconstruction measures written plainly, in numpy float64.

The product computes them once, in one pass over float32 chunks with float64 running sums
(:mod:`napari_imc_vae.engine.quality.measures`). These formulas are an independent reading of
the definitions on whole finite arrays, for the tests to check the product against; they are
not used by the product. Arrays have shape (N, C, P, Q).
"""

from __future__ import annotations

import math

import numpy as np

NAMES = ("r2", "mse", "sharpness_ratio", "diversity_ratio", "cosine_loss")
#: Pixels whose true channel vector has a smaller norm have no direction (the product's COSINE_EPS).
COSINE_EPS = 1e-3


def _pair(x, x_hat) -> tuple[np.ndarray, np.ndarray]:
    x, x_hat = np.asarray(x, dtype=np.float64), np.asarray(x_hat, dtype=np.float64)
    assert x.ndim == 4 and x.shape == x_hat.shape and np.isfinite(x).all(), "the oracle takes finite (N, C, P, Q)"
    return x, x_hat


def mse(x, x_hat) -> float:
    x, x_hat = _pair(x, x_hat)
    return float(((x_hat - x) ** 2).mean())


def r2(x, x_hat) -> float:
    """``1 − SSE / SST``, SST about each channel's mean over all patches and pixels."""
    x, x_hat = _pair(x, x_hat)
    sst = ((x - x.mean(axis=(0, 2, 3), keepdims=True)) ** 2).sum()
    return float(1.0 - ((x_hat - x) ** 2).sum() / sst) if sst > 0 else math.nan


def _gradient_energy(a: np.ndarray) -> np.ndarray:
    return (np.diff(a, axis=3) ** 2).sum(axis=(0, 2, 3)) + (np.diff(a, axis=2) ** 2).sum(axis=(0, 2, 3))


def sharpness_ratio(x, x_hat) -> float:
    """Lower median over channels with a gradient in ``x`` of ``Σ‖∇x̂‖² / Σ‖∇x‖²``."""
    x, x_hat = _pair(x, x_hat)
    den, num = _gradient_energy(x), _gradient_energy(x_hat)
    ratios = np.sort(num[den > 0] / den[den > 0])
    return float(ratios[(len(ratios) - 1) // 2]) if len(ratios) else math.nan


def diversity_ratio(x, x_hat) -> float:
    """``Σ Var_n(x̂) / Σ Var_n(x)`` over channels and pixels."""
    x, x_hat = _pair(x, x_hat)
    den = x.var(axis=0).sum()
    return float(x_hat.var(axis=0).sum() / den) if den > 0 else math.nan


def cosine_loss(x, x_hat) -> float:
    """Mean ``1 − cos`` of per-pixel channel vectors whose true norm exceeds :data:`COSINE_EPS`."""
    x, x_hat = _pair(x, x_hat)
    nx, nh = np.linalg.norm(x, axis=1), np.linalg.norm(x_hat, axis=1)
    keep = nx > COSINE_EPS
    if not keep.any():
        return math.nan
    cos = (x * x_hat).sum(axis=1) / np.maximum(nx * nh, 1e-12)
    return float((1.0 - np.minimum(cos, 1.0))[keep].mean())


def all_measures(x, x_hat) -> dict[str, float]:
    """The five measures by name, as ``reconstruction_measures`` returns them."""
    return {name: globals()[name](x, x_hat) for name in NAMES}
