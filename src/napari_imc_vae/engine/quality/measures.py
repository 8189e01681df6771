"""The DESIGN §4 measures accumulated in one pass over chunks of patches.

:mod:`napari_imc_vae.engine.quality.metrics` computes each measure from whole arrays in float64,
NaN-aware; the quality report instead feeds chunks of patches once and keeps running sums:
float32 arithmetic on each chunk, float64 accumulators across chunks. The chunks must be
finite (the report leaves out patches touching NaN/Inf pixels before they come here);
a non-finite prediction makes its measures NaN rather than silently dropping values.

Per stream (a target or a prediction) :class:`StreamSums` holds the per-element moments over
patches (count, mean and centred sum of squares, merged chunk by chunk with Chan et al.'s
pairwise formula, so no large sums of squares are subtracted), the per-channel gradient
energy and nothing else; per (target, prediction) pair :class:`PairSums` holds the squared
error and the cosine sums. :func:`pair_measures` turns them into the five numbers of
:func:`metrics.reconstruction_measures`, equal to them to ~1e-6 on normalized data.
"""

from __future__ import annotations

import math

import torch

__all__ = ["COSINE_EPS", "ConstantPairSums", "ConstantStream", "PairSums", "PredictionSums", "StreamSums",
           "finite_patches", "gradient_energy", "pair_measures", "sharpness_between"]

#: A true per-pixel channel vector with a smaller norm has no direction (as in ``metrics.cosine_loss``).
COSINE_EPS = 1e-3


