"""Whole-image reconstruction from overlapping tiles, streamed in bands (DESIGN §5).

The image is processed in horizontal bands of tile rows: only one band of raw
input is read and normalized at a time, its tiles go to the device in batches,
and :class:`~napari_imc_vae.engine.apply.tiling.BandStitcher` returns the image rows
no later tile touches, which are written to the outputs straight away. Memory
therefore stays bounded by a band whatever the image height; pass np.memmaps as
``out`` to keep the (C, Y, X) outputs on disk too (see :func:`memmap_outputs`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from napari_imc_vae.engine.defaults import TILE_BATCH
from napari_imc_vae.engine.apply.tiling import BandStitcher, TileGrid

__all__ = ["Reconstruction", "reconstruct_image", "memmap_outputs", "normalized_rows", "OUTPUT_NAMES"]

OUTPUT_NAMES = ("normalized", "raw", "error", "residual", "channel_error", "latent", "hot_pixels")
# elements of a (C, rows, X) block the calibrated residual is computed on at a time (~32 MB of float64)
_RESIDUAL_BLOCK = 4_000_000
# pixels per channel the pooled error's inflation (spatially correlated misfit) is measured on at most
_INFLATION_PIXELS = 400_000
# rows read beyond a band on each side before normalizing, so a 3×3 neighbourhood step
# (the hot-pixel filter) sees the same neighbours as on the whole image
_NORMALIZER_HALO = 1
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
        estimated on this image (:func:`~napari_imc_vae.engine.apply.error_unit.estimate_noise`);
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


_DTYPES = {"hot_pixels": np.uint8}


def _output_shapes(image_shape, grid: TileGrid, latent_dim: int) -> dict[str, tuple[int, ...]]:
    c, y, x = image_shape
    return {"normalized": (c, y, x), "raw": (c, y, x), "error": (y, x), "residual": (c, y, x),
            "channel_error": (c, y, x),
            "latent": (latent_dim, *grid.n_tiles), "hot_pixels": (y, x)}


def memmap_outputs(directory, image_shape, model, *, stride: int | None = None) -> dict[str, np.memmap]:
    """Float32 np.memmaps in ``directory`` for every output, to pass as ``out``.

    Parameters
    ----------
    directory : path-like
        Existing folder; files are named ``<output>.f32``.
    image_shape : tuple of int
        ``(C, Y, X)`` of the image to reconstruct.
    model : nn.Module
        Supplies ``config.patch_size`` and ``config.latent_dim``.

    Returns
    -------
    dict of str to np.memmap
    """
    grid = TileGrid.create(image_shape[1:], model.config.patch_size, stride)
    shapes = _output_shapes(image_shape, grid, model.config.latent_dim)
    return {name: np.lib.format.open_memmap(os.path.join(directory, f"{name}.npy"), mode="w+",
                                            dtype=_DTYPES.get(name, np.float32), shape=shape)
            for name, shape in shapes.items()}


def _get_out(out, name: str):
    if out is None:
        return None
    return out.get(name) if isinstance(out, Mapping) else getattr(out, name, None)


def _model_device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


class _NormalizedRows:
    """Normalized image rows on demand, reusing the rows the previous band already had.

    With ``as_read``, :meth:`get` also gives the rows normalized without the hot-pixel
    filter and where it replaced pixels (:meth:`Normalizer.normalize_as_read`).
    """

    def __init__(self, image, normalizer, as_read: bool = False) -> None:
        self.image, self.normalizer = image, normalizer
        self.as_read = bool(as_read) and hasattr(normalizer, "normalize_as_read")
        self.start, self.block = 0, None

    def _compute(self, lo: int, hi: int) -> tuple[np.ndarray, ...]:
        n = self.image.shape[1]
        a, b = max(lo - _NORMALIZER_HALO, 0), min(hi + _NORMALIZER_HALO, n)
        raw = np.asarray(self.image[:, a:b], dtype=np.float32)
        if self.as_read:
            parts = self.normalizer.normalize_as_read(raw)
        else:
            parts = (raw if self.normalizer is None else np.asarray(self.normalizer(raw), dtype=np.float32),)
        return tuple(part[:, lo - a : hi - a] for part in parts)

    def get_all(self, lo: int, hi: int) -> tuple[np.ndarray, ...]:
        """Rows ``[lo, hi)``: (normalized,) or, with ``as_read``, (normalized, as read, replaced)."""
        blk = self.block
        if blk is not None and self.start <= lo and hi <= self.start + blk[0].shape[1]:
            return tuple(part[:, lo - self.start : hi - self.start] for part in blk)
        if blk is not None and self.start <= lo < self.start + blk[0].shape[1]:
            end = self.start + blk[0].shape[1]
            blk = tuple(np.concatenate([old[:, lo - self.start :], new], axis=1)
                        for old, new in zip(blk, self._compute(end, hi)))
        else:
            blk = self._compute(lo, hi)
        self.start, self.block = lo, blk
        return blk

    def get(self, lo: int, hi: int) -> np.ndarray:
        """Normalized rows ``[lo, hi)`` as a (C, hi - lo, X) float32 array."""
        return self.get_all(lo, hi)[0]


def normalized_rows(image, normalizer) -> Callable[[int, int], np.ndarray]:
    """``rows(lo, hi)``: rows ``[lo, hi)`` of ``normalizer(image)`` as (C, hi - lo, X) float32.

    Reads and normalizes only those rows (and one more on each side for the hot-pixel
    filter); asking for increasing, overlapping ranges reuses the rows asked for before.
    Equal to the same rows of ``normalizer(image)`` on the whole image.
    """
    return _NormalizedRows(image, normalizer).get


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
    for name, oshape in _output_shapes(shape, grid, cfg.latent_dim).items():
        if name in outputs:
            continue
        arr = _get_out(out, name) if name != "raw" or keep_raw else None
        if arr is None:
            arr = np.empty(oshape, dtype=_DTYPES.get(name, np.float32))
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
    rows = _NormalizedRows(image, normalizer, as_read=True)
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
                    _write_rows(outputs, normalizer, rec, parts[1] if len(parts) > 1 else parts[0], y0, y1,
                                rate_factors)
                    if outputs["hot_pixels"] is not None:
                        outputs["hot_pixels"][y0:y1] = 0 if len(parts) == 1 else parts[2].sum(axis=0)
                    if on_rows is not None:
                        on_rows(y0, parts[0])
    finally:
        model.train(was_training)
    scale = dispersion = None
    if calibrated:
        scale, dispersion = _write_calibrated(outputs, image)
    if not keep_raw:
        outputs["raw"] = None
    return Reconstruction(**outputs, patch_size=grid.patch_size, stride=grid.stride, dispersion=dispersion,
                          noise_scale=scale)


def _write_calibrated(outputs: dict, image) -> tuple[np.ndarray, np.ndarray]:
    """Second pass: the noise model from the whole image, then residual and pixel error by bands."""
    from napari_imc_vae.engine.apply.error_unit import count_residual, dead_area_error, estimate_noise

    raw = outputs["raw"]
    c, y_size, x_size = raw.shape
    # evenly spaced whole rows: a fancy index reads only those rows of a memmap
    n_rows = min(y_size, max(1, 200_000 // max(x_size, 1)))
    rows = np.unique(np.linspace(0, y_size - 1, n_rows).round().astype(np.intp))
    scale, dispersion = estimate_noise(np.asarray(image[:, rows], dtype=np.float32), raw[:, rows])
    dead = inflation = None
    if outputs["error"] is not None:
        from napari_imc_vae.engine.apply.multiscale_error import POOL_HALO, multiscale_error

        dead = dead_area_error(image, scale=scale)  # (Y, X)
        inflation = _pooling_inflation(image, raw, scale, dispersion)
    step = max(1, _RESIDUAL_BLOCK // max(c * x_size, 1))
    for y0 in range(0, y_size, step):
        y1 = min(y_size, y0 + step)
        # the pooled error needs POOL_HALO rows beyond the band on each side
        h0, h1 = (y0, y1) if dead is None else (max(0, y0 - POOL_HALO), min(y_size, y1 + POOL_HALO))
        r = count_residual(np.asarray(image[:, h0:h1], dtype=np.float32), raw[:, h0:h1], dispersion, scale=scale)
        if outputs["residual"] is not None:
            outputs["residual"][:, y0:y1] = r[:, y0 - h0 : y1 - h0]
        if dead is not None:
            e = multiscale_error(r, dead[h0:h1], inflation=inflation)
            outputs["error"][y0:y1] = e[y0 - h0 : y1 - h0]
    return scale, dispersion


def _pooling_inflation(image, raw, scale, dispersion) -> np.ndarray:
    """:func:`~napari_imc_vae.engine.apply.multiscale_error.pooling_inflation` on the whole image, or on
    8 evenly spaced bands of contiguous rows (NaN rows between them) when it is large."""
    from napari_imc_vae.engine.apply.error_unit import count_residual
    from napari_imc_vae.engine.apply.multiscale_error import POOL_HALO, pooling_inflation

    c, y_size, x_size = raw.shape
    band = max(4 * POOL_HALO, _INFLATION_PIXELS // (8 * max(x_size, 1)))
    if y_size <= 8 * band:
        bands = [(0, y_size)]
    else:
        bands = [(int(y0), int(y0) + band) for y0 in np.linspace(0, y_size - band, 8).round()]
    gap = np.full((c, POOL_HALO, x_size), np.nan, np.float32)
    parts_r, parts_mu = [], []
    for y0, y1 in bands:
        parts_r += [count_residual(np.asarray(image[:, y0:y1], dtype=np.float32), raw[:, y0:y1], dispersion,
                                   scale=scale), gap]
        parts_mu += [np.asarray(raw[:, y0:y1], dtype=np.float32), np.zeros_like(gap)]
    return pooling_inflation(np.concatenate(parts_r, axis=1), np.concatenate(parts_mu, axis=1))


def _write_rows(outputs: dict, normalizer, rec: np.ndarray, target: np.ndarray, y0: int, y1: int,
                rate_factors=None) -> None:
    """Write finished rows ``[y0, y1)``: rec and target are (C, y1 - y0, X) in normalized units."""
    from napari_imc_vae.engine.apply.rate_calibration import apply_rate_factors

    if outputs["normalized"] is not None:
        outputs["normalized"][:, y0:y1] = rec
    if outputs["raw"] is not None:
        raw = rec.copy() if normalizer is None else normalizer.inverse(rec)
        outputs["raw"][:, y0:y1] = apply_rate_factors(raw, rate_factors)  # counts: never negative
    if outputs["channel_error"] is None:
        return
    sq = rec - target
    np.square(sq, out=sq)
    sq[~np.isfinite(target)] = np.nan  # an Inf input gives Inf - rec; both count as missing
    outputs["channel_error"][:, y0:y1] = sq
