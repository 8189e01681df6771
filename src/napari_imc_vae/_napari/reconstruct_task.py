"""The work behind the "Reconstruct" widget, as plain functions (numpy + engine, no Qt).

:func:`run_reconstruction` is a thin caller of :func:`napari_imc_vae.engine.apply.use_case.apply_to_image`
(the same function, with the same settings, as ``napari-imc-vae reconstruct``, so the widget
and the CLI give the same arrays, motifs and quality figures); :mod:`.result_layers` turns
the result into napari layers and the rows of the comparison view. Everything that needs a
pass over the pixels (contrast limits, which markers the model explains best and worst)
happens here, in the worker, so that adding the layers on the GUI thread at the end is cheap.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from napari_imc_vae._napari.latent_view import latent_pca_rgb
from napari_imc_vae._napari.layer_data import contrast_limits
from napari_imc_vae.engine.apply.use_case import ApplySettings, apply_to_image, provenance
from napari_imc_vae.engine.cells.table import cells_from_application
from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
from napari_imc_vae.engine.device import release_cuda_memory
from napari_imc_vae.engine.apply.error_unit import ERROR_UNIT_NAME, REGION_THRESHOLD
from napari_imc_vae.engine.apply.motifs import DEFAULT_MOTIFS, upsample_grid
from napari_imc_vae.io import ImcImage

__all__ = ["RECON", "ERROR", "MISSED", "LATENT", "MOTIFS", "HOT_PIXELS", "REGIONS", "DERIVED_KINDS",
           "WHOLE_KINDS", "MISSED_LIMIT", "ReconstructResult", "upsample_grid", "provenance", "run_reconstruction",
           "default_markers", "reconstruct_updates"]

RECON, ERROR, MISSED, LATENT, MOTIFS, HOT_PIXELS, REGIONS = (
    "recon", "error", "missed", "latent", "motifs", "hotpixels", "regions")
DERIVED_KINDS = (RECON, ERROR, MISSED, LATENT, MOTIFS, HOT_PIXELS, REGIONS)
#: One layer per image (not per marker), named by :func:`.result_layers.whole_title` and the image's tag.
WHOLE_KINDS = (ERROR, LATENT, MOTIFS, HOT_PIXELS, REGIONS)
#: The residual panels and layers show -MISSED_LIMIT … +MISSED_LIMIT noise SDs, the same for
#: every marker: full colour is what the regions call unlikely by counting noise alone.
MISSED_LIMIT = float(REGION_THRESHOLD)


@dataclass
class ReconstructResult:
    """A whole-image reconstruction of the model's channels, in the image's channel order.

    Attributes
    ----------
    image : ImcImage
        The input (a copy of the layers' data).
    raw : ndarray of shape (M, Y, X)
        Reconstruction in raw units of the M channels the model knows; channel ``j`` is
        image channel ``channel_index[j]``.
    error : ndarray of shape (Y, X)
        Per-pixel mean squared error in normalized units.
    channel_error : ndarray of shape (M, Y, X) or None
    residual : ndarray of shape (M, Y, X)
        Signed residual in ``error_unit`` (positive: more counts measured than predicted).
    error_unit : str
        Short name of the unit of ``error`` and ``residual`` (``"noise SD"``).
    markers : list of MarkerSummary
        Per reconstructed channel (same order as ``raw``): how much of its signal the model
        explains, in words; empty when the engine gave none.
    ranking : list of int
        Positions ``j`` of the reconstructed channels, best explained first (see
        :func:`default_markers`).
    latent : ndarray of shape (D, ny, nx)
        Latent map on the stride grid.
    motifs : ndarray of shape (Y, X), int32
        k-means cluster of the latent map, 1 … k (0 is never used), at image resolution.
    stride, patch_size, k : int
    provenance : dict
    channel_index : list of int
        Increasing indices of the image's channels that were reconstructed.
    ignored_channels : list of str
        Names of the image's channels the model does not know (not reconstructed).
    display_limits : dict
        Contrast limits computed in the worker, so the GUI thread only adds layers:
        ``"error"`` and ``"latent"`` always, ``"raw"`` (one per reconstructed channel, of the
        image) when asked.
    report : QualityReport or None
        The model on this image against the baseline stored in the model file.
    report_text : str
        The report in full (or why there is none), for the widget's report box.
    quality : dict
        JSON-safe report, as the CLI writes it.
    motif_rows : list of dict
        Per motif: pixels, fraction, mean raw intensity per channel (the CLI's CSV).
    hot_pixels : ndarray of shape (Y, X), uint8, or None
        In how many channels the hot-pixel filter replaced each pixel.
    regions : list of dict
        Regions of high error, ranked (the CLI's ``_regions.csv``).
    latent_rgb : (ndarray, ndarray) or None
        :func:`~napari_imc_vae._napari.latent_view.latent_pca_rgb` of the latent map, computed
        in the worker: the latent layer shows its first three principal components as RGB.
    """

    image: ImcImage
    raw: np.ndarray
    error: np.ndarray
    channel_error: np.ndarray | None
    latent: np.ndarray
    motifs: np.ndarray
    stride: int
    patch_size: int
    k: int
    provenance: dict
    channel_index: list[int]
    ignored_channels: list[str]
    display_limits: dict = field(default_factory=dict)
    report: object | None = None
    report_text: str = ""
    quality: dict = field(default_factory=dict)
    motif_rows: list = field(default_factory=list)
    hot_pixels: np.ndarray | None = None
    regions: list = field(default_factory=list)
    latent_rgb: tuple | None = None
    residual: np.ndarray | None = None
    error_unit: str = ERROR_UNIT_NAME
    markers: list = field(default_factory=list)
    ranking: list = field(default_factory=list)
    cells: object | None = None  # CellTable of the Labels layer given, see .cells_layer


def run_reconstruction(trained: TrainedModel, image: ImcImage, *, k: int = DEFAULT_MOTIFS,
                       stride: int | None = None, seed: int = 0,
                       on_progress: Callable[[tuple[int, int]], None] | None = None,
                       cancel: Callable[[], bool] | None = None,
                       raw_limits: bool = False, labels: tuple | None = None) -> ReconstructResult:
    """Apply ``trained`` to ``image`` (:func:`~napari_imc_vae.engine.apply.use_case.apply_to_image`).

    Parameters
    ----------
    trained : TrainedModel
    image : ImcImage
        Raw image; its channels are matched to the model's by metal, then name. Channels
        the model does not know are not reconstructed (``ignored_channels`` names them).
    k : int
        Number of tissue motifs (k-means clusters of the latent vectors).
    stride : int, optional
        Tile step; default half the patch.
    seed : int
        Of the motif fit.
    on_progress : callable, optional
        Called with ``(done_tiles, total_tiles)``.
    cancel : callable, optional
        Polled between batches; True stops with ``ApplyCancelled``.
    raw_limits : bool
        Also compute contrast limits of the image's reconstructed channels (when there are no
        per-channel raw layers to take them from: a multichannel layer).
    labels : (ndarray of shape (Y, X), str), optional
        A segmentation and its name: ``cells`` gets its per-cell table.

    Raises
    ------
    ChannelMismatchError
        The image lacks channels of the model's panel (names the missing and extra channels).
    ImageContentError
        The model's channels hold no finite pixel or a single value.
    """
    def progress(stage: str, done: int, total: int) -> None:
        if on_progress is not None and stage == "reconstruct":
            on_progress((done, total))

    try:  # on the best device (a model trained on the GPU comes back on the CPU), then free it
        app = apply_to_image(trained, image, ApplySettings(stride=stride, motifs=k, seed=seed, device="auto"),
                             on_progress=progress, cancel=cancel)
    finally:
        release_cuda_memory(trained.model)
    rec = app.reconstruction
    # model channel j is image channel app.channel_index[j]; the image may have more channels,
    # so sort the model's channels into the image's order rather than invert a permutation
    by_image = np.argsort(app.channel_index, kind="stable")
    identity = np.array_equal(by_image, np.arange(len(by_image)))  # the usual case: no copies
    def image_order(a):
        return a if a is None or identity else a[by_image]

    raw, channel_error = image_order(rec.raw), image_order(rec.channel_error)
    residual = image_order(rec.residual)
    markers = [app.markers[j] for j in by_image] if app.markers else []
    motifs = (np.zeros(image.shape[1:], np.int32) if app.motifs is None
              else upsample_grid(app.motifs, rec.stride, image.shape[1:]).astype(np.int32))
    limits = {"error": (0.0, MISSED_LIMIT), "latent": contrast_limits(rec.latent.reshape(1, -1))}
    channel_index = [int(app.channel_index[j]) for j in by_image]
    if raw_limits:
        limits["raw"] = [contrast_limits(image.data[i]) for i in channel_index]
    return ReconstructResult(
        image=image, raw=raw, error=rec.error, channel_error=channel_error, residual=residual,
        markers=markers, ranking=_ranking(markers, residual),
        latent=rec.latent, motifs=motifs, stride=rec.stride, patch_size=rec.patch_size,
        k=0 if app.motif_model is None else app.motif_model.k, provenance=app.provenance,
        channel_index=channel_index, ignored_channels=app.ignored_channels,
        display_limits=limits, report=app.report, report_text=app.report_text(), quality=app.quality,
        motif_rows=app.motif_rows, hot_pixels=rec.hot_pixels, regions=app.regions,
        latent_rgb=latent_pca_rgb(rec.latent),
        cells=None if labels is None else cells_from_application(app, labels[0], mask_name=labels[1]),
    )


def _ranking(markers: list, residual: np.ndarray | None) -> list[int]:
    """Reconstructed channels, best explained first.

    By the engine's share of each marker's structure the model explains (markers with no
    real signal last); without it, by the mean squared residual (smallest first).
    """
    if markers:
        def key(j: int) -> tuple:
            m = markers[j]
            return (not m.has_signal, -(m.explained if m.explained is not None else -1.0), j)
        return sorted(range(len(markers)), key=key)
    if residual is None:
        return []
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN channel ranks last
        score = np.array([np.nanmean(np.square(r)) for r in residual])
    return [int(j) for j in np.argsort(np.where(np.isfinite(score), score, np.inf), kind="stable")]


def default_markers(result: ReconstructResult) -> list[int]:
    """The markers the comparison view shows first: the best and the worst explained.

    Returns
    -------
    list of int
        Positions ``j`` in ``result.raw``; the worst is the least explained marker that has
        real signal (an empty channel explains nothing and says little about the model).
    """
    ranking = result.ranking or list(range(len(result.channel_index)))
    if not ranking:
        return []
    with_signal = [j for j in ranking if not result.markers or result.markers[j].has_signal]
    worst = with_signal[-1] if with_signal else ranking[-1]
    return [ranking[0]] if worst == ranking[0] else [ranking[0], worst]


def reconstruct_updates(trained: TrainedModel, image: ImcImage, *, k: int = DEFAULT_MOTIFS,
                        stride: int | None = None, raw_limits: bool = False, labels: tuple | None = None):
    """Worker body: yield ``(done_tiles, total_tiles)`` now and then; return the result.

    Closing the generator (the worker quit, the widget closed) cancels the work at the next batch.
    """
    import threading

    from napari_imc_vae._napari.train_task import stream_calls

    cancelled = threading.Event()

    def work(callback):
        return run_reconstruction(trained, image, k=k, stride=stride, on_progress=callback,
                                  cancel=cancelled.is_set, raw_limits=raw_limits, labels=labels)

    return (yield from stream_calls(work, wrap=lambda batch: batch[-1], on_close=cancelled.set))