def finite_patches(x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Which patches (N, ...) hold only finite values: (N,) bool, checked a chunk at a time."""
    out = []
    for c in x.split(chunk):
        flat = c.reshape(len(c), -1)
        # a NaN/Inf makes the patch's sum non-finite; 70× cheaper than isfinite on every value.
        # Finite values whose sum overflows are told apart exactly, patch by patch.
        ok = torch.isfinite(flat.sum(dim=1))
        suspects = torch.nonzero(~ok).squeeze(1)
        if len(suspects):
            ok[suspects] = torch.isfinite(flat[suspects]).all(dim=1)
        out.append(ok)
    return torch.cat(out)


def gradient_energy(a: torch.Tensor) -> torch.Tensor:
    """Σ of squared horizontal and vertical differences within patches (B, C, P, Q), per channel: (C,)."""
    b, c, p, q = a.shape
    flat = a.reshape(b, c, p * q)  # row-major: a step of 1 is horizontal, a step of q vertical
    horizontal = (flat[..., 1:] - flat[..., :-1]).square_().sum(dim=0)  # (C, PQ - 1)
    within_rows = (torch.arange(1, p * q) % q) != 0  # not the step from a row's end to the next row's start
    vertical = (flat[..., q:] - flat[..., :-q]).square_().sum(dim=0)
    return horizontal[:, within_rows].sum(dim=1) + vertical.sum(dim=1)


class StreamSums:
    """Running per-element moments and per-channel gradient energy of a stream of patch chunks."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None  # (C, P, P) float64
        self.m2: torch.Tensor | None = None  # (C, P, P) float64: Σ (a - mean)² over patches
        self.grad: torch.Tensor | None = None  # (C,) float64: Σ of squared finite differences
        self.norm: torch.Tensor | None = None  # the last chunk's per-pixel channel norms (B, P, P)

    def update(self, a: torch.Tensor) -> None:
        """Add a chunk (B, C, P, P) float32; keeps its per-pixel norms for :class:`PairSums`."""
        b = a.shape[0]
        chunk_mean = a.mean(dim=0)
        chunk_m2 = (a - chunk_mean).square_().sum(dim=0).double()
        chunk_mean = chunk_mean.double()
        grad = gradient_energy(a).double()
        if self.mean is None:
            self.mean, self.m2, self.grad = chunk_mean, chunk_m2, grad
        else:  # Chan, Golub & LeVeque: merge (n, mean, m2) of two sets
            total = self.n + b
            delta = chunk_mean - self.mean
            self.mean = self.mean + delta * (b / total)
            self.m2 = self.m2 + chunk_m2 + delta.square() * (self.n * b / total)
            self.grad = self.grad + grad
        self.n += b
        self.norm = a.square().sum(dim=1).sqrt_()  # 3× faster than linalg.vector_norm over dim 1

    def variance_sum(self) -> float:
        """``Σ_elements Var_n``: the spread across patches, summed over channels and pixels (× n)."""
        return float(self.m2.sum())

    def sst(self) -> float:
        """Σ of squares about each channel's mean over all patches and pixels (R²'s denominator)."""
        channel_mean = self.mean.mean(dim=(1, 2), keepdim=True)
        return float((self.m2 + self.n * (self.mean - channel_mean).square()).sum())


class ConstantStream(StreamSums):
    """The stream of a constant prediction (the mean predictor): its sums follow from the patch alone."""

    def __init__(self, patch: torch.Tensor) -> None:
        super().__init__()
        self.patch = patch.to(torch.float32)
        self.mean, self.m2 = patch.double(), torch.zeros(patch.shape, dtype=torch.float64)
        self._grad = gradient_energy(self.mean[None])
        self.grad = torch.zeros_like(self._grad)
        self.norm = self.patch.square().sum(dim=0).sqrt_()  # (P, P), broadcast over a chunk

    def update(self, a: torch.Tensor) -> None:
        self.n += a.shape[0]
        self.grad = self._grad * self.n


class PairSums:
    """Running squared error and cosine sums of a prediction against a target."""

    def __init__(self) -> None:
        self.sse = 0.0
        self.elements = 0
        self.cos_sum = 0.0
        self.cos_n = 0

    def update(self, target: torch.Tensor, prediction: torch.Tensor, target_norm: torch.Tensor,
               prediction_norm: torch.Tensor) -> torch.Tensor:
        """Add a chunk; the norms are those :meth:`StreamSums.update` just kept for each.

        Returns the squared error of each patch, (B,) float32.
        """
        # square-then-sum: torch's cascade summation keeps float32 to ~1e-7 here; a float32
        # vector_norm of the chunk drifts by ~1e-5
        per_patch = (prediction - target).square_().sum(dim=(1, 2, 3))
        self.sse += float(per_patch.sum(dtype=torch.float64))
        self.elements += target.numel()
        self._cosine(target, prediction, target_norm, prediction_norm)
        return per_patch

    def _cosine(self, target, prediction, target_norm, prediction_norm) -> None:
        keep = target_norm > COSINE_EPS
        dot = (target * prediction).sum(dim=1)
        cos = (dot / (target_norm * prediction_norm).clamp(min=1e-12)).clamp_(max=1.0)  # no -0.000 from rounding
        self.cos_sum += float(torch.where(keep, 1.0 - cos, 0.0).sum(dtype=torch.float64))
        self.cos_n += int(keep.sum())

    def total_sse(self, target: StreamSums, prediction: StreamSums) -> float:
        return self.sse


class ConstantPairSums(PairSums):
    """:class:`PairSums` of a :class:`ConstantStream`: the squared error from the target's moments."""

    def update(self, target, prediction, target_norm, prediction_norm) -> None:
        self.elements += target.numel()
        self._cosine(target, prediction, target_norm, prediction_norm)

    def total_sse(self, target: StreamSums, prediction: StreamSums) -> float:
        # Σ_n (t − c)² = Σ_n (t − mean)² + n (mean − c)², per element
        return float((target.m2 + target.n * (target.mean - prediction.mean).square()).sum())


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def sharpness_between(target: StreamSums, prediction: StreamSums) -> float:
    """Median over channels of ``Σ‖∇prediction‖² / Σ‖∇target‖²`` (channels with a gradient)."""
    keep = target.grad > 0
    if not bool(keep.any()):
        return math.nan
    ratio = prediction.grad[keep] / target.grad[keep]
    return float(ratio.median()) if bool(torch.isfinite(ratio).all()) else math.nan


def pair_measures(target: StreamSums, prediction: StreamSums, pair: PairSums) -> dict[str, float]:
    """R², mse, sharpness ratio, diversity ratio and cosine loss, as ``metrics.reconstruction_measures``."""
    sst = target.sst()
    sse = pair.total_sse(target, prediction)
    sse = sse if math.isfinite(sse) else math.nan
    return {
        "r2": 1.0 - sse / sst if sst > 0 else math.nan,
        "mse": _ratio(sse, pair.elements),
        "sharpness_ratio": sharpness_between(target, prediction),
        "diversity_ratio": _ratio(prediction.variance_sum(), target.variance_sum()),
        "cosine_loss": pair.cos_sum / pair.cos_n if pair.cos_n else math.nan,
    }


class PredictionSums:
    """The running sums of one prediction against a target and its smoothed version.

    Parameters
    ----------
    constant : Tensor of shape (C, P, P), optional
        The prediction is this patch for every input (the mean predictor): its sums are
        computed from the targets' moments, not from copies of it.
    """

    def __init__(self, constant: torch.Tensor | None = None) -> None:
        self.constant = constant
        self.stream = StreamSums() if constant is None else ConstantStream(constant)
        pair = PairSums if constant is None else ConstantPairSums
        self.data, self.smooth = pair(), pair()

    def update(self, prediction: torch.Tensor | None, x: StreamSums, xb: torch.Tensor, s: StreamSums,
               sb: torch.Tensor) -> torch.Tensor | None:
        """Add a chunk (None for a constant prediction); ``x``, ``s``: the target streams, already updated.

        Returns the squared error of each patch against ``xb`` (None for a constant prediction).
        """
        if prediction is None:
            prediction = self.constant
        self.stream.update(xb if self.constant is not None else prediction)
        per_patch = self.data.update(xb, prediction, x.norm, self.stream.norm)
        self.smooth.update(sb, prediction, s.norm, self.stream.norm)
        return per_patch

    def measures(self, make, x: StreamSums, s: StreamSums, **extra):
        """``(make(**measures, **extra), make(**smooth_measures))`` against the target and the smoothed one."""
        return (make(**pair_measures(x, self.stream, self.data), **extra),
                make(**pair_measures(s, self.stream, self.smooth)))
