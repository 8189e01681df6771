"""Validation during training: the critic's terms and the DESIGN §4 measures on held-out patches.

The measures are those of the quality report, by the report's rule (one implementation:
:mod:`napari_imc_vae.engine.quality.measures`): patches touching a NaN/Inf value are left out of
R², sharpness, diversity, active units and permutation accuracy (counted in ``n_skipped_nonfinite``;
when every patch touches one, those measures are NaN and active units 0), and permutation accuracy
runs on the same evenly spaced :data:`~napari_imc_vae.engine.defaults.PERM_PATCHES`. The critic's
terms (``val_loss`` and its parts) are the training objective on every validation patch, NaN pixels
masked as in training.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import torch

from napari_imc_vae.engine.data.patches import PatchSampler
from napari_imc_vae.engine.defaults import PERM_PATCHES
from napari_imc_vae.engine.model.critic import CriticConfig, critic
from napari_imc_vae.engine.model.vae import PatchVAE
from napari_imc_vae.engine.quality.measures import (
    active_units,
    evenly_spaced,
    finite_patches,
    permutation_accuracy,
    reconstruction_measures,
)

#: Validation patches per model call.
_MODEL_CHUNK = 1024


@torch.no_grad()
def validate_model(model: PatchVAE, sampler: PatchSampler, critic_config: CriticConfig, *, max_patches: int,
                   autocast: Callable[[], AbstractContextManager]) -> dict[str, float] | None:
    """Critic terms and the quality measures of DESIGN §4 on the sampler's validation patches.

    Parameters
    ----------
    model : PatchVAE
        Run in eval mode (``sample=False``); its mode is restored after.
    sampler : PatchSampler
        Holds the validation patches (the first ``max_patches``, evenly spaced).
    critic_config : CriticConfig
    max_patches : int
    autocast : callable
        Returns the autocast context the model runs under (as in training).

    Returns
    -------
    dict of str to float, or None
        ``val_<term>`` for each critic term, ``r2``, ``sharpness_ratio``, ``diversity_ratio``,
        ``active_units``, ``perm_accuracy``, ``perm_left_out`` (symmetric patches),
        ``n_skipped_nonfinite`` (patches touching NaN/Inf, left out of the measures); None when
        there are no validation patches.
    """
    patches = sampler.validation_patches(max_patches)
    if patches.shape[0] == 0:
        return None
    was_training = model.training
    model.eval()
    try:
        x = torch.nan_to_num(patches, nan=0.0, posinf=0.0, neginf=0.0)
        recon, mu, logvar = [], [], []
        for chunk in x.split(_MODEL_CHUNK):
            with autocast():
                out = model(chunk, sample=False)
            recon.append(out.recon.float())
            mu.append(out.mu.float())
            logvar.append(out.logvar.float())
        recon_t, mu_t, logvar_t = torch.cat(recon), torch.cat(mu), torch.cat(logvar)
        terms = critic(recon_t, patches, mu_t, logvar_t, critic_config, all_finite=sampler.all_finite).as_floats()
        n_patches = len(patches)
        if not sampler.all_finite:  # the report's rule: patches touching NaN/Inf are not measured
            keep = finite_patches(patches)
            if not bool(keep.all()):
                patches, recon_t, mu_t = patches[keep], recon_t[keep], mu_t[keep]
        pick = evenly_spaced(len(patches), PERM_PATCHES)
        accuracy, _, left_out = permutation_accuracy(model, patches if pick is None else patches[pick.to(x.device)])
        measures = reconstruction_measures(patches, recon_t)
        result = {f"val_{k}": v for k, v in terms.items()}
        result.update(
            r2=float(measures["r2"]),
            sharpness_ratio=float(measures["sharpness_ratio"]),
            diversity_ratio=float(measures["diversity_ratio"]),
            active_units=float(active_units(mu_t)),
            perm_accuracy=float(accuracy),
            perm_left_out=float(left_out),
            n_skipped_nonfinite=float(n_patches - len(patches)),
        )
        return result
    finally:
        model.train(was_training)
