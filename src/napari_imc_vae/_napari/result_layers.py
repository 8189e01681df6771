"""A reconstruction as napari shows it: its layers, and the rows of the comparison view (no Qt).

:func:`reconstruction_layers` turns a :class:`~.reconstruct_task.ReconstructResult` into napari
layer data tuples that sit exactly on the raw layers (the whole-image results, named by
:func:`whole_title`, and on request every marker's ``[model]`` and ``[missed]`` layers);
:func:`comparison_rows` into the rows of the side-by-side comparison view
(:mod:`.comparison_view`). Both reuse the contrast limits the worker computed, so building
them on the GUI thread touches no pixels.
"""

from __future__ import annotations

import numpy as np

from napari_imc_vae._napari.comparison_view import MISSED_COLORMAP, ComparisonRow
from napari_imc_vae._napari.latent_view import latent_rgb_layer
from napari_imc_vae._napari.layer_data import channel_metadata, contrast_limits, layer_units, tagged_name
from napari_imc_vae._napari.reconstruct_task import (
    ERROR,
    HOT_PIXELS,
    LATENT,
    MISSED,
    MISSED_LIMIT,
    MOTIFS,
    RECON,
    REGIONS,
    WHOLE_KINDS,
    ReconstructResult,
)
from napari_imc_vae.engine.apply.error_unit import ERROR_UNIT_NAME

__all__ = ["MARKER_SUFFIX", "ERROR_OPACITY", "whole_title", "reconstruction_layers", "comparison_rows"]

#: Per-marker layers: ``"<raw layer> [model]"``, ``"<raw layer> [missed]"`` (the comparison's words).
MARKER_SUFFIX = {RECON: "model", MISSED: "missed"}
ERROR_OPACITY = 0.6


def comparison_rows(result: ReconstructResult, positions: list[int], *, base_names: list[str],
                    image_name: str, contrast: list, scale: tuple[float, float],
                    translate: tuple[float, float]) -> list[ComparisonRow]:
    """Rows of the comparison view: per picked marker, measured | model | missed.

    Parameters
    ----------
    result : ReconstructResult
    positions : list of int
        Reconstructed channels ``j`` to show (positions in ``result.raw``).
    base_names, contrast : list
        Per image channel, the raw layer's name and contrast limits (the measured and the
        model panel share them).
    image_name : str
    scale, translate : tuple of float
        The raw layers'.
    """
    if result.residual is None:
        raise ValueError("the reconstruction has no residual: it was computed without the 'residual' output")
    rows = []
    for j in positions:
        i = result.channel_index[j]
        info = channel_metadata(result.image, i, kind="compare", provenance=result.provenance,
                                source_image=image_name)["imc"]
        rows.append(ComparisonRow(
            marker=base_names[i], measured=result.image.data[i], model=result.raw[j],
            missed=result.residual[j], contrast=tuple(contrast[i]), missed_limit=MISSED_LIMIT,
            unit=result.error_unit, scale=scale, translate=translate, metadata=info))
    return rows


def whole_title(kind: str, unit: str = ERROR_UNIT_NAME) -> str:
    """Name of a whole-image result layer, what it shows first (napari elides long names' middle)."""
    titles = {ERROR: f"error ({unit})", LATENT: "latent map (RGB)", MOTIFS: "tissue motifs",
              HOT_PIXELS: "hot pixels", REGIONS: "high-error regions"}
    if kind not in titles:
        raise ValueError(f"kind must be one of {', '.join(WHOLE_KINDS)}, got {kind!r}")
    return titles[kind]


