"""Reconstruction quality measures on held-out patches (DESIGN §4).

Every function takes numpy arrays or torch tensors of patches ``x`` and
reconstructions ``x_hat`` of shape (N, C, P, P) in normalized units and returns
Python numbers. They are NaN-aware: an element where ``x`` or ``x_hat`` is not
finite is left out; a measure with nothing left to measure is NaN. Sums run in
float64 so that large validation sets do not lose precision.
"""

from __future__ import annotations

import math

import torch

from napari_imc_vae.engine.quality import measures
from napari_imc_vae.engine.model.d4 import N_ELEMENTS, d4_orbit, d4_table

__all__ = [
    "r2",
    "mse",
    "sharpness_ratio",
    "diversity_ratio",
    "active_units",
    "cosine_loss",
    "permutation_accuracy",
    "reconstruction_measures",
]


def _pair(x, x_hat) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Both arrays as float64 tensors with NaN replaced by 0, plus the mask of valid elements."""
    x = torch.as_tensor(x).detach().to("cpu", torch.float64)
    x_hat = torch.as_tensor(x_hat).detach().to("cpu", torch.float64)
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, C, P, P), got shape {tuple(x.shape)}")
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat must have the shape of x {tuple(x.shape)}, got {tuple(x_hat.shape)}")
    valid = torch.isfinite(x) & torch.isfinite(x_hat)
    return torch.where(valid, x, 0.0), torch.where(valid, x_hat, 0.0), valid


def _ratio(num: torch.Tensor, den: torch.Tensor) -> float:
    return float(num / den) if den > 0 else math.nan


def mse(x, x_hat) -> float:
    """Mean squared error over valid elements."""
    return _mse(*_pair(x, x_hat))


def _mse(x: torch.Tensor, x_hat: torch.Tensor, valid: torch.Tensor) -> float:
    return _ratio(((x_hat - x) ** 2).sum(), valid.sum().to(torch.float64))


def r2(x, x_hat) -> float:
    """Variance explained ``1 − SSE / SST``, pooled over channels.

    SST is taken about each channel's mean over all patches and pixels, so
    predicting every pixel by its channel mean scores exactly 0 and a
    perfect reconstruction 1; worse than the mean is negative.

    Parameters
    ----------
    x, x_hat : array of shape (N, C, P, P)

    Returns
    -------
    float
        NaN when ``x`` has no variance.
    """
    return _r2(*_pair(x, x_hat))


def _r2(x: torch.Tensor, x_hat: torch.Tensor, valid: torch.Tensor) -> float:
    n_c = valid.sum(dim=(0, 2, 3)).clamp(min=1)  # (C,)
    mean_c = x.sum(dim=(0, 2, 3)) / n_c  # (C,)
    sst = torch.where(valid, (x - mean_c[None, :, None, None]) ** 2, 0.0).sum()
    sse = ((x_hat - x) ** 2).sum()
    return 1.0 - _ratio(sse, sst) if sst > 0 else math.nan


def _grad_energy(a: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Σ of squared horizontal and vertical differences within patches, per channel: (C,)."""
    dh = (a[..., :, 1:] - a[..., :, :-1]) ** 2 * (valid[..., :, 1:] & valid[..., :, :-1])
    dv = (a[..., 1:, :] - a[..., :-1, :]) ** 2 * (valid[..., 1:, :] & valid[..., :-1, :])
    return dh.sum(dim=(0, 2, 3)) + dv.sum(dim=(0, 2, 3))


def sharpness_ratio(x, x_hat) -> float:
    """Median over channels of ``Σ‖∇x̂‖² / Σ‖∇x‖²`` (finite differences within patches).

    Below 1 the reconstruction is smoother than the data (blur). Channels without
    any gradient in ``x`` (all-zero, constant) are left out.

    Parameters
    ----------
    x, x_hat : array of shape (N, C, P, P)
    """
    return _sharpness_ratio(*_pair(x, x_hat))


