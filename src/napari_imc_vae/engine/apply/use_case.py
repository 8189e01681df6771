"""Applying a trained model to an image: the one home of the CLI's ``reconstruct`` / ``quality``
and of the Reconstruct widget, so both give the same arrays and figures.

:func:`apply_to_image` reconstructs the whole image from overlapping tiles (raw and
normalized units, per-pixel and per-channel error, latent map), measures the quality
report on a grid of its patches against the baseline stored in the model file (PCA-k and
the mean patch fitted on the model's own training patches: a fair yardstick on an image
the model has not seen), and clusters the latent map into tissue motifs; what it returns is
:class:`~napari_imc_vae.engine.apply.application.ModelApplication`. :func:`assess_image` measures
the quality report alone. Writing the results is
:func:`napari_imc_vae.io.outputs.write_model_outputs`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from napari_imc_vae.engine.apply.application import (
    ModelApplication,
    error_summary,
    provenance,
    scale_channel_error,
    steinbock_names,
)
from napari_imc_vae.engine.apply.inference import OUTPUT_NAMES, reconstruct_image
from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
from napari_imc_vae.engine.defaults import MAX_QUALITY_PATCHES, PERM_PATCHES, TILE_BATCH  # the caps, with their reasons
from napari_imc_vae.engine.apply.motifs import DEFAULT_MOTIFS, MotifModel, motif_table
from napari_imc_vae.engine.data.content import check_image_content
from napari_imc_vae.io import ImcImage

__all__ = ["ApplySettings", "ApplyCancelled", "check_cancel", "ModelApplication", "MAX_QUALITY_PATCHES",
           "apply_to_image", "assess_image", "motifs_for", "steinbock_names", "provenance"]


class ApplyCancelled(Exception):
    """The caller's ``cancel()`` said stop; nothing was returned."""


def check_cancel(cancel: Callable[[], bool] | None, message: str) -> None:
    """Raise :class:`ApplyCancelled` with ``message`` when ``cancel`` is given and returns True."""
    if cancel is not None and cancel():
        raise ApplyCancelled(message)


@dataclass(frozen=True)
class ApplySettings:
    """How to apply a model; the CLI's flags and the Reconstruct widget's controls.

    Attributes
    ----------
    stride : int, optional
        Tile step, 1 … patch; default half the patch.
    batch_size : int
        Tiles per model call.
    device : str, optional
        ``auto``, ``cpu``, ``cuda[:K]``, ``mps``; default where the model is.
    motifs : int
        Tissue motifs (k-means clusters of latent vectors); 0 for none. When the model file
        holds motifs of this number (fitted on its training images) they are used unchanged;
        another number is fitted on this image alone (see :func:`motifs_for`).
    seed : int
        Of the motif fit.
    regions : bool
        Find the regions of high error (needs ``error`` among ``outputs``, and ``residual``
        to name the channels that carry them).
    quality : bool
        Measure the quality report.
    max_quality_patches : int
    outputs : tuple of str
        Reconstruction outputs to compute (see
        :func:`~napari_imc_vae.engine.apply.inference.reconstruct_image`); the CLI leaves out the
        normalized reconstruction and error, which it does not write.
    precision : {"auto", "fp32", "bf16"}
        Of the model's forward pass; ``auto`` is bf16 where the hardware runs it natively
        (see :func:`~napari_imc_vae.engine.apply.inference.reconstruct_image`).
    """

    stride: int | None = None
    batch_size: int = TILE_BATCH
    device: str | None = None
    motifs: int = DEFAULT_MOTIFS
    seed: int = 0
    regions: bool = True
    quality: bool = True
    max_quality_patches: int = MAX_QUALITY_PATCHES
    outputs: tuple[str, ...] = OUTPUT_NAMES
    precision: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.motifs, bool) or not isinstance(self.motifs, int) or self.motifs < 0:
            raise ValueError(f"motifs must be an integer >= 0, got {self.motifs!r}")


