"""The work behind the "Reconstruct" widget, as plain functions (numpy + engine, no Qt).

:func:`run_reconstruction` applies a model to a whole image and clusters its latent map
into "tissue motifs" with :func:`kmeans`; :func:`reconstruction_layers` turns the result
into napari layer data tuples that sit exactly on the raw layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from napari_imc_vae._napari.layer_data import channel_metadata, contrast_limits
from napari_imc_vae.engine.checkpoint import TrainedModel
from napari_imc_vae.io import ImcImage

__all__ = ["RECON", "ERROR", "LATENT", "MOTIFS", "DERIVED_KINDS", "ReconstructResult", "kmeans",
           "upsample_grid", "provenance", "run_reconstruction", "reconstruction_layers",
           "reconstruct_updates"]

RECON, ERROR, LATENT, MOTIFS = "recon", "error", "latent", "motifs"
DERIVED_KINDS = (RECON, ERROR, LATENT, MOTIFS)
ERROR_OPACITY = 0.6
#: k-means is fitted on at most this many latent vectors, then assigns all of them.
KMEANS_FIT_POINTS = 50_000


def kmeans(points: np.ndarray, k: int, *, seed: int = 0, iters: int = 50,
           max_fit: int = KMEANS_FIT_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """k-means with k-means++ seeding (Lloyd iterations), numpy only.

    Parameters
    ----------
    points : ndarray of shape (N, D)
        Non-finite values are treated as 0.
    k : int
        Clusters; at most N (fewer distinct points give empty clusters no label).
    seed : int
    iters : int
        Maximum Lloyd iterations (stops earlier when assignments stop changing).
    max_fit : int
        Fit on an evenly spaced subset of this size, then assign every point.

    Returns
    -------
    labels : ndarray of shape (N,), int32
        Cluster of each point, 0 … k-1, ordered by cluster size (0 = largest).
    centers : ndarray of shape (k, D), float64

    Raises
    ------
    ValueError
        For ``k < 1`` or ``points`` that are not a non-empty (N, D) array.
    """
    x = np.nan_to_num(np.asarray(points, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"points must have shape (N, D) with N >= 1, got {x.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    k = int(min(k, len(x)))
    rng = np.random.default_rng(seed)
    fit = x if len(x) <= max_fit else x[np.linspace(0, len(x) - 1, max_fit).astype(int)]
    centers = np.empty((k, x.shape[1]))
    centers[0] = fit[rng.integers(len(fit))]
    d2 = ((fit - centers[0]) ** 2).sum(1)
    for j in range(1, k):  # k-means++: far points are likelier seeds
        total = d2.sum()
        idx = rng.choice(len(fit), p=d2 / total) if total > 0 else rng.integers(len(fit))
        centers[j] = fit[idx]
        d2 = np.minimum(d2, ((fit - centers[j]) ** 2).sum(1))
    labels = None
    for _ in range(iters):
        new = _assign(fit, centers)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = fit[labels == j]
            if len(members):
                centers[j] = members.mean(0)
    labels = _assign(x, centers)
    order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
    rank = np.empty(k, dtype=np.int32)
    rank[order] = np.arange(k, dtype=np.int32)
    return rank[labels], centers[order]


def _assign(x: np.ndarray, centers: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.empty(len(x), dtype=np.int32)
    c2 = (centers**2).sum(1)
    for a in range(0, len(x), chunk):  # ‖x−c‖² = ‖x‖² − 2x·c + ‖c‖²; ‖x‖² does not change argmin
        out[a : a + chunk] = np.argmin(c2[None] - 2.0 * x[a : a + chunk] @ centers.T, axis=1)
    return out


def upsample_grid(grid: np.ndarray, stride: int, shape: tuple[int, int]) -> np.ndarray:
    """Values on the stride grid → image pixels: pixel (y, x) takes grid cell (y/s, x/s) rounded.

    Grid cell ``(i, j)`` is the tile centred on pixel ``(i*stride, j*stride)``
    (see :class:`~napari_imc_vae.engine.inference.Reconstruction`).
    """
    ny, nx = grid.shape[-2:]
    iy = np.minimum((np.arange(shape[0]) + stride // 2) // stride, ny - 1)
    ix = np.minimum((np.arange(shape[1]) + stride // 2) // stride, nx - 1)
    return grid[..., iy[:, None], ix[None, :]]


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
    channel_error : ndarray of shape (M, Y, X)
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
        ``"error"`` and ``"latent"`` always, ``"channel_error"`` (one per channel) when asked.
    """

    image: ImcImage
    raw: np.ndarray
    error: np.ndarray
    channel_error: np.ndarray
    latent: np.ndarray
    motifs: np.ndarray
    stride: int
    patch_size: int
    k: int
    provenance: dict
    channel_index: list[int]
    ignored_channels: list[str]
    display_limits: dict = field(default_factory=dict)


