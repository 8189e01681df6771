"""What was fitted at the end of training and stored with the model: baseline, motifs, rate calibration."""

from __future__ import annotations

import torch

from napari_imc_vae.engine.model_file.schema.fields import (
    MAX_HISTORY, MAX_MOTIFS, MAX_SEED, MAX_TEXT, SchemaError, check_dict, check_number, check_text,
    check_whole_number, show,
)
from napari_imc_vae.engine.model_file.schema.tensors import check_dense

__all__ = ["check_baseline", "check_motifs", "check_rate_calibration"]


def check_baseline(value, in_channels: int, patch_size: int, latent_dim: int):
    """The stored PCA baseline: its own state (shapes, finite) and patches of the model's shape.

    Returns ``(PCABaseline, info dict)``.
    """
    from napari_imc_vae.engine.quality.baselines import PCABaseline

    value = check_dict("baseline", value)
    try:
        baseline = PCABaseline.from_state(value)
    except ValueError as e:
        raise SchemaError("baseline", str(e)) from e
    want = (in_channels, patch_size, patch_size)
    if tuple(baseline.patch_shape) != want:
        raise SchemaError("baseline", f"is fitted on patches of shape {tuple(baseline.patch_shape)}; "
                                      f"the model's are {want}")
    if not 1 <= baseline.k <= latent_dim:
        raise SchemaError("baseline.k", f"must be from 1 to the latent dimensions ({latent_dim}), got {baseline.k}")
    info = check_dict("baseline.info", value.get("info", {}))
    for key, v in info.items():
        if not isinstance(key, str):
            raise SchemaError("baseline.info", f"has a key {show(key)}; keys are names")
        if isinstance(v, str):
            check_text(f"baseline.info.{key}", v, empty=True)
        elif isinstance(v, list):
            if len(v) > MAX_HISTORY or not all(isinstance(x, str) and len(x) <= MAX_TEXT for x in v):
                raise SchemaError(f"baseline.info.{key}", f"must be a list of names, got {show(v)}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SchemaError(f"baseline.info.{key}", f"must be a number, a name or a list of names, got {show(v)}")
    return baseline, dict(info)


def check_motifs(value, latent_dim: int):
    """The stored motif centres: a finite (k, latent_dim) float tensor, 1 <= k <= MAX_MOTIFS.

    NaN centres would put every tile in motif 1 without a word; they are refused here.
    Returns the :class:`~napari_imc_vae.engine.apply.motifs.MotifModel`.
    """
    from napari_imc_vae.engine.apply.motifs import MotifModel

    value = check_dict("motifs", value)
    if not set(value) <= {"centers", "seed"} or "centers" not in value:
        raise SchemaError("motifs", f"must have the keys 'centers' and 'seed', got {sorted(map(str, value))}")
    centers = value["centers"]
    if not isinstance(centers, torch.Tensor) or not centers.is_floating_point() or centers.ndim != 2:
        raise SchemaError("motifs.centers", f"must be a 2-D float tensor (k, {latent_dim}), got {show(centers)}")
    k = centers.shape[0]
    if not 1 <= k <= MAX_MOTIFS or centers.shape[1] != latent_dim:
        raise SchemaError("motifs.centers", f"must have shape (k, {latent_dim}) with 1 <= k <= {MAX_MOTIFS}, "
                                            f"got {tuple(centers.shape)}")
    check_dense("motifs.centers", centers, centers.shape, centers.dtype)
    seed = check_whole_number("motifs.seed", value.get("seed", 0), 0, MAX_SEED)
    return MotifModel(centers.detach().to("cpu", torch.float32).numpy().copy(), seed)


def check_rate_calibration(value, in_channels: int):
    """The per-channel rate factors: one finite number per channel within ``FACTOR_RANGE``.

    Returns the :class:`~napari_imc_vae.engine.apply.rate_calibration.RateCalibration`.
    """
    from napari_imc_vae.engine.apply.rate_calibration import FACTOR_RANGE, RateCalibration

    value = check_dict("rate_calibration", value)
    if not set(value) <= {"factors", "measured_on"} or "factors" not in value:
        raise SchemaError("rate_calibration", f"must have the keys 'factors' and 'measured_on', "
                                              f"got {sorted(map(str, value))}")
    factors = value["factors"]
    if not isinstance(factors, list) or len(factors) != in_channels:
        raise SchemaError("rate_calibration.factors", f"must be a list of {in_channels} numbers (one per channel), "
                                                      f"got {show(factors)}")
    low, high = FACTOR_RANGE
    checked = tuple(check_number(f"rate_calibration.factors[{i}]", f, low, high) for i, f in enumerate(factors))
    return RateCalibration(checked, check_text("rate_calibration.measured_on", value.get("measured_on", ""), empty=True))
