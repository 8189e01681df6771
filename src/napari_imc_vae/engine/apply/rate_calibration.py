"""Per-channel rate calibration: the reconstruction in counts made unbiased in sum.

The model reconstructs in normalized units (hot-pixel filter → ``arcsinh(x / cofactor)`` → z-score).
Its prediction is close to a mean *in arcsinh units*, and the inverse of that mean (``sinh``) lies
below the mean count (Jensen's inequality: ``sinh`` is convex for positive values). On real IMC
the reconstruction in counts was 10-30% below the measured counts per channel, so the "model"
panel looked dimmer than the data and the signed count residual was positive nearly everywhere.

One factor per channel corrects it: ``factor_c = Σ observed / Σ predicted``, both in counts, over
the pixels of training patches (observed: the model's input, hot-pixel filtered; predicted: the
inverse of the model's reconstruction, clipped at 0), each pixel weighted by the Hann window the
whole-image reconstruction blends tiles with, clipped to :data:`FACTOR_RANGE`. It is measured
once at the end of every training run (again on resume) and stored in the model file
(``rate_calibration``); :func:`~napari_imc_vae.engine.apply.inference.reconstruct_image` and the
BioImage Model Zoo package multiply the reconstruction in counts by it. A factor that depends on
the predicted level was measured too and not kept: see docs/denoising.md, "Rate calibration".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from napari_imc_vae.engine.apply.tiling import tile_window

__all__ = ["FACTOR_RANGE", "RateCalibration", "apply_rate_factors", "measure_rate_calibration"]

#: Factors are clipped to this range: beyond it the model is wrong in a way a factor must not hide.
FACTOR_RANGE = (0.5, 2.0)
# patches per model call while measuring
_BATCH = 1024


@dataclass(frozen=True)
class RateCalibration:
    """Per-channel factors applied to the reconstruction in counts, and where they were measured.

    Attributes
    ----------
    factors : tuple of float
        One per model channel, in the model's order, within :data:`FACTOR_RANGE`.
    measured_on : str
        In words: on how many pixels of which images, at which step.
    """

    factors: tuple[float, ...]
    measured_on: str = ""

    def to_state(self) -> dict:
        """Plain data for the model file (and a zoo package's rdf)."""
        return {"factors": [float(f) for f in self.factors], "measured_on": str(self.measured_on)}

    @property
    def array(self) -> np.ndarray:
        """The factors as a (C,) float32 array."""
        return np.asarray(self.factors, dtype=np.float32)


def measure_rate_calibration(model: torch.nn.Module, normalizer, patches: torch.Tensor, *,
                             image_names: Sequence[str] = (), step: int | None = None) -> RateCalibration | None:
    """Measure the per-channel factors on normalized training patches.

    Parameters
    ----------
    model : PatchVAE
        The trained model (run in eval mode here; its mode is restored).
    normalizer : Normalizer
        The model's normalizer: its ``inverse`` maps patches and reconstructions to counts.
    patches : Tensor of shape (N, C, P, P)
        Normalized training patches (what the model was trained on).
    image_names, step
        For :attr:`RateCalibration.measured_on`.

    Returns
    -------
    RateCalibration or None
        None without patches (nothing to measure on). A channel whose prediction sums to 0
        (nothing predicted, nothing to scale) keeps the factor 1.
    """
    if patches is None or patches.shape[0] == 0:
        return None
    n, c, p, _ = patches.shape
    window = tile_window(p)  # the blending window of the whole-image reconstruction
    observed, predicted = np.zeros(c), np.zeros(c)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, n, _BATCH):
                x = torch.nan_to_num(patches[start:start + _BATCH].to(device=device, dtype=torch.float32))
                recon = model.reconstruct(x)[0].float().cpu().numpy()
                for values, total in ((x.cpu().numpy(), observed), (recon, predicted)):
                    counts = _counts(normalizer, values)  # (C, b, P, P)
                    total += (counts * window).sum(axis=(1, 2, 3))
    finally:
        model.train(was_training)
    factors = np.where(predicted > 0, observed / np.maximum(predicted, 1e-30), 1.0)
    factors = np.clip(np.nan_to_num(factors, nan=1.0), *FACTOR_RANGE)
    names = list(image_names)
    where = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    text = (f"sum of measured / sum of predicted counts (Hann-weighted) on {n} training patches of {p}×{p} px"
            + (f" of {where}" if where else "") + (f" at step {step}" if step is not None else ""))
    return RateCalibration(tuple(float(f) for f in factors), text)


def _counts(normalizer, normalized: np.ndarray) -> np.ndarray:
    """(B, C, P, P) normalized → (C, B, P, P) counts >= 0 (the inverse normalization, as inference)."""
    b, c, p, _ = normalized.shape
    stack = np.ascontiguousarray(normalized.transpose(1, 0, 2, 3)).reshape(c, b * p, p)
    return np.maximum(normalizer.inverse(stack), 0.0).reshape(c, b, p, p).astype(np.float64)


def apply_rate_factors(raw: np.ndarray, factors) -> np.ndarray:
    """``raw`` (C, ...) times each channel's factor, clipped at 0, in place; returns it.

    ``factors`` None leaves ``raw`` as it is (a model without calibration: factor 1).
    """
    if factors is not None:
        f = np.asarray(factors, dtype=raw.dtype).reshape((-1,) + (1,) * (raw.ndim - 1))
        raw *= f
    np.maximum(raw, 0.0, out=raw)
    return raw