def apply_to_image(trained: TrainedModel, image: ImcImage, settings: ApplySettings | None = None, *,
                   on_progress: Callable[[str, int, int], None] | None = None,
                   cancel: Callable[[], bool] | None = None, out=None) -> ModelApplication:
    """Reconstruct ``image`` with ``trained``, measure its quality and find tissue motifs.

    Parameters
    ----------
    trained : TrainedModel
    image : ImcImage
        Raw image; channels matched to the model's by metal, else name; channels the model
        does not know are ignored (``ignored_channels``).
    settings : ApplySettings, optional
    on_progress : callable, optional
        ``on_progress(stage, done, total)``; stages ``"reconstruct"`` (tiles), ``"quality"``,
        ``"motifs"``.
    cancel : callable, optional
        Polled between batches; when it returns True, :class:`ApplyCancelled` is raised.
    out : mapping, optional
        Preallocated outputs (e.g. np.memmaps) for :func:`reconstruct_image`.

    Raises
    ------
    ChannelMismatchError
        The image lacks channels of the model (names the missing and extra ones).
    ImageContentError
        The model's channels of the image hold no finite pixel, or a single value.
    ApplyCancelled
    """
    settings = settings or ApplySettings()
    report_progress = on_progress or (lambda stage, done, total: None)

    cancelled = f"applying the model to {image.name} was cancelled"
    match = trained.match_channels(image)
    data = match.take(image.data)
    check_image_content(image, data)
    grid, reason = _quality_grid(trained, image, settings)

    def tiles(done: int, total: int) -> None:
        check_cancel(cancel, cancelled)
        report_progress("reconstruct", done, total)

    device = None
    if settings.device is not None:
        from napari_imc_vae.engine.device import resolve_device

        device = resolve_device(settings.device)
    capture = None
    if grid is not None:
        from napari_imc_vae.engine.apply.tiling import TileCapture, TileGrid

        cfg = trained.model.config
        tile_grid = TileGrid.create(image.shape[1:], cfg.patch_size, settings.stride)
        capture = TileCapture(grid.origins, cfg.patch_size, tile_grid.stride, tile_grid.n_tiles[1],
                              trained.normalizer.n_channels, cfg.latent_dim)
    rec = reconstruct_image(trained.model, data, trained.normalizer, stride=settings.stride,
                            batch_size=settings.batch_size, device=device, on_progress=tiles, out=out,
                            on_rows=None if grid is None else grid.add, outputs=settings.outputs,
                            on_tiles=None if capture is None else capture.add, precision=settings.precision,
                            rate_factors=trained.rate_factors)
    check_cancel(cancel, cancelled)
    report, quality = None, {"report": None, "reason": reason} if reason else {}
    if grid is not None:
        report_progress("quality", 0, 1)
        report, quality = _assess(trained, image, grid, settings, capture.predictions(), device)
        report_progress("quality", 1, 1)
    quality.update({"model": trained.source_file, "model_sha256": trained.file_sha256, "image": image.source,
                    "acquisition": image.acquisition, "shape": list(image.shape),
                    "latent_stride": int(rec.stride)})
    check_cancel(cancel, cancelled)
    names = steinbock_names(trained)
    scale = scale_channel_error(rec.channel_error)
    regions, threshold, region_map, spikes = [], float("inf"), None, []
    if settings.regions and rec.error is not None:
        from napari_imc_vae.engine.apply.regions import find_regions, find_spikes

        region_map = rec.error
        regions, threshold = find_regions(region_map, rec.residual, names, pixel_size_um=float(image.pixel_size_um))
        spikes = find_spikes(region_map, rec.residual, names, hot_pixels=rec.hot_pixels,
                             pixel_size_um=float(image.pixel_size_um))
    if rec.error is not None:
        quality["error"] = error_summary(rec, names, regions if settings.regions else None,
                                          spikes if settings.regions else None)
    markers = []
    if rec.raw is not None:
        from napari_imc_vae.engine.quality.marker_summary import summarize_markers

        markers = summarize_markers(data, rec.raw, names, labels=list(trained.channel_names),
                                    hot_pixel_threshold=trained.normalizer.params.hot_pixel_threshold)
        quality["markers"] = [m.to_dict() for m in markers]
    motifs, motif_model, rows = None, None, []
    motif_source = None
    if settings.motifs > 0:
        report_progress("motifs", 0, 1)
        motif_model, motif_source = motifs_for(trained, rec.latent, settings)
        motifs = motif_model.assign(rec.latent)
        quality["motifs"] = motif_source
        rows = motif_table(motifs, rec.stride, data, names, motif_model.k)
        report_progress("motifs", 1, 1)
    return ModelApplication(
        image=image, reconstruction=rec, channel_names=names, channel_index=[int(i) for i in match.index],
        ignored_channels=list(match.ignored), motifs=motifs, motif_model=motif_model, motif_rows=rows,
        report=report, quality=quality, provenance=provenance(trained, rec.stride),
        regions=regions, region_threshold=threshold, channel_error_scale=scale, motif_source=motif_source,
        region_map=region_map, markers=markers, spikes=spikes,
    )


