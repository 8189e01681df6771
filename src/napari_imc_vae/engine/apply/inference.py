"""Whole-image reconstruction from overlapping tiles, streamed in bands (DESIGN §5):
:func:`reconstruct_image` (any model and normalizer) and :func:`apply_model` (a trained model,
the image's channels put in the model's order).

The image is processed in horizontal bands of tile rows: only one band of raw
input is read and normalized at a time (:mod:`~napari_imc_vae.engine.apply.normalized_rows`),
its tiles go to the device in batches, and
:class:`~napari_imc_vae.engine.apply.tiling.BandStitcher` returns the image rows no later tile
touches, which are written to the outputs straight away
(:mod:`~napari_imc_vae.engine.apply.reconstruction_outputs`, which also holds the second,
calibrated pass: noise model, count residual, error map). Memory therefore stays bounded by a
band whatever the image height; pass np.memmaps as ``out`` to keep the (C, Y, X) outputs on
disk too (see :func:`~napari_imc_vae.engine.apply.reconstruction_outputs.memmap_outputs`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from napari_imc_vae.engine.apply.normalized_rows import NormalizedRows
from napari_imc_vae.engine.apply.reconstruction_outputs import (
    OUTPUT_DTYPES,
    OUTPUT_NAMES,
    output_shapes,
    provided_out,
    write_calibrated,
    write_rows,
)
from napari_imc_vae.engine.apply.tiling import BandStitcher, TileGrid
from napari_imc_vae.engine.defaults import TILE_BATCH

if TYPE_CHECKING:
    from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
    from napari_imc_vae.io import ImcImage

__all__ = ["Reconstruction", "reconstruct_image", "apply_model", "ordered_data", "OUTPUT_NAMES"]

# tiles per band at least: large enough to amortise Python overhead, small enough (~40 MB
# of float32 tiles at 40 channels, 8×8) to keep memory bounded
_MIN_BAND_TILES = 4096


@dataclass
class Reconstruction:
    """Outputs of :func:`reconstruct_image`.

    Attributes
    ----------
    normalized : ndarray of shape (C, Y, X), float32
        Reconstruction in normalized units.
    raw : ndarray of shape (C, Y, X), float32
        Reconstruction mapped back to raw units by ``normalizer.inverse``, times the model's
        per-channel ``rate_factors`` (:mod:`~napari_imc_vae.engine.apply.rate_calibration`), clipped
        at 0: counts are never negative (the inverse of arcsinh maps below-background values
        of the model to negative numbers).
    error : ndarray of shape (Y, X), float32
        The calibrated per-pixel error in noise SDs
        (:func:`~napari_imc_vae.engine.apply.multiscale_error.multiscale_error` of ``residual``): the
        worst channel's residual, calibrated for the number of finite channels, or its excess
        pooled over small windows where that is less likely; NaN where no
        channel is finite.
    residual : ndarray of shape (C, Y, X), float32
        Signed count residual per channel in noise SDs
        (:func:`~napari_imc_vae.engine.apply.error_unit.count_residual`) of the image *as read*
        (before the hot-pixel filter, so what the filter removed shows) against ``raw``,
        with the noise model ``noise_scale``, ``dispersion``; NaN where the input is not finite.
    channel_error : ndarray of shape (C, Y, X), float32
        Squared error per channel in normalized (variance-stabilized) units against the
        image as read (normalized without the hot-pixel filter); NaN where the input is
        not finite.
    noise_scale, dispersion : ndarray of shape (C,), float64
        The noise model per channel, variance ``noise_scale·rate + dispersion·rate²``,
        estimated on this image (:func:`~napari_imc_vae.engine.apply.noise_model.estimate_noise`);
        None when neither ``error`` nor ``residual`` was computed.
    hot_pixels : ndarray of shape (Y, X), uint8
        In how many channels the hot-pixel filter replaced the pixel (0: none).
    latent : ndarray of shape (D, ny, nx), float32
        ``mu`` of the tile centred on image pixel ``(i*stride, j*stride)``; show it over
        the image with ``scale=(stride, stride)``.
    patch_size, stride : int

    An output left out with ``reconstruct_image(..., outputs=...)`` is None.
    """

    normalized: np.ndarray | None
    raw: np.ndarray | None
    error: np.ndarray | None
    channel_error: np.ndarray | None
    latent: np.ndarray
    patch_size: int
    stride: int
    hot_pixels: np.ndarray | None = None
    residual: np.ndarray | None = None
    dispersion: np.ndarray | None = None
    noise_scale: np.ndarray | None = None

    @property
    def latent_scale(self) -> tuple[int, int]:
        """napari ``scale`` that puts the latent map over the image (translate 0)."""
        return self.stride, self.stride


def _model_device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _check_args(model, image, batch_size):
    shape = getattr(image, "shape", None)
    if shape is None:
        image = np.asarray(image)
        shape = image.shape
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image must have shape (C, Y, X) with all sizes >= 1, got shape {tuple(shape)}")
    dtype = np.dtype(getattr(image, "dtype", np.float32))
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise TypeError(f"image must hold real numbers, got dtype {dtype}")
    cfg = model.config
    if shape[0] != cfg.in_channels:
        raise ValueError(f"image has {shape[0]} channels, the model expects in_channels={cfg.in_channels}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    return image, tuple(int(s) for s in shape)


def reconstruct_image(
    model: torch.nn.Module,
    image,
    normalizer=None,
    *,
    stride: int | None = None,
    batch_size: int = TILE_BATCH,
    device: str | torch.device | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    out=None,
    on_rows: Callable[[int, np.ndarray], None] | None = None,
    outputs: tuple[str, ...] = OUTPUT_NAMES,
    on_tiles: Callable[[int, int, np.ndarray, np.ndarray], None] | None = None,
    precision: str = "fp32",
    rate_factors=None,
) -> Reconstruction:
    """Reconstruct a whole image from overlapping, smoothly blended tiles.

    Parameters
    ----------
    model : nn.Module
        Has ``config.patch_size``, ``config.in_channels``, ``config.latent_dim`` and
        ``reconstruct(x) -> (recon, mu)`` on (B, C, P, P) tensors. Run in eval mode;
        its train/eval mode is restored afterwards.
    image : array-like of shape (C, Y, X)
        Raw image, any size >= 1×1 px; a np.memmap is read one band at a time.
    normalizer : callable, optional
        ``normalizer(raw) -> normalized`` on (C, rows, X) blocks and
        ``normalizer.inverse(normalized) -> raw`` (a
        :class:`~napari_imc_vae.preprocessing.Normalizer`). It must work pixel by
        pixel or within a 3×3 neighbourhood (the hot-pixel filter): bands are read
        with one extra row on each side. None: the image is already normalized,
        ``raw`` equals ``normalized`` (clipped at 0) and the count residual takes the
        image's values as counts.
    stride : int, optional
        Step between tiles, 1..P; default ``P // 2``.
    batch_size : int
        Tiles per model call.
    device : str or torch.device, optional
        Where the model runs; default the device of its parameters. The model is
        moved there (``nn.Module.to`` works in place).
    on_progress : callable, optional
        Called as ``on_progress(done_tiles, total_tiles)`` after every batch.
    out : mapping or object with attributes, optional
        Preallocated arrays (or np.memmaps) for any of ``normalized``, ``raw``,
        ``error``, ``residual``, ``channel_error``, ``latent``, with the shapes of
        :class:`Reconstruction`; missing ones are allocated in memory.
    on_rows : callable, optional
        Called as ``on_rows(start, rows)`` with the normalized input, (C, n, X) float32
        rows ``[start, start + n)`` (NaN/Inf as read), for every row once, in order, so
        that a caller can use the normalized image without computing it again or
        holding all of it (e.g. :class:`~napari_imc_vae.engine.quality.evaluate.GridPatches`).
    on_tiles : callable, optional
        Called as ``on_tiles(i0, i1, recon, mu)`` for every band of tile rows ``i0..i1-1``
        with the model's outputs for its tiles, row-major: recon (n, C, P, P) float32 in
        normalized units, mu (n, D); tile ``(i, j)`` starts at image pixel
        ``(i*S - P//2, j*S - P//2)``. Lets a caller reuse them (the quality report's
        patches on the tile grid) instead of running the model again.
    precision : {"fp32", "bf16", "auto"}
        ``auto``: bf16 autocast on CUDA and on CPUs that run bf16 natively (AMX,
        AVX512-BF16), where it is about twice as fast and matches fp32 within ~1e-3 R²
        (tested); fp32 elsewhere. The outputs are float32 either way.
    rate_factors : sequence of float, optional
        One factor per channel on the reconstruction in counts (``TrainedModel.rate_factors``,
        measured at the end of training: the inverse of the normalization alone lies below
        the mean count). None: factor 1. ``normalized`` is not changed.
    outputs : tuple of str
        Which of :data:`OUTPUT_NAMES` to compute (``latent`` always is); the others are
        None, which saves their memory and time (the CLI writes no per-channel error).
        ``error`` and ``residual`` need the raw reconstruction: it is computed (in memory)
        even when ``raw`` is left out.

    Returns
    -------
    Reconstruction

    Raises
    ------
    ValueError
        If the image is not (C, Y, X), its channel count differs from the model's,
        ``stride`` or ``batch_size`` are out of range, or an ``out`` array has the
        wrong shape.

    Notes
    -----
    NaN/Inf input pixels are fed to the model as 0 (the channel mean after z-score)
    and are NaN in ``channel_error`` and ``residual``.

    ``error`` and ``residual`` are computed in a second pass over bands of rows, once the
    whole raw reconstruction is known (the overdispersion is estimated on the whole image),
    reading the image and ``raw`` again band by band: with np.memmaps nothing of size
    (C, Y, X) is held in memory.
    """
    image, shape = _check_args(model, image, batch_size)
    c, y_size, x_size = shape
    cfg = model.config
    grid = TileGrid.create((y_size, x_size), cfg.patch_size, stride)
    unknown = set(outputs) - set(OUTPUT_NAMES)
    if unknown:
        raise ValueError(f"unknown outputs {sorted(unknown)}; choose from {OUTPUT_NAMES}")
    keep_raw = "raw" in outputs
    calibrated = "error" in outputs or "residual" in outputs
    outputs = {name: None for name in OUTPUT_NAMES
               if name not in outputs and name != "latent" and not (name == "raw" and calibrated)}
    for name, oshape in output_shapes(shape, grid, cfg.latent_dim).items():
        if name in outputs:
            continue
        arr = provided_out(out, name) if name != "raw" or keep_raw else None
        if arr is None:
            arr = np.empty(oshape, dtype=OUTPUT_DTYPES.get(name, np.float32))
        elif tuple(arr.shape) != oshape:
            raise ValueError(f"out[{name!r}] must have shape {oshape}, got {tuple(arr.shape)}")
        outputs[name] = arr

    device = _model_device(model) if device is None else torch.device(device)
    model.to(device)
    from napari_imc_vae.engine.device import precision_autocast

    autocast = precision_autocast(precision, device)
    was_training = model.training
    model.eval()
    ny, nx = grid.n_tiles
    band = max(1, math.ceil(max(batch_size, _MIN_BAND_TILES) / nx))
    stitcher = BandStitcher(grid, c)
    rows = NormalizedRows(image, normalizer, as_read=True)
    cols = grid.source_index(0, grid.padded_shape[1], 1)
    done, total = 0, grid.total
    try:
        with torch.inference_mode(), autocast:
            for i0 in range(0, ny, band):
                i1 = min(ny, i0 + band)
                r0, r1 = grid.band_rows(i0, i1)
                src = grid.source_index(r0, r1, 0)
                lo, hi = int(src.min()), int(src.max()) + 1
                norm = rows.get(lo, hi)  # (C, hi - lo, X)
                padded = norm[:, src - lo][:, :, cols]  # (C, r1 - r0, Xp)
                np.nan_to_num(padded, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
                tiles = grid.extract_padded(padded)  # (n, C, P, P)
                recon = np.empty_like(tiles)
                mus = []
                for b0 in range(0, len(tiles), batch_size):
                    xb = torch.from_numpy(tiles[b0 : b0 + batch_size]).to(device)
                    rb, mu = model.reconstruct(xb)
                    recon[b0 : b0 + len(xb)] = rb.float().cpu().numpy()
                    mus.append(mu.float().cpu())
                    done += len(xb)
                    if on_progress is not None:
                        on_progress(done, total)
                mu = torch.cat(mus).numpy()
                if on_tiles is not None:
                    on_tiles(i0, i1, recon, mu)
                mu = mu.reshape(i1 - i0, nx, -1)  # (rows, nx, D)
                outputs["latent"][:, i0:i1] = mu.transpose(2, 0, 1)
                y0, y1, rec = stitcher.add(i0, i1, recon)
                if y1 > y0:
                    parts = rows.get_all(y0, y1)  # (normalized[, as read, replaced])
                    write_rows(outputs, normalizer, rec, parts[1] if len(parts) > 1 else parts[0], y0, y1,
                               rate_factors)
                    if outputs["hot_pixels"] is not None:
                        outputs["hot_pixels"][y0:y1] = 0 if len(parts) == 1 else parts[2].sum(axis=0)
                    if on_rows is not None:
                        on_rows(y0, parts[0])
    finally:
        model.train(was_training)
    scale = dispersion = None
    if calibrated:
        scale, dispersion = write_calibrated(outputs, image)
    if not keep_raw:
        outputs["raw"] = None
    return Reconstruction(**outputs, patch_size=grid.patch_size, stride=grid.stride, dispersion=dispersion,
                          noise_scale=scale)


def ordered_data(trained: TrainedModel, image: ImcImage) -> np.ndarray:
    """The image's data (C, Y, X) in the model's channel order (matched by metal, then name).

    Channels the model does not know are left out (``trained.match_channels(image).ignored``).
    """
    return trained.match_channels(image).take(image.data)


def apply_model(
    trained: TrainedModel,
    image: ImcImage,
    *,
    stride: int | None = None,
    batch_size: int = TILE_BATCH,
    device: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    out=None,
    on_rows: Callable[[int, np.ndarray], None] | None = None,
    precision: str = "auto",
):
    """Reconstruct a whole image with a trained model (channels matched by metal, then name).

    The reconstruction alone; :func:`napari_imc_vae.engine.apply.use_case.apply_to_image` adds the
    quality report, motifs and regions. ``stride``, ``batch_size``, ``device``,
    ``on_progress``, ``out``, ``on_rows`` and ``precision`` (default ``auto``, as the CLI and
    the widget) are those of :func:`reconstruct_image`.

    Returns
    -------
    Reconstruction
        See :func:`reconstruct_image`; its channels are the model's, in the model's order.
        Image channels the model does not know are left out
        (``trained.match_channels(image).ignored`` names them).

    Raises
    ------
    ChannelMismatchError
        When the image lacks channels of the model's panel; names missing and extra channels.
    """
    from napari_imc_vae.engine.device import resolve_device

    data = ordered_data(trained, image)
    dev = resolve_device(device) if device is not None else None
    return reconstruct_image(
        trained.model, data, trained.normalizer, stride=stride, batch_size=batch_size,
        device=dev, on_progress=on_progress, out=out, on_rows=on_rows, precision=precision,
        rate_factors=trained.rate_factors,
    )
