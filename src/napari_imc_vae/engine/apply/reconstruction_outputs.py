"""The reconstruction's output arrays: their names and shapes, np.memmaps on disk
(:func:`memmap_outputs`), the finished rows written band by band (:func:`write_rows`), and the
second pass over bands of rows once the whole reconstruction in counts is known
(:func:`write_calibrated`: the noise model, the count residual and the error map).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from napari_imc_vae.engine.apply.tiling import TileGrid

__all__ = ["OUTPUT_NAMES", "OUTPUT_DTYPES", "output_shapes", "memmap_outputs", "provided_out", "write_rows",
           "write_calibrated"]

#: What :func:`~napari_imc_vae.engine.apply.inference.reconstruct_image` can compute.
OUTPUT_NAMES = ("normalized", "raw", "error", "residual", "channel_error", "latent", "hot_pixels")
# elements of a (C, rows, X) block the calibrated residual is computed on at a time (~32 MB of float64)
_RESIDUAL_BLOCK = 4_000_000

#: Outputs that are not float32.
OUTPUT_DTYPES = {"hot_pixels": np.uint8}


def output_shapes(image_shape, grid: TileGrid, latent_dim: int) -> dict[str, tuple[int, ...]]:
    """The shape of each output for an image of ``image_shape`` (C, Y, X) on ``grid``."""
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
    shapes = output_shapes(image_shape, grid, model.config.latent_dim)
    return {name: np.lib.format.open_memmap(os.path.join(directory, f"{name}.npy"), mode="w+",
                                            dtype=OUTPUT_DTYPES.get(name, np.float32), shape=shape)
            for name, shape in shapes.items()}


def provided_out(out, name: str):
    """The caller's array for output ``name`` in ``out`` (a mapping or an object with attributes), or None."""
    if out is None:
        return None
    return out.get(name) if isinstance(out, Mapping) else getattr(out, name, None)


def write_rows(outputs: dict, normalizer, rec: np.ndarray, target: np.ndarray, y0: int, y1: int,
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


def write_calibrated(outputs: dict, image) -> tuple[np.ndarray, np.ndarray]:
    """Second pass: the noise model from the whole image, then residual and pixel error by bands."""
    from napari_imc_vae.engine.apply.error_unit import count_residual, dead_area_error
    from napari_imc_vae.engine.apply.noise_model import estimate_noise

    raw = outputs["raw"]
    c, y_size, x_size = raw.shape
    # evenly spaced whole rows: a fancy index reads only those rows of a memmap
    n_rows = min(y_size, max(1, 200_000 // max(x_size, 1)))
    rows = np.unique(np.linspace(0, y_size - 1, n_rows).round().astype(np.intp))
    scale, dispersion = estimate_noise(np.asarray(image[:, rows], dtype=np.float32), raw[:, rows])
    dead = inflation = None
    if outputs["error"] is not None:
        from napari_imc_vae.engine.apply.multiscale_error import POOL_HALO, image_pooling_inflation, multiscale_error

        dead = dead_area_error(image, scale=scale)  # (Y, X)
        inflation = image_pooling_inflation(image, raw, scale, dispersion)
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