def _sharpness_ratio(x: torch.Tensor, x_hat: torch.Tensor, valid: torch.Tensor) -> float:
    den, num = _grad_energy(x, valid), _grad_energy(x_hat, valid)
    keep = den > 0
    if not keep.any():
        return math.nan
    return float((num[keep] / den[keep]).median())  # lower median for an even count


def diversity_ratio(x, x_hat) -> float:
    """``Σ Var_n(x̂) / Σ Var_n(x)``: spread across patches, summed over channels and pixels.

    Near 0 the model returns much the same patch whatever the input (averaged outputs).

    Parameters
    ----------
    x, x_hat : array of shape (N, C, P, P)
    """
    return _diversity_ratio(*_pair(x, x_hat))


def _diversity_ratio(x: torch.Tensor, x_hat: torch.Tensor, valid: torch.Tensor) -> float:
    n = valid.sum(dim=0).to(torch.float64)  # (C, P, P)

    def var_sum(a: torch.Tensor) -> torch.Tensor:
        m = a.sum(dim=0) / n.clamp(min=1)
        return torch.where(valid, (a - m) ** 2, 0.0).sum()

    return _ratio(var_sum(x_hat), var_sum(x))


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


def cosine_loss(x, x_hat, eps: float = 1e-3) -> float:
    """Mean ``1 − cos(x̂_pixel, x_pixel)`` over pixels whose true C-vector has norm > ``eps``.

    The quality measure, a Python float over a whole validation set (the critic's
    differentiable term on one batch is :func:`napari_imc_vae.engine.model.critic.cosine_term`).
    All-zero background has no direction and is left out, as are pixels with a
    non-finite channel. A zero reconstruction vector counts as cosine 0.

    Parameters
    ----------
    x, x_hat : array of shape (N, C, P, P)

    Returns
    -------
    float
        NaN when no pixel qualifies.
    """
    return _cosine_loss(*_pair(x, x_hat), eps=eps)


def _cosine_loss(x: torch.Tensor, x_hat: torch.Tensor, valid: torch.Tensor, eps: float = 1e-3) -> float:
    ok = valid.all(dim=1)  # (N, P, P)
    nx, nh = x.norm(dim=1), x_hat.norm(dim=1)
    ok &= nx > eps
    if not ok.any():
        return math.nan
    cos = (x * x_hat).sum(dim=1) / (nx * nh).clamp(min=1e-12)
    return float((1.0 - cos)[ok].mean())


def reconstruction_measures(x, x_hat, *, chunk: int = 512) -> dict[str, float]:
    """R², mse, sharpness ratio, diversity ratio and cosine loss at once.

    The same numbers as the five functions. When every value of both arrays is finite they
    come from one pass over chunks of ``chunk`` patches in float32 with float64 running sums
    (:mod:`napari_imc_vae.engine.quality.measures`; equal to ~1e-6, and no float64 copy of the
    arrays); otherwise from the arrays converted to float64 and masked once.
    """
    x_t, h_t = torch.as_tensor(x).detach(), torch.as_tensor(x_hat).detach()
    if x_t.ndim == 4 and h_t.shape == x_t.shape and len(x_t) and bool(measures.finite_patches(x_t).all()) \
            and bool(measures.finite_patches(h_t).all()):
        return _one_pass(x_t, h_t, chunk)
    pair = _pair(x, x_hat)
    return {"r2": _r2(*pair), "mse": _mse(*pair), "sharpness_ratio": _sharpness_ratio(*pair),
            "diversity_ratio": _diversity_ratio(*pair), "cosine_loss": _cosine_loss(*pair)}


def _one_pass(x: torch.Tensor, x_hat: torch.Tensor, chunk: int) -> dict[str, float]:
    target, prediction, pair = measures.StreamSums(), measures.StreamSums(), measures.PairSums()
    for b0 in range(0, len(x), chunk):
        t = x[b0 : b0 + chunk].to("cpu", torch.float32)
        p = x_hat[b0 : b0 + chunk].to("cpu", torch.float32)
        target.update(t)
        prediction.update(p)
        pair.update(t, p, target.norm, prediction.norm)
    return measures.pair_measures(target, prediction, pair)


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
