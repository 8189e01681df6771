"""From pixels to cells: one row per segmented cell of what applying a model found.

A segmentation mask (label image, 0 = background) turns the pixel maps of
:class:`~napari_imc_vae.engine.apply.use_case.ModelApplication` into a table a scientist carries into
phenotyping (scanpy, squidpy, imcRtools): per cell its area and centroid, the mean raw
intensity of every marker, the mean latent vector, the share of its pixels in each tissue
motif, the mean calibrated error, how much of it an artefact touches, and per marker how
much of its signal the model explains.

Everything is a per-label reduction done in one pass per quantity with ``np.bincount``
over the pixels' compact label index (no Python loop over cells or pixels), so a
1024² image with thousands of cells takes a fraction of a second per channel.

Definitions
-----------
- *mean intensity*: steinbock's (``steinbock measure intensities``): the mean of the cell's
  pixels of the image as given, raw units; NaN/Inf pixels are left out.
- *mean latent vector*: the latent map lives on the stride grid (one vector per tile,
  centred on pixel ``(i*stride, j*stride)``); each pixel takes the vector of the tile centred
  nearest to it (:func:`~napari_imc_vae.engine.apply.motifs.upsample_grid`, as the motif maps), so a
  cell's vector is the area-weighted mean of the tiles its pixels fall nearest to. No
  interpolation: a cell smaller than a stride cell gets one tile's vector, honestly.
- *motif fraction*: the share of the cell's pixels whose nearest tile has motif j (same rule).
- *error*: the mean over the cell of the per-pixel calibrated error
  (``reconstruction.error``), non-finite pixels left out.
- *high-error fraction*: the share of the cell's pixels in a region of high error as
  ``reconstruct`` lists them in ``<image>_regions.csv`` (areas of at least
  :data:`~napari_imc_vae.engine.apply.regions.MIN_REGION_AREA` connected pixels above the
  threshold; :mod:`.artefact_pixels`); *hot-pixel fraction*: replaced by the hot-pixel filter;
  *artefact fraction*: either; *touched by an artefact*: artefact fraction above 0.
- *spike fraction*: the share of the cell's pixels that are an isolated spike (a high pixel
  without a high neighbour, listed apart from the regions): not counted as an artefact above,
  since a single salt pixel of counts is common in real IMC and says little about the cell.
- *explained* (per marker): ``1 − |m − r| / m`` clipped to [0, 1], with ``m`` the cell's mean
  measured intensity and ``r`` the mean of the reconstruction over the same pixels: 1 = the
  model reproduces the cell's signal, 0 = it misses (or invents) as much as the cell holds.
  Means over the cell average out the shot noise no model should copy. NaN where the cell
  holds no counts of that marker (nothing to explain).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from napari_imc_vae.engine.apply.motifs import upsample_grid
from napari_imc_vae.engine.cells.artefact_pixels import listed_pixels
from napari_imc_vae.io.masks import as_labels, check_mask_shape

__all__ = ["CellTable", "measure_cells", "cells_from_application", "FIXED_COLUMNS"]

#: The columns every cell table starts with, in this order (then the per-marker ones).
FIXED_COLUMNS = ("image", "cell_id", "area", "centroid_y_px", "centroid_x_px", "centroid_y_um", "centroid_x_um",
                 "error", "high_error_fraction", "hot_pixel_fraction", "artefact_fraction", "touched_by_artefact",
                 "spike_fraction")


@dataclass
class CellTable:
    """One row per cell of one image (rows ordered by cell id).

    Attributes
    ----------
    image : str
    cell_id : ndarray of shape (N,), int64
        The mask's labels.
    area : ndarray of shape (N,), int64
        Pixels.
    centroid_px : ndarray of shape (N, 2), float64
        (y, x) in pixels.
    pixel_size_um : float
    markers : list of str
        steinbock names of the model's channels (``Pr141_CD45``).
    intensity : ndarray of shape (N, C), float64
        Mean raw intensity per marker.
    reconstructed : ndarray of shape (N, C), float64, or None
        Mean of the reconstruction (raw units) over the same pixels.
    explained : ndarray of shape (N, C), float64, or None
    latent : ndarray of shape (N, D), float64, or None
    motif_fraction : ndarray of shape (N, k), float64, or None
    error : ndarray of shape (N,), float64, or None
    high_error_fraction, hot_pixel_fraction, artefact_fraction, spike_fraction : ndarray of shape (N,), or None
        See the module's definitions.
    uns : dict
        Provenance: model file hash, normalization, motif count, error unit, stride.
    """

    image: str
    cell_id: np.ndarray
    area: np.ndarray
    centroid_px: np.ndarray
    pixel_size_um: float
    markers: list[str]
    intensity: np.ndarray
    reconstructed: np.ndarray | None = None
    explained: np.ndarray | None = None
    latent: np.ndarray | None = None
    motif_fraction: np.ndarray | None = None
    error: np.ndarray | None = None
    high_error_fraction: np.ndarray | None = None
    hot_pixel_fraction: np.ndarray | None = None
    artefact_fraction: np.ndarray | None = None
    spike_fraction: np.ndarray | None = None
    uns: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.cell_id.size)

    @property
    def centroid_um(self) -> np.ndarray:
        """(y, x) in µm, shape (N, 2)."""
        return self.centroid_px * float(self.pixel_size_um)

    @property
    def touched_by_artefact(self) -> np.ndarray:
        """Whether any pixel of the cell is in a listed region of high error or a hot pixel (bool, (N,))."""
        if self.artefact_fraction is None:
            return np.zeros(len(self), bool)
        return self.artefact_fraction > 0

    def obs_columns(self) -> dict[str, np.ndarray]:
        """The per-cell scalars of :data:`FIXED_COLUMNS` (NaN where not measured)."""
        n = len(self)

        def col(values):
            return np.full(n, np.nan) if values is None else values

        return {"image": np.full(n, self.image, dtype=object), "cell_id": self.cell_id, "area": self.area,
                "centroid_y_px": self.centroid_px[:, 0], "centroid_x_px": self.centroid_px[:, 1],
                "centroid_y_um": self.centroid_um[:, 0], "centroid_x_um": self.centroid_um[:, 1],
                "error": col(self.error), "high_error_fraction": col(self.high_error_fraction),
                "hot_pixel_fraction": col(self.hot_pixel_fraction),
                "artefact_fraction": col(self.artefact_fraction), "touched_by_artefact": self.touched_by_artefact,
                "spike_fraction": col(self.spike_fraction)}

    def columns(self) -> list[str]:
        """CSV header: :data:`FIXED_COLUMNS`, intensities (named by marker, as steinbock's
        ``intensities``), ``explained_<marker>``, ``latent_<i>``, ``motif_<j>_fraction``."""
        cols = list(FIXED_COLUMNS) + list(self.markers)
        if self.explained is not None:
            cols += [f"explained_{m}" for m in self.markers]
        if self.latent is not None:
            cols += [f"latent_{i}" for i in range(self.latent.shape[1])]
        if self.motif_fraction is not None:
            cols += [f"motif_{j + 1}_fraction" for j in range(self.motif_fraction.shape[1])]
        return cols

    def rows(self) -> list[dict]:
        """One dict per cell, keys :meth:`columns` (floats; NaN where not measured)."""
        blocks = [np.column_stack([np.asarray(v, dtype=float) for k, v in self.obs_columns().items()
                                   if k != "image"]), self.intensity]
        for extra in (self.explained, self.latent, self.motif_fraction):
            if extra is not None:
                blocks.append(extra)
        values = np.column_stack(blocks).tolist()
        names = self.columns()[1:]
        ints = {"cell_id", "area"}
        out = []
        for row in values:
            d = {"image": self.image}
            for name, v in zip(names, row):
                d[name] = int(v) if name in ints else (bool(v) if name == "touched_by_artefact" else v)
            out.append(d)
        return out

    def to_anndata(self):
        """An ``anndata.AnnData`` laid out as scanpy / squidpy / SpatialData expect.

        ``X`` = mean intensities (float32), ``var_names`` = markers with metal, ``obs`` = the
        per-cell scalars plus ``region`` (the image, categorical) and ``cell_id`` (the mask
        label), ``obsm['spatial']`` = centroid (x, y) in µm, ``obsm['X_vae']`` = mean latent
        vector, ``obsm['motif_fraction']``, ``layers['reconstructed']`` / ``['explained']``,
        ``uns`` = provenance and ``spatialdata_attrs`` (region / region_key / instance_key),
        so SpatialData links the rows to the mask's labels.

        Raises
        ------
        ImportError
            anndata is not installed (``pip install "napari-imc-vae[cells]"``).
        """
        try:
            import anndata as ad
            import pandas as pd
        except ImportError as e:
            raise ImportError('writing .h5ad needs anndata: pip install "napari-imc-vae[cells]"') from e
        obs = pd.DataFrame(self.obs_columns())
        obs.insert(0, "region", pd.Categorical([self.image] * len(self)))
        obs["image"] = obs["image"].astype(str)
        obs.index = [f"{self.image}_{int(i)}" for i in self.cell_id]
        var = pd.DataFrame(index=pd.Index(list(self.markers), dtype=str))
        var["metal"] = [m.split("_", 1)[0] for m in self.markers]
        var["target"] = [m.split("_", 1)[1] if "_" in m else m for m in self.markers]
        obsm = {"spatial": self.centroid_um[:, ::-1].copy()}
        if self.latent is not None:
            obsm["X_vae"] = self.latent.astype(np.float32)
        if self.motif_fraction is not None:
            obsm["motif_fraction"] = self.motif_fraction.astype(np.float32)
        layers = {name: values.astype(np.float32) for name, values in
                  (("reconstructed", self.reconstructed), ("explained", self.explained)) if values is not None}
        uns = {**_h5ad_safe(self.uns), "spatialdata_attrs": {"region": self.image, "region_key": "region",
                                                             "instance_key": "cell_id"}}
        return ad.AnnData(X=self.intensity.astype(np.float32), obs=obs, var=var, obsm=obsm, layers=layers, uns=uns)


def _h5ad_safe(uns: dict) -> dict:
    """Scalars and strings as they are; anything nested (normalization) as a JSON string,
    since h5ad cannot store None."""
    return {k: v if isinstance(v, (str, int, float, bool)) else json.dumps(v) for k, v in uns.items()
            if v is not None}


def _mean_per_label(index: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Mean of ``values`` per label, non-finite values left out (NaN where none is left)."""
    v = values.ravel()
    finite = np.isfinite(v)
    if finite.all():
        sums, counts = np.bincount(index, weights=v, minlength=n), np.bincount(index, minlength=n)
    else:
        sums = np.bincount(index, weights=np.where(finite, v, 0.0), minlength=n)
        counts = np.bincount(index, weights=finite, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def measure_cells(labels: np.ndarray, raw: np.ndarray, *, markers: list[str], image_name: str,
                  pixel_size_um: float = 1.0, reconstructed: np.ndarray | None = None,
                  latent: np.ndarray | None = None, stride: int = 1, motifs: np.ndarray | None = None,
                  n_motifs: int = 0, error: np.ndarray | None = None, high_error: np.ndarray | None = None,
                  hot_pixels: np.ndarray | None = None, spikes: np.ndarray | None = None, mask_name: str = "mask",
                  uns: dict | None = None) -> CellTable:
    """The per-cell table of one image (see the module's definitions).

    Parameters
    ----------
    labels : ndarray of shape (Y, X), integer
        0 = background; any positive labels (need not be consecutive).
    raw : ndarray of shape (C, Y, X)
        The image's raw channels, in ``markers`` order.
    markers : list of str
    image_name : str
    pixel_size_um : float
    reconstructed : ndarray of shape (C, Y, X), optional
        Reconstruction in raw units: gives ``reconstructed`` and ``explained``.
    latent : ndarray of shape (D, ny, nx), optional
        On the stride grid.
    stride : int
    motifs : ndarray of shape (ny, nx), int, optional
        Motif labels 1 … ``n_motifs`` on the stride grid.
    n_motifs : int
    error : ndarray of shape (Y, X), optional
        Per-pixel calibrated error.
    high_error, hot_pixels, spikes : ndarray of shape (Y, X), optional
        Truthy where a pixel is in a listed region of high error / was replaced by the hot-pixel
        filter / is a listed isolated spike.
    mask_name : str
        For messages.
    uns : dict, optional

    Raises
    ------
    MaskError
        ``labels`` is not an integer label image of the image's height and width.
    ValueError
        ``markers`` does not name every channel of ``raw``.
    """
    labels = as_labels(labels, mask_name)
    raw = np.asarray(raw)
    if raw.ndim != 3 or len(markers) != raw.shape[0]:
        raise ValueError(f"raw must be (C, Y, X) with one marker name per channel, got shape {raw.shape} "
                         f"and {len(markers)} names")
    check_mask_shape(labels.shape, raw.shape[1:], mask_name=mask_name, image_name=image_name)
    h, w = labels.shape
    ids, index = np.unique(labels.ravel(), return_inverse=True)
    index = index.ravel()
    n = ids.size
    keep = ids > 0  # the background (label 0) is measured alongside and dropped
    area = np.bincount(index, minlength=n)
    cy = np.bincount(index, weights=np.repeat(np.arange(h, dtype=np.float64), w), minlength=n) / area
    cx = np.bincount(index, weights=np.tile(np.arange(w, dtype=np.float64), h), minlength=n) / area

    def per_channel(stack: np.ndarray) -> np.ndarray:
        return np.stack([_mean_per_label(index, stack[c], n) for c in range(stack.shape[0])], axis=1)

    def fraction(mask: np.ndarray | None) -> np.ndarray | None:
        return None if mask is None else np.bincount(index, weights=np.asarray(mask, bool).ravel(),
                                                     minlength=n) / area

    intensity = per_channel(raw)
    recon = explained = None
    if reconstructed is not None:
        recon = per_channel(reconstructed)
        with np.errstate(invalid="ignore", divide="ignore"):
            explained = np.clip(1.0 - np.abs(intensity - recon) / intensity, 0.0, 1.0)
        explained[~(intensity > 0)] = np.nan
    mean_latent = motif_frac = None
    if latent is not None or motifs is not None:
        grid_shape = (latent if latent is not None else motifs).shape[-2:]
        nearest = upsample_grid(np.arange(grid_shape[0] * grid_shape[1]).reshape(grid_shape), stride, (h, w))
        nearest = nearest.ravel()
        if latent is not None:
            flat = latent.reshape(latent.shape[0], -1)
            mean_latent = np.stack([_mean_per_label(index, flat[d][nearest], n) for d in range(flat.shape[0])], 1)
        if motifs is not None and n_motifs > 0:
            m = np.asarray(motifs).ravel()[nearest].astype(np.int64)
            counts = np.bincount(index * (n_motifs + 1) + m, minlength=n * (n_motifs + 1)).reshape(n, n_motifs + 1)
            motif_frac = counts[:, 1:] / area[:, None]
    high = None if high_error is None else np.asarray(high_error, bool)
    hot = None if hot_pixels is None else np.asarray(hot_pixels) > 0
    either = high if hot is None else (hot if high is None else high | hot)

    def rows(a):
        return None if a is None else a[keep]

    return CellTable(
        image=image_name, cell_id=ids[keep].astype(np.int64), area=area[keep].astype(np.int64),
        centroid_px=np.column_stack([cy, cx])[keep], pixel_size_um=float(pixel_size_um), markers=list(markers),
        intensity=intensity[keep], reconstructed=rows(recon), explained=rows(explained),
        latent=rows(mean_latent), motif_fraction=rows(motif_frac),
        error=rows(None if error is None else _mean_per_label(index, np.asarray(error, np.float64), n)),
        high_error_fraction=rows(fraction(high)), hot_pixel_fraction=rows(fraction(hot)),
        artefact_fraction=rows(fraction(either)), spike_fraction=rows(fraction(spikes)), uns=dict(uns or {}),
    )


def cells_from_application(app, labels: np.ndarray, *, mask_name: str = "mask") -> CellTable:
    """:func:`measure_cells` on what :func:`~napari_imc_vae.engine.apply.use_case.apply_to_image` gave.

    Parameters
    ----------
    app : ModelApplication
    labels : ndarray of shape (Y, X), integer
        The image's segmentation (0 = background).
    mask_name : str
        Where the mask came from (file or layer name), for messages.
    """
    rec = app.reconstruction
    image = app.image
    raw = image.data[np.asarray(app.channel_index)] if list(app.channel_index) != list(range(image.shape[0])) \
        else image.data
    high = spikes = None
    if app.region_map is not None:  # the regions reconstruct lists, not every pixel above the threshold
        high, spikes = listed_pixels(app.region_map, app.region_threshold, app.regions, app.spikes or [])
    k = app.motif_model.k if app.motif_model is not None else 0
    uns = {"image": image.name, "source": str(image.source), "mask": mask_name, "model_sha256": app.provenance.get("model_sha256"),
           "model_file": app.provenance.get("model_file"), "normalization": app.provenance.get("normalization"),
           "n_motifs": int(k), "motif_source": app.motif_source, "stride": int(rec.stride),
           "pixel_size_um": float(image.pixel_size_um), "error_unit": _error_unit_name(),
           "region_threshold": float(app.region_threshold) if np.isfinite(app.region_threshold) else None}
    return measure_cells(labels, raw, markers=list(app.channel_names), image_name=image.name,
                         pixel_size_um=float(image.pixel_size_um), reconstructed=rec.raw, latent=rec.latent,
                         stride=rec.stride, motifs=app.motifs, n_motifs=k, error=rec.error, high_error=high,
                         hot_pixels=rec.hot_pixels, spikes=spikes, mask_name=mask_name, uns=uns)


def _error_unit_name() -> str:
    try:  # engine.apply.error_unit is the one home of the unit's name
        from napari_imc_vae.engine.apply.error_unit import ERROR_UNIT_NAME
    except ImportError:
        return "per-pixel error of reconstruction.error"
    return ERROR_UNIT_NAME