def provenance(trained: TrainedModel, stride: int) -> dict:
    """What made a reconstruction: model file hash (or "unsaved"), normalization, step, stride."""
    return {
        "model_sha256": trained.file_sha256 or "unsaved",
        "model_file": trained.source_file,
        "training_step": int(trained.step),
        "normalization": trained.normalizer.to_dict(),
        "model_config": asdict(trained.model.config),
        "stride": int(stride),
    }


def run_reconstruction(trained: TrainedModel, image: ImcImage, *, k: int = 6,
                       stride: int | None = None, seed: int = 0,
                       on_progress: Callable[[tuple[int, int]], None] | None = None,
                       channel_error_limits: bool = False) -> ReconstructResult:
    """Reconstruct ``image`` with ``trained`` and find tissue motifs in its latent map.

    Parameters
    ----------
    trained : TrainedModel
    image : ImcImage
        Raw image; its channels are matched to the model's by metal, then name. Channels
        the model does not know are not reconstructed (``ignored_channels`` names them).
    k : int
        Number of motifs (k-means clusters of the latent vectors).
    stride : int, optional
        Tile step; default half the patch.
    seed : int
        For k-means seeding.
    on_progress : callable, optional
        Called with ``(done_tiles, total_tiles)``.
    channel_error_limits : bool
        Also compute the per-channel error layers' contrast limits (when they will be shown).

    Raises
    ------
    ChannelMismatchError
        The image lacks channels of the model's panel (names the missing and extra channels).
    """
    from napari_imc_vae.engine.workflow import apply_model

    match = trained.match_channels(image)
    cb = None if on_progress is None else (lambda done, total: on_progress((done, total)))
    rec = apply_model(trained, image, stride=stride, on_progress=cb)
    # model channel j is image channel match.index[j]; the image may have more channels, so
    # sort the model's channels into the image's order rather than invert a permutation
    by_image = np.argsort(match.index, kind="stable")
    d, ny, nx = rec.latent.shape
    labels, _ = kmeans(rec.latent.reshape(d, -1).T, k, seed=seed)
    motifs = upsample_grid(labels.reshape(ny, nx) + 1, rec.stride, image.shape[1:])
    identity = np.array_equal(by_image, np.arange(len(by_image)))  # the usual case: no copies
    raw = rec.raw if identity else rec.raw[by_image]
    channel_error = rec.channel_error if identity else rec.channel_error[by_image]
    limits = {"error": contrast_limits(rec.error), "latent": contrast_limits(rec.latent.reshape(1, -1))}
    if channel_error_limits:
        limits["channel_error"] = [contrast_limits(c) for c in channel_error]
    return ReconstructResult(
        image=image, raw=raw, error=rec.error, channel_error=channel_error,
        latent=rec.latent, motifs=motifs.astype(np.int32), stride=rec.stride,
        patch_size=rec.patch_size, k=int(labels.max()) + 1, provenance=provenance(trained, rec.stride),
        channel_index=[int(match.index[j]) for j in by_image], ignored_channels=list(match.ignored),
        display_limits=limits,
    )


