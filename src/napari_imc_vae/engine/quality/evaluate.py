"""The quality report: is the reconstruction any good? (DESIGN §4)

:func:`evaluate` measures a model on held-out patches next to two baselines on the
same patches — the mean patch (R² ≈ 0) and PCA with as many components as latent
dimensions — once against the patches themselves and once against a lightly smoothed
target (Gaussian σ = 1 px), which separates structure from shot noise. The baselines are
fitted where the model was: on training patches given here, or stored in the model file at
the end of training; without either, the report gives no verdict against them.

The measures are accumulated in one pass over chunks (:mod:`~napari_imc_vae.engine.quality.measures`);
patches touching a NaN/Inf pixel are left out of all of them and counted. The smoothing and the
grid of patches are in :mod:`~napari_imc_vae.engine.quality.smoothing` (re-exported here), the figures'
words and thresholds in :mod:`~napari_imc_vae.engine.quality.report`.

The absolute thresholds of DESIGN §4 hold for smooth inputs only. Whether the data
are smooth is read off the data: smoothing with σ = 1 px keeps most of the gradient
energy of smooth images and little of shot noise (``target_smoothness`` ≥ ``SMOOTH_DATA``).
"""

from __future__ import annotations

import numpy as np
import torch

from napari_imc_vae.engine.quality.baselines import PCABaseline
from napari_imc_vae.engine.defaults import PERM_PATCHES  # re-exported: the patches permutation accuracy uses
from napari_imc_vae.engine.quality.measures import (
    PredictionSums,
    StreamSums,
    active_units,
    evenly_spaced,
    finite_patches,
    permutation_accuracy,
    sharpness_between,
)
from napari_imc_vae.engine.quality.report import SMOOTH_DATA, THRESHOLDS, Measures, QualityReport
from napari_imc_vae.engine.quality.smoothing import GridPatches, gaussian_smooth, smoothing_radius

__all__ = ["GridPatches", "Measures", "QualityReport", "evaluate", "gaussian_smooth", "smoothing_radius",
           "PERM_PATCHES", "THRESHOLDS", "TRAINING_PATCHES_SOURCE"]

#: ``baseline_source`` when :func:`evaluate` fits the baselines on the training patches it is given.
TRAINING_PATCHES_SOURCE = "training patches given to evaluate"


def _patch_tensor(patches, name: str) -> torch.Tensor:
    """(N, C, P, P) float32 on the CPU; no copy when given float32 on the CPU."""
    # torch.as_tensor first: patches may be tensors on a GPU, which np.asarray cannot read
    t = torch.as_tensor(patches).detach().to("cpu", torch.float32)
    if t.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, P, P), got {tuple(t.shape)}")
    return t


def _fit_on(train_patches, shape: tuple[int, ...], latent_dim: int) -> PCABaseline:
    tr = _patch_tensor(train_patches, "train_patches")
    if tuple(tr.shape[1:]) != shape:
        raise ValueError(f"train_patches must have shape (M, {', '.join(map(str, shape))}), got {tuple(tr.shape)}")
    finite = finite_patches(tr)
    n = int(finite.sum())
    if n == 0:
        raise ValueError(f"no training patch without NaN/Inf pixels among the {len(tr)} given: "
                         f"no baseline can be fitted")
    return PCABaseline.fit(tr if n == len(tr) else tr[finite], min(latent_dim, n, int(np.prod(shape))))


