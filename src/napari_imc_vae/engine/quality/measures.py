"""The DESIGN §4 measures, each written once: validation and the quality report both use them.

The reconstruction measures (R², mse, sharpness ratio, diversity ratio, cosine loss) are
accumulated in one pass over chunks of patches: float32 arithmetic on each chunk, float64
accumulators across chunks, so no float64 copy of a large set is made. Patches touching a
NaN/Inf value are left out before they come here (:func:`finite_patches`; the report and
validation count them in ``n_skipped_nonfinite``); a non-finite prediction makes its measures
NaN rather than silently dropping values.
:func:`reconstruction_measures` does all of that for a pair of arrays; the quality report
(:mod:`~napari_imc_vae.engine.quality.evaluate`) feeds the same sums chunk by chunk, with its
baselines and a smoothed target beside the model.

Per stream (a target or a prediction) :class:`StreamSums` holds the per-element moments over
patches (count, mean and centred sum of squares, merged chunk by chunk with Chan et al.'s
pairwise formula, so no large sums of squares are subtracted), the per-channel gradient
energy and nothing else; per (target, prediction) pair :class:`PairSums` holds the squared
error and the cosine sums. :func:`pair_measures` turns them into the five numbers.

The measures of the model itself: :func:`active_units` (of the latent means) and
:func:`permutation_accuracy` (of the orientation predictions).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from napari_imc_vae.engine.model.d4 import N_ELEMENTS, d4_orbit, d4_table

__all__ = ["COSINE_EPS", "ConstantPairSums", "ConstantStream", "PairSums", "PredictionSums", "StreamSums",
           "active_units", "evenly_spaced", "finite_patches", "gradient_energy", "pair_measures",
           "permutation_accuracy", "reconstruction_measures", "sharpness_between"]

#: A true per-pixel channel vector with a smaller norm has no direction: the cosine loss leaves it out.
COSINE_EPS = 1e-3


def finite_patches(x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Which patches (N, ...) hold only finite values: (N,) bool, checked a chunk at a time."""
    out = []
    for c in x.split(chunk):
        flat = c.reshape(len(c), math.prod(c.shape[1:]))  # not -1: 0 patches leave it undefined
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
    """R², mse, sharpness ratio, diversity ratio and cosine loss from the running sums.

    R² is ``1 − SSE / SST`` pooled over channels, SST about each channel's mean over all patches
    and pixels (the channel-mean predictor scores 0). Sharpness ratio: median over channels with a
    gradient of ``Σ‖∇x̂‖² / Σ‖∇x‖²`` (finite differences within patches). Diversity ratio:
    ``Σ Var_n(x̂) / Σ Var_n(x)`` over channels and pixels. Cosine loss: mean ``1 − cos`` of the
    per-pixel channel vectors over pixels whose true vector has norm > :data:`COSINE_EPS`.
    Each is NaN where undefined (no variance, no gradient, no pixel with a direction).
    """
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


def reconstruction_measures(x, x_hat, *, chunk: int = 512) -> dict[str, float]:
    """R², mse, sharpness ratio, diversity ratio and cosine loss of ``x_hat`` against ``x``.

    The rule of the quality report: patches of ``x`` touching a NaN/Inf value are left out
    (``int((~finite_patches(x)).sum())`` of them); a non-finite reconstruction of a measured
    patch makes the measures NaN. One pass over chunks (:func:`pair_measures` defines each).

    Parameters
    ----------
    x, x_hat : array or Tensor of shape (N, C, P, P)
        Patches and their reconstructions in normalized units (a whole image as ``image[None]``).
    chunk : int
        Patches per chunk: float32 arithmetic within one, float64 sums across them.

    Returns
    -------
    dict of str to float
        ``r2``, ``mse``, ``sharpness_ratio``, ``diversity_ratio``, ``cosine_loss``; all NaN
        when no patch is left.

    Raises
    ------
    ValueError
        If ``x`` is not 4-D or ``x_hat`` has another shape.
    """
    x, x_hat = torch.as_tensor(x).detach(), torch.as_tensor(x_hat).detach()
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, C, P, P), got shape {tuple(x.shape)}")
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat must have the shape of x {tuple(x.shape)}, got {tuple(x_hat.shape)}")
    keep = finite_patches(x)
    if not bool(keep.all()):
        x, x_hat = x[keep], x_hat[keep.to(x_hat.device)]
    if len(x) == 0:
        return dict.fromkeys(("r2", "mse", "sharpness_ratio", "diversity_ratio", "cosine_loss"), math.nan)
    target, prediction, pair = StreamSums(), StreamSums(), PairSums()
    for b0 in range(0, len(x), chunk):
        t = x[b0 : b0 + chunk].to("cpu", torch.float32)
        p = x_hat[b0 : b0 + chunk].to("cpu", torch.float32)
        target.update(t)
        prediction.update(p)
        pair.update(t, p, target.norm, prediction.norm)
    return pair_measures(target, prediction, pair)