def reconstruction_layers(result: ReconstructResult, *, base_names: list[str], image_name: str,
                          colormaps: list, contrast: list, visible: list[bool],
                          scale: tuple[float, float], translate: tuple[float, float],
                          channel_errors: bool = False) -> list[tuple]:
    """napari layer data tuples for a reconstruction, placed exactly on the raw layers.

    Parameters
    ----------
    result : ReconstructResult
    base_names : list of str
        Per image channel, the raw layer's name; ``"<name> [recon]"`` / ``"<name> [error]"``.
    image_name : str
        Names the whole-image layers ``<image>_error``, ``<image>_latent``, ``<image>_motifs``.
    colormaps, contrast, visible : list
        Per image channel, the raw layer's display settings (reused by the recon layers).
    scale, translate : tuple of float
        The raw layers' (Y, X) scale and translate.
    channel_errors : bool
        Also one (hidden) error layer per channel.

    Returns
    -------
    list of tuple
        ``(data, kwargs, layer_type)``: recon channels, per-channel errors, latent map,
        motifs, and the per-pixel error last (on top). There is one recon (and error) layer
        per reconstructed channel (``result.channel_index``), named and styled after the
        raw layer of that channel; the image's channels the model does not know get none.
    """
    im, prov = result.image, result.provenance
    scale, translate = tuple(map(float, scale)), tuple(map(float, translate))

    def meta(kind: str, index: int = 0, **extra) -> dict:
        m = channel_metadata(im, index, kind=kind, provenance=prov, source_image=image_name, **extra)
        m["imc"]["image"] = f"{image_name}_{kind}"
        return m

    def whole(kind: str, **extra) -> dict:
        m = meta(kind, **extra)
        for key in ("channel_index", "channel_name", "metal", "label"):
            m["imc"].pop(key)
        return m

    common = {"scale": scale, "translate": translate}
    limits = result.display_limits
    channel_limits = limits.get("channel_error") or [None] * len(result.channel_index)
    out = []
    for j, i in enumerate(result.channel_index):  # recon channel j is image channel i
        out.append((result.raw[j], {
            **common, "name": f"{base_names[i]} [{RECON}]", "colormap": colormaps[i],
            "contrast_limits": tuple(contrast[i]), "blending": "additive", "visible": visible[i],
            "metadata": meta(RECON, i, units="raw")}, "image"))
    if channel_errors:
        for j, i in enumerate(result.channel_index):
            out.append((result.channel_error[j], {
                **common, "name": f"{base_names[i]} [{ERROR}]", "colormap": "inferno",
                "contrast_limits": channel_limits[j] or contrast_limits(result.channel_error[j]),
                "blending": "additive",
                "opacity": ERROR_OPACITY, "visible": False,
                "metadata": meta(ERROR, i, units="squared error, normalized units")}, "image"))
    s = float(result.stride)
    lat = result.latent
    lo, hi = limits.get("latent") or contrast_limits(lat.reshape(1, -1))
    out.append((lat, {
        "name": f"{image_name}_{LATENT}", "scale": (1.0, s * scale[0], s * scale[1]),
        "translate": (0.0, *translate), "colormap": "viridis", "contrast_limits": (lo, hi),
        "blending": "translucent", "visible": False,
        "metadata": whole(LATENT)}, "image"))
    out.append((result.motifs, {
        **common, "name": f"{image_name}_{MOTIFS}", "opacity": 0.5, "visible": False,
        "metadata": whole(MOTIFS, k=result.k)}, "labels"))
    out.append((result.error, {
        **common, "name": f"{image_name}_{ERROR}", "colormap": "magma",
        "contrast_limits": limits.get("error") or contrast_limits(result.error), "blending": "additive",
        "opacity": ERROR_OPACITY,
        "metadata": whole(ERROR, units="mean squared error, normalized units")}, "image"))
    return out


def reconstruct_updates(trained: TrainedModel, image: ImcImage, *, k: int = 6,
                        stride: int | None = None, channel_error_limits: bool = False):
    """Worker body: yield ``(done_tiles, total_tiles)`` now and then; return the result."""
    from napari_imc_vae._napari.train_task import stream_calls

    def work(callback):
        return run_reconstruction(trained, image, k=k, stride=stride, on_progress=callback,
                                  channel_error_limits=channel_error_limits)

    return (yield from stream_calls(work, wrap=lambda batch: batch[-1]))
