"""Writing what applying a model produces: TIFF maps that carry their pixel size, CSV, JSON.

Every file is written with :func:`~napari_imc_vae.io.atomic.atomic_write` (complete or
not at all, the user's umask). Maps are OME-TIFFs whatever their suffix, so that
napari, Fiji and QuPath read their physical pixel size (``PhysicalSizeX/Y`` in µm; the
TIFF resolution tags say the same in pixels per cm); channel names follow steinbock
(``Pr141_CD45``) so that :func:`~napari_imc_vae.io.read_imc` recovers metal and target.
"""

from __future__ import annotations

import csv
import io as _io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile

from napari_imc_vae.io.atomic import atomic_write

__all__ = ["write_map_tiff", "write_csv", "write_json", "write_model_outputs", "OUTPUT_SUFFIXES", "REGION_COLUMNS"]

#: What applying a model writes, ``<stem><suffix>``, in this order.
OUTPUT_SUFFIXES = ("_recon.ome.tiff", "_error.tiff", "_hotpixels.tiff", "_regions.csv", "_latent.tiff",
                   "_motifs.tiff", "_motifs.csv", "_quality.json")
#: Columns of ``<stem>_regions.csv``.
REGION_COLUMNS = ("rank", "y", "x", "y_um", "x_um", "area", "peak_error", "mean_error", "excess", "shape",
                  "channels", "bbox")


def write_map_tiff(path: str | os.PathLike, data: np.ndarray, pixel_size_um: float, *,
                   channel_names: Sequence[str] | None = None,
                   metals: Sequence[str | None] | None = None) -> Path:
    """Write a (Y, X) or (C, Y, X) array as an OME-TIFF with its physical pixel size.

    The package's one OME-TIFF writer: the CLI's maps and the napari writer use it.

    Parameters
    ----------
    path : path-like
    data : ndarray of shape (Y, X) or (C, Y, X)
        float32 maps or integer labels; the dtype is kept.
    pixel_size_um : float
        Size of one array pixel in µm (image pixel size × stride for latent-grid maps).
    channel_names : sequence of str, optional
        One per channel of a (C, Y, X) array.
    metals : sequence of str or None, optional
        The metal of each named channel, written as the OME ``Fluor`` (imctools' style) when
        every channel has one, so that :func:`~napari_imc_vae.io.read_imc` gives it back.
    """
    data = np.ascontiguousarray(data)
    if data.ndim not in (2, 3):
        raise ValueError(f"a map must be (Y, X) or (C, Y, X), got shape {data.shape}")
    px = float(pixel_size_um)
    meta: dict = {"axes": "YX" if data.ndim == 2 else "CYX", "PhysicalSizeX": px, "PhysicalSizeY": px,
                  "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"}
    if channel_names is not None:
        if data.ndim != 3 or len(channel_names) != data.shape[0]:
            raise ValueError(f"{len(channel_names)} channel names for an array of shape {data.shape}")
        meta["Channel"] = {"Name": list(channel_names)}
        if metals is not None and len(metals) == len(channel_names) and all(metals):
            meta["Channel"]["Fluor"] = list(metals)
    per_cm = 1e4 / px if px > 0 else 1.0

    def write(f) -> None:
        tifffile.imwrite(f, data, ome=True, photometric="minisblack", metadata=meta,
                         resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")

    return atomic_write(path, write)


def write_csv(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str] | None = None) -> Path:
    """Write dict rows as a CSV with a header (columns: those of the first row by default)."""
    columns = list(columns if columns is not None else (rows[0].keys() if rows else []))
    text = _io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _cell(row.get(c)) for c in columns})
    return atomic_write(path, lambda f: f.write(text.getvalue().encode("utf-8")))


def _cell(value):
    if isinstance(value, float):
        return "" if not np.isfinite(value) else f"{value:.6g}"
    return value


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON (NaN is refused: convert it to None first)."""
    text = json.dumps(obj, indent=2, allow_nan=False)
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_model_outputs(outdir: str | os.PathLike, stem: str, *, recon_raw: np.ndarray,
                        channel_names: Sequence[str], error: np.ndarray, latent: np.ndarray, stride: int,
                        pixel_size_um: float, quality: dict, motifs: np.ndarray | None = None,
                        motif_rows: Sequence[dict] | None = None, hot_pixels: np.ndarray | None = None,
                        regions: Sequence[dict] | None = None) -> list[Path]:
    """Write the results of applying a model to one image into ``outdir``.

    Files (``<stem>`` is the image's name):

    - ``_recon.ome.tiff``: the reconstruction (C, Y, X) in raw units, channels named;
    - ``_error.tiff``: per-pixel error (Y, X) in noise SDs (see
      :mod:`napari_imc_vae.engine.apply.error_unit`): how far the counts as read (before the
      hot-pixel filter) lie from the reconstruction, worst channel, calibrated;
    - ``_hotpixels.tiff``: in how many channels the hot-pixel filter replaced each pixel
      (uint8, 0 = none), when given;
    - ``_regions.csv``: connected regions of high error, ranked (:data:`REGION_COLUMNS`;
      ``peak_error``, ``mean_error`` and ``excess`` in the unit of ``_error.tiff``), when given;
    - ``_latent.tiff``: the latent map (D, ny, nx) on the stride grid, pixel size × stride;
    - ``_motifs.tiff``: motif labels 1 … k (int32) on the same grid, and ``_motifs.csv``
      (motif, pixels, fraction, mean raw intensity per channel), when motifs were asked for;
    - ``_quality.json``: the quality report and where its baseline was fitted; its ``error``
      entry names the error unit, the regions' threshold in it and the image's figures.

    Latent-grid cell ``(i, j)`` is the tile centred on image pixel ``(i*stride, j*stride)``:
    shown with scale ``stride`` and no offset it lies over the image.

    Returns
    -------
    list of Path
        The files written, in the order above.
    """
    out = Path(outdir)
    px, grid_px = float(pixel_size_um), float(pixel_size_um) * int(stride)
    written = [write_map_tiff(out / f"{stem}_recon.ome.tiff", recon_raw, px, channel_names=channel_names),
               write_map_tiff(out / f"{stem}_error.tiff", error, px)]
    if hot_pixels is not None:
        written.append(write_map_tiff(out / f"{stem}_hotpixels.tiff", hot_pixels.astype(np.uint8), px))
    if regions is not None:
        rows = [{**r, "bbox": " ".join(map(str, r["bbox"]))} for r in regions]
        written.append(write_csv(out / f"{stem}_regions.csv", rows, REGION_COLUMNS))
    written.append(write_map_tiff(out / f"{stem}_latent.tiff", latent, grid_px,
                                  channel_names=[f"latent {i}" for i in range(latent.shape[0])]))
    if motifs is not None:
        written.append(write_map_tiff(out / f"{stem}_motifs.tiff", motifs.astype(np.int32), grid_px))
        written.append(write_csv(out / f"{stem}_motifs.csv", list(motif_rows or [])))
    written.append(write_json(out / f"{stem}_quality.json", quality))
    return written