@torch.no_grad()
def evaluate(model, val_patches, train_patches=None, *, baseline: PCABaseline | None = None,
             baseline_source: str | None = None, batch_size: int = 512, smooth_target=None,
             smooth_data: bool | None = None, perm_patches: int | None = PERM_PATCHES,
             predictions=None) -> QualityReport:
    """Measure a model and its baselines on held-out patches.

    Parameters
    ----------
    model : nn.Module
        Has ``config.latent_dim``, ``reconstruct(x) -> (recon, mu)`` and
        ``predict_orientation(x)``; evaluated in eval mode, its mode restored after.
    val_patches : array of shape (N, C, P, P)
        Held-out patches in normalized units. Patches touching a NaN/Inf value are left out
        of every measure (counted in ``n_skipped_nonfinite``).
    train_patches : array of shape (M, C, P, P), optional
        Patches PCA-k (k = latent dimensions) and the mean predictor are fitted on (those
        without NaN/Inf values).
    baseline : PCABaseline, optional
        Used when no ``train_patches`` are given: a fitted baseline (e.g. the one stored in the
        model file); the mean predictor is its mean. With neither, the report has no baseline.
    baseline_source : str, optional
        Where the baseline was fitted, in plain words, for the report; default with
        ``train_patches``: :data:`TRAINING_PATCHES_SOURCE`.
    batch_size : int
        Patches per model call and per chunk of the measures.
    smooth_target : array of shape (N, C, P, P), optional
        The same patches cut from the image smoothed with :func:`gaussian_smooth`
        (better at patch borders); default: each patch smoothed on its own.
    smooth_data : bool, optional
        Whether the absolute thresholds apply; default: read off the data.
    perm_patches : int, optional
        Held-out patches (evenly spaced) used for the permutation accuracy, which costs 8
        orientation predictions per patch; None uses all. See :data:`PERM_PATCHES`.
    predictions : (array, array), optional
        The model's ``(recon, mu)`` for ``val_patches`` (N, C, P, P) and (N, D), already
        computed (e.g. by the whole-image reconstruction, whose tiles these patches are):
        the model is then not run on them again.

    Returns
    -------
    QualityReport

    Raises
    ------
    ValueError
        If the patch arrays do not have matching (C, P, P) shapes, or no held-out patch is
        free of NaN/Inf values.
    """
    x = _patch_tensor(val_patches, "val_patches")
    if len(x) < 1:
        raise ValueError(f"val_patches must have shape (N, C, P, P) with N >= 1, got {tuple(x.shape)}")
    shape = tuple(x.shape[1:])
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    xs, source = None, "patch"
    if smooth_target is not None:
        xs, source = _patch_tensor(smooth_target, "smooth_target"), "image"
        if xs.shape != x.shape:
            raise ValueError(f"smooth_target must have the shape of val_patches {tuple(x.shape)}, "
                             f"got {tuple(xs.shape)}")
    d = int(model.config.latent_dim)
    if predictions is not None and (len(predictions) != 2 or len(predictions[0]) != len(x)
                                    or len(predictions[1]) != len(x)):
        raise ValueError(f"predictions must be (recon, mu) for the {len(x)} val_patches")
    if train_patches is not None:
        baseline = _fit_on(train_patches, shape, d)
        baseline_source = baseline_source or TRAINING_PATCHES_SOURCE
    elif baseline is not None:
        if not isinstance(baseline, PCABaseline):
            raise ValueError(f"baseline must be a PCABaseline, got {type(baseline).__name__}")
        if tuple(baseline.patch_shape) != shape:
            raise ValueError(f"the baseline was fitted on patches of shape {tuple(baseline.patch_shape)}; "
                             f"val_patches have {shape}")
    keep = finite_patches(x) if xs is None else finite_patches(x) & finite_patches(xs)
    kept = torch.nonzero(keep).squeeze(1) if not bool(keep.all()) else None
    n = len(x) if kept is None else len(kept)
    if n == 0:
        raise ValueError(f"no patch without NaN/Inf pixels among the {len(x)} held-out patches: "
                         f"nothing to measure")

    def rows(a: torch.Tensor, b0: int, b1: int) -> torch.Tensor:
        return a[b0:b1] if kept is None else a[kept[b0:b1]]
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    data, smooth = StreamSums(), StreamSums()
    fit, pca = PredictionSums(), PredictionSums()
    mean = PredictionSums(baseline.mean_patch()) if baseline is not None else None
    mus, zs, bad = [], [], 0
    was_training = model.training
    model.eval()
    try:
        for b0 in range(0, n, batch_size):
            xb = rows(x, b0, b0 + batch_size)
            sb = rows(xs, b0, b0 + batch_size) if xs is not None else \
                torch.from_numpy(gaussian_smooth(xb, dtype=torch.float32))
            if predictions is None:
                rec, mu = model.reconstruct(xb.to(device))
                rec, mu = rec.to("cpu", torch.float32), mu.to("cpu", torch.float32)
            else:
                rec, mu = (rows(torch.as_tensor(a), b0, b0 + batch_size).to("cpu", torch.float32)
                           for a in predictions)
            data.update(xb)
            smooth.update(sb)
            bad += int((~torch.isfinite(fit.update(rec, data, xb, smooth, sb))).sum())
            mus.append(mu)
            if baseline is not None:
                pca_rec, z = baseline.project_finite(xb)
                pca.update(pca_rec, data, xb, smooth, sb)
                mean.update(None, data, xb, smooth, sb)
                zs.append(z)
        pick = evenly_spaced(n, perm_patches)
        perm_x = (x if kept is None else x[kept]) if pick is None else x[pick if kept is None else kept[pick]]
        acc, used, left = permutation_accuracy(model, perm_x, batch_size=max(1, batch_size // 8))
    finally:
        model.train(was_training)
    au = active_units(torch.cat(mus))
    model_m, model_s = fit.measures(Measures, data, smooth, active_units=au, active_fraction=au / d,
                                    perm_accuracy=acc, perm_used=used, perm_left_out=left)
    pca_m = pca_s = mean_m = mean_s = None
    if baseline is not None:
        pca_au = active_units(torch.cat(zs)) if baseline.k else 0
        pca_m, pca_s = pca.measures(Measures, data, smooth, active_units=pca_au,
                                    active_fraction=pca_au / max(baseline.k, 1))
        mean_m, mean_s = mean.measures(Measures, data, smooth)
    smoothness = sharpness_between(data, smooth)
    return QualityReport(
        model=model_m, pca=pca_m, mean=mean_m, model_smooth=model_s, pca_smooth=pca_s, mean_smooth=mean_s,
        latent_dim=d, pca_k=None if baseline is None else baseline.k, n_val=n,
        n_train=None if baseline is None else baseline.n_patches, target_smoothness=smoothness,
        smooth_data=bool(smoothness >= SMOOTH_DATA) if smooth_data is None else bool(smooth_data),
        smooth_source=source, baseline_source=baseline_source if baseline is not None else None,
        n_skipped_nonfinite=len(x) - n, n_nonfinite_reconstructions=bad,
    )
