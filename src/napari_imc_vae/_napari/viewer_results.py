"""A reconstruction's layers among the viewer's other layers (what the "Reconstruct" widget places).

Which layers an earlier run of the same image left (:func:`result_key`, found by
``metadata["imc"]``, not by name), which IMC images the viewer holds (:func:`images_in`,
for their short tags), renaming the whole-image results when the tags change
(:func:`retag`), and the raw layers' names and display settings a reconstruction reuses
(:func:`raw_display`).
"""

from __future__ import annotations

from napari_imc_vae._napari.layer_data import COLORMAPS, NORMALIZED, RAW, tagged_name
from napari_imc_vae._napari.layers import LayerImage, imc_info
from napari_imc_vae._napari.reconstruct_task import DERIVED_KINDS, WHOLE_KINDS, ReconstructResult

__all__ = ["result_key", "images_in", "retag", "raw_display"]


def result_key(metadata) -> tuple | None:
    """(kind, image, marker) of a result layer of this widget, else None (raw, user's layers)."""
    info = metadata.get("imc") if isinstance(metadata, dict) else None
    if not isinstance(info, dict) or info.get("kind") not in DERIVED_KINDS or "source_image" not in info:
        return None
    return (info["kind"], info["source_image"], info.get("channel_name"))


def images_in(viewer) -> list[str]:
    """Names of the IMC images in ``viewer``: read (or normalized) ones and those results came from."""
    names = []
    for layer in viewer.layers:
        info = imc_info(layer) or {}
        if "source_image" in info:
            names.append(str(info["source_image"]))
        elif info.get("kind", RAW) in (RAW, NORMALIZED) and info.get("image"):
            names.append(str(info["image"]))
    return names


def retag(viewer, tags: dict[str, str]) -> None:
    """Rename the whole-image result layers of the images in ``tags`` to their title and tag."""
    for layer in viewer.layers:
        info = imc_info(layer) or {}
        if info.get("kind") in WHOLE_KINDS and info.get("source_image") in tags and info.get("title"):
            name = tagged_name(info["title"], tags[info["source_image"]])
            if layer.name != name:
                layer.name = name


def raw_display(source: LayerImage, result: ReconstructResult) -> tuple[list, list, list]:
    """Per image channel: the raw layer's name, colormap and contrast limits."""
    raw = result.image
    if not source.is_multichannel_layer:
        return ([layer.name for layer in source.layers], [layer.colormap for layer in source.layers],
                [tuple(layer.contrast_limits) for layer in source.layers])
    contrast = [(0.0, 1.0)] * raw.n_channels
    for i, limits in zip(result.channel_index, result.display_limits["raw"]):
        contrast[i] = limits
    return list(raw.channel_names), [COLORMAPS[i % len(COLORMAPS)] for i in range(raw.n_channels)], contrast