def reconstruction_layers(result: ReconstructResult, *, base_names: list[str], image_name: str,
                          colormaps: list, contrast: list, scale: tuple[float, float],
                          translate: tuple[float, float], all_markers: bool = False,
                          image_tag: str = "") -> list[tuple]:
    """napari layer data tuples for a reconstruction, placed exactly on the raw layers, all hidden.

    What the user looks at first is the comparison view (:func:`comparison_rows`); these
    are the whole-image results, and on request every marker's reconstruction and residual.

    Parameters
    ----------
    result : ReconstructResult
    base_names : list of str
        Per image channel, the raw layer's name; ``"<name> [model]"`` / ``"<name> [missed]"``.
    image_name : str
        The image's name, in every layer's ``metadata["imc"]["source_image"]`` (how the widget
        finds a run's layers again, whatever their names).
    colormaps, contrast : list
        Per image channel, the raw layer's display settings (reused by the recon layers).
    scale, translate : tuple of float
        The raw layers' (Y, X) scale and translate.
    all_markers : bool
        Also one recon and one residual layer per reconstructed channel.
    image_tag : str
        Follows the whole-image layers' titles (:func:`whole_title`), e.g. ``"error (noise SD)
        · 003"``, when several images share the viewer (see
        :func:`~napari_imc_vae._napari.layer_data.image_tags`); ``""``: the title alone.

    Returns
    -------
    list of tuple
        ``(data, kwargs, layer_type)``: per marker recon then residual layers (when asked),
        latent map, motifs, hot pixels, regions, and the per-pixel error last. There is one
        recon (and residual) layer per reconstructed channel (``result.channel_index``),
        named after the raw layer of that channel; the image's channels the model does not
        know get none.
    """
    im, prov = result.image, result.provenance
    scale, translate = tuple(map(float, scale)), tuple(map(float, translate))

    def meta(kind: str, index: int = 0, **extra) -> dict:
        m = channel_metadata(im, index, kind=kind, provenance=prov, source_image=image_name, **extra)
        m["imc"]["image"] = f"{image_name}_{kind}"
        return m

    def whole(kind: str, **extra) -> dict:
        m = meta(kind, title=whole_title(kind, result.error_unit), **extra)
        for key in ("channel_index", "channel_name", "metal", "label"):
            m["imc"].pop(key)
        return m

    def name(kind: str) -> str:
        return tagged_name(whole_title(kind, result.error_unit), image_tag)

    common = {"scale": scale, "translate": translate, "visible": False, **layer_units()}
    limits = result.display_limits
    out = []
    if all_markers:
        for j, i in enumerate(result.channel_index):  # recon channel j is image channel i
            out.append((result.raw[j], {
                **common, "name": f"{base_names[i]} [{MARKER_SUFFIX[RECON]}]", "colormap": colormaps[i],
                "contrast_limits": tuple(contrast[i]), "blending": "additive",
                "metadata": meta(RECON, i, units="counts")}, "image"))
        for j, i in enumerate(result.channel_index):
            out.append((result.residual[j], {
                **common, "name": f"{base_names[i]} [{MARKER_SUFFIX[MISSED]}]", "colormap": MISSED_COLORMAP,
                "contrast_limits": (-MISSED_LIMIT, MISSED_LIMIT),
                "metadata": meta(MISSED, i, units=result.error_unit)}, "image"))
    s = float(result.stride)
    lat = result.latent
    lo, hi = limits.get("latent") or contrast_limits(lat.reshape(1, -1))
    latent = (lat, {
        "name": name(LATENT), "scale": (1.0, s * scale[0], s * scale[1]),
        "translate": (0.0, *translate), "colormap": "viridis", "contrast_limits": (lo, hi),
        "blending": "translucent", "visible": False,
        "metadata": whole(LATENT)}, "image")
    # a (D, ny, nx) layer would add a dims slider every 2-D layer shares: RGB of 3 components
    rgb = latent_rgb_layer(latent, result.latent_rgb)
    rgb[1].update(layer_units())  # 2-D once RGB: the units of the other layers
    out.append(rgb)
    out.append((result.motifs, {
        **common, "name": name(MOTIFS), "opacity": 0.5,
        "metadata": whole(MOTIFS, k=result.k)}, "labels"))
    if result.hot_pixels is not None:
        out.append((result.hot_pixels, {
            **common, "name": name(HOT_PIXELS), "opacity": 0.8,
            "metadata": whole(HOT_PIXELS, units="channels replaced by the hot-pixel filter")}, "labels"))
    out.append(_regions_layer(result.regions, name(REGIONS), common, whole(REGIONS)))
    out.append((result.error, {
        **common, "name": name(ERROR), "colormap": "magma",
        "contrast_limits": limits.get("error") or (0.0, MISSED_LIMIT), "blending": "additive",
        "opacity": ERROR_OPACITY,
        "metadata": whole(ERROR, units=result.error_unit)}, "image"))
    return out


def _regions_layer(regions: list[dict], name: str, common: dict, metadata: dict) -> tuple:
    """A Points layer at the regions' centroids, labelled by rank, ringed by size."""
    coords = np.array([[r["y"], r["x"]] for r in regions], dtype=float).reshape(-1, 2)
    features = {key: [r[key] for r in regions] for key in ("rank", "area", "shape", "channels", "mean_error")}
    sizes = [max(6.0, 2.5 * float(np.sqrt(r["area"]))) for r in regions]
    return (coords, {  # hidden until asked for: the widget's table shows a region when clicked
        **common, "name": name, "features": features, "size": sizes if regions else 6.0,
        "symbol": "ring", "face_color": "transparent", "border_color": "cyan",
        "text": {"string": "{rank}", "color": "cyan", "size": 9, "anchor": "upper_left"} if regions else None,
        "metadata": metadata}, "points")