def active_units(mu, threshold: float = 0.01) -> int:
    """Latent dimensions whose variance of ``mu`` across patches exceeds ``threshold``.

    Burda et al. (2016): an inactive unit carries no information about the input,
    the sign of posterior collapse.

    Parameters
    ----------
    mu : array of shape (N, D)
    threshold : float

    Returns
    -------
    int
    """
    mu = torch.as_tensor(mu).detach().to("cpu", torch.float64)
    if mu.ndim != 2:
        raise ValueError(f"mu must have shape (N, D), got shape {tuple(mu.shape)}")
    if mu.shape[0] < 2:
        return 0
    return int((mu.var(dim=0, correction=0) > threshold).sum())


def evenly_spaced(n: int, most: int | None) -> torch.Tensor | None:
    """Indices of ``most`` of ``n`` items spread evenly, first and last included; None: take all.

    The patches permutation accuracy uses (8 orientation predictions a patch cost more than
    every other measure), the same in validation and in the report.
    """
    if most is None or n <= most:
        return None
    return torch.from_numpy(np.linspace(0, n - 1, most).round().astype(np.int64))


@torch.no_grad()
def permutation_accuracy(model, x, *, batch_size: int = 256, tol: float = 1e-6) -> tuple[float, int, int]:
    """How consistently the model's permuter predicts the orientation of rotated/flipped views.

    For a patch ``x`` with prediction ``p = pred(x)``, view ``g_k x`` should be
    predicted as ``g_k ∘ g_p`` (``D4_COMPOSE[k, p]``). The accuracy is the
    fraction of the 7 non-identity views that are; the identity view agrees by
    construction and is not counted. A patch that some non-identity element
    leaves unchanged (max abs difference < ``tol``: empty background, uniform
    areas, symmetric patterns) has no defined orientation and is left out.

    Parameters
    ----------
    model : nn.Module
        Has ``predict_orientation(x) -> LongTensor (B,)``; run in eval mode.
    x : array of shape (N, C, P, P)
        Patches in normalized units; NaN is read as 0, as the model sees it.

    Returns
    -------
    accuracy : float
        NaN when every patch was left out.
    n_used, n_left_out : int
    """
    x = torch.nan_to_num(torch.as_tensor(x).detach().to(torch.float32))
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"x must have shape (N, C, P, P), got shape {tuple(x.shape)}")
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    compose = d4_table("compose", device)
    correct = used = left_out = 0
    try:
        for b0 in range(0, len(x), batch_size):
            xb = x[b0 : b0 + batch_size].to(device)
            views = d4_orbit(xb)  # (B, 8, C, P, P); view k = g_k x
            diff = (views[:, 1:] - xb[:, None]).abs().flatten(2).amax(dim=2)  # (B, 7)
            symmetric = (diff < tol).any(dim=1)  # (B,)
            pred = model.predict_orientation(views.flatten(0, 1)).view(-1, N_ELEMENTS)  # (B, 8)
            expected = compose[:, pred[:, 0]].T  # (B, 8): D4_COMPOSE[k, pred(x)]
            hits = (pred[:, 1:] == expected[:, 1:])[~symmetric]
            correct += int(hits.sum())
            used += int((~symmetric).sum())
            left_out += int(symmetric.sum())
    finally:
        model.train(was_training)
    acc = correct / (used * (N_ELEMENTS - 1)) if used else math.nan
    return acc, used, left_out