def motifs_for(trained: TrainedModel, latent: np.ndarray, settings: ApplySettings) -> tuple[MotifModel, str]:
    """The motifs to label ``latent`` with, and where they come from, in words.

    The model's own motifs (fitted on its training images, stored in the model file) when
    ``settings.motifs`` is their number, so that a motif means the same tissue in every
    image; otherwise ``settings.motifs`` motifs fitted on this latent map alone.
    """
    stored = trained.motif_model
    if stored is not None and stored.k == settings.motifs:
        return stored, f"the model's {stored.k} motifs, fitted on its training images"
    d = latent.shape[0]
    fitted = MotifModel.fit(latent.reshape(d, -1).T, settings.motifs, seed=settings.seed)
    why = "the model file holds none" if stored is None else f"the model's own has {stored.k}"
    return fitted, f"{fitted.k} motifs fitted on this image alone ({why})"


def _autocast(trained: TrainedModel, settings: ApplySettings, device=None):
    """The reconstruction's autocast for the report's own model calls (``device`` already resolved,
    else ``settings.device``, else the model's)."""
    from napari_imc_vae.engine.device import precision_autocast, resolve_device

    if device is None:
        device = resolve_device(settings.device) if settings.device else next(trained.model.parameters()).device
    return precision_autocast(settings.precision, device)


def assess_image(trained: TrainedModel, image: ImcImage, settings: ApplySettings | None = None):
    """The quality report alone (no whole-image reconstruction): the figures of :func:`apply_to_image`.

    Only the rows the grid's patches need are read and normalized.

    Returns
    -------
    report : QualityReport or None
    quality : dict
        As :attr:`ModelApplication.quality`.

    Raises
    ------
    ChannelMismatchError, ImageContentError
        As :func:`apply_to_image`.
    """
    from napari_imc_vae.engine.apply.normalized_rows import normalized_rows

    settings = settings or ApplySettings()
    match = trained.match_channels(image)
    data = match.take(image.data)
    check_image_content(image, data)
    grid, reason = _quality_grid(trained, image, replace(settings, quality=True))
    if grid is None:
        report, quality = None, {"report": None, "reason": reason}
    else:
        grid.read(normalized_rows(data, trained.normalizer))
        report, quality = _assess(trained, image, grid, settings)
    quality.update({"model": trained.source_file, "model_sha256": trained.file_sha256, "image": image.source,
                    "acquisition": image.acquisition, "shape": list(image.shape)})
    return report, quality


def _quality_grid(trained: TrainedModel, image: ImcImage, settings: ApplySettings):
    """The quality patches' grid (fed by the reconstruction's normalized rows), or why none."""
    from napari_imc_vae.engine.quality.evaluate import GridPatches

    if not settings.quality:
        return None, "not asked for"
    p = trained.model.config.patch_size
    _, h, w = image.shape
    if h < p or w < p:
        return None, f"{image.name} is {h}×{w} px, smaller than the model's {p}×{p} patch"
    stride = settings.stride or max(1, p // 2)
    return GridPatches((trained.normalizer.n_channels, h, w), p, stride, cap=settings.max_quality_patches), None


def _assess(trained: TrainedModel, image: ImcImage, grid, settings: ApplySettings, predictions=None,
            device=None):
    """The report on the grid's patches against the stored baseline, and its JSON description."""
    from napari_imc_vae.engine.quality.evaluate import evaluate

    patches, smooth = grid.result()
    meta = {"patch_size": grid.patch, "stride": grid.stride, "n_patches": int(len(patches)),
            "baseline": trained.baseline_source or
            "none stored in this model file (it predates stored baselines): no verdict against PCA; "
            "train again to get one"}
    try:
        with _autocast(trained, settings, device):  # the model's forward as in the reconstruction
            report = evaluate(trained.model, patches, baseline=trained.baseline,
                              baseline_source=trained.baseline_source,
                              batch_size=min(settings.batch_size, 512), smooth_target=smooth,
                              predictions=predictions, perm_patches=PERM_PATCHES)
    except ValueError as e:  # e.g. every patch touches a NaN/Inf pixel
        return None, {**meta, "report": None, "reason": str(e)}
    meta["n_skipped_nonfinite"] = int(getattr(report, "n_skipped_nonfinite", 0) or 0)
    return report, {**meta, "report": report.to_dict()}
