"""ImcImage → napari layer data, and the metadata that lets us find the image again.

Conventions (DESIGN §2):

- one Image layer per channel (``channel_axis=0``), additive blending,
  contrast limits p1–p99.5 of the finite pixels, ``scale`` = pixel size in µm
  (and ``units`` µm where napari's layers have units, so its scale bar reads µm);
- layer name = channel (marker) name; when a file holds several acquisitions
  (``.mcd``) the acquisition is appended in brackets: ``"Yb172 [ROI_001]"``;
  derived layers append their kind: ``"H3K27Ac [normalized]"``;
- a whole-image result layer is named by what it shows, first: ``"error (noise SD)"``,
  ``"tissue motifs"``; with several images in the viewer, followed by the image's short
  tag (:func:`image_tags`): ``"error (noise SD) · 003"``. napari's layer list elides
  the middle of long names, so names stay short and start with the meaningful word;
- every layer carries ``metadata["imc"]`` (see :func:`channel_metadata`), so
  the per-channel layers of one image can be grouped again whatever their names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

import numpy as np

from napari_imc_vae.io import ImcImage

IMC_KEY = "imc"
RAW = "raw"
NORMALIZED = "normalized"
# Colours that stay distinguishable when added; napari's CMYBGR plus a few more.
COLORMAPS = ("cyan", "magenta", "yellow", "green", "red", "blue", "bop orange", "bop purple")
# With dozens of channels additively blended everything turns white: show the first few.
MAX_VISIBLE = 8
LOW_PERCENTILE, HIGH_PERCENTILE = 1.0, 99.5
#: napari's layer list shows about this many characters of a name at its default width (1080p
#: window), then elides the middle ("Cytokeratin 5 …sed (noise SD)"): names the plugin makes up
#: stay within it where they can.
LIST_NAME_CHARS = 28


def contrast_limits(channel: np.ndarray) -> tuple[float, float]:
    """Display range of one channel from percentiles of its finite pixels.

    Hot pixels make min–max useless, so the range is p1–p99.5. Sparse markers
    have p99.5 = p1 (often 0): then the max is used; an empty or constant
    channel gets ``(v, v + 1)`` so napari has a valid, non-degenerate range.

    Parameters
    ----------
    channel : ndarray of shape (Y, X)

    Returns
    -------
    tuple of float
        ``(low, high)`` with ``low < high``.
    """
    values = np.asarray(channel)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(values, [LOW_PERCENTILE, HIGH_PERCENTILE]))
    if hi <= lo:
        hi = float(values.max())
    if hi <= lo:
        hi = lo + 1.0
    return (lo, hi)


@cache
def layer_units() -> dict:
    """``{"units": ("um", "um")}`` where napari's layers take units (napari >= 0.6), else ``{}``.

    napari >= 0.6 draws the scale bar in the units the layers share; every layer the plugin
    adds carries them, so that raw, derived and comparison layers agree.
    """
    import inspect

    from napari.layers import Layer

    return {"units": ("um", "um")} if "units" in inspect.signature(Layer.__init__).parameters else {}


def layer_name(image: ImcImage, index: int, *, with_acquisition: bool = False,
               kind: str = RAW) -> str:
    """Name of the layer of channel ``index`` (see the module conventions)."""
    name = image.channel_names[index]
    if with_acquisition and image.acquisition:
        name = f"{name} [{image.acquisition}]"
    if kind != RAW:
        name = f"{name} [{kind}]"
    return name


def image_tags(names: Iterable[str]) -> dict[str, str]:
    """The shortest tag that tells each image name from the others: ``{name: tag}``.

    A tag is the shortest run of whole trailing words of the name (words split at ``_``,
    ``-``, ``.``, ``/``, spaces) that no other name ends with: ``20210305_NE_mockData5_003``
    beside ``…_004`` is ``003``. One image alone gets ``""`` (nothing to tell apart); a name
    that no suffix tells apart (the same name twice) keeps its whole name.

    Parameters
    ----------
    names : iterable of str
        The names of the images in the viewer (repeats count once).
    """
    unique = list(dict.fromkeys(str(n) for n in names))
    if len(unique) < 2:
        return {n: "" for n in unique}
    # keep the separators with the words, so that a tag is exactly the end of the name
    words = {n: re.findall(r"[^_\-./\s]+[_\-./\s]*", n) or [n] for n in unique}
    tags = {}
    for name in unique:
        for k in range(1, len(words[name]) + 1):
            tag = "".join(words[name][-k:]).strip("_-./ ")
            if not any(other != name and _ends_with_words(other, tag) for other in unique):
                break
        tags[name] = tag if tag else name
    return tags


def _ends_with_words(name: str, tag: str) -> bool:
    """``name`` ends with ``tag`` as whole words (``"x_1003"`` does not end with ``"003"``)."""
    stripped = name.rstrip("_-./ ")
    return stripped == tag or (stripped.endswith(tag) and stripped[-len(tag) - 1] in "_-./ \t")


def tagged_name(title: str, tag: str) -> str:
    """``"error (noise SD) · 003"``: a result layer's title, then its image's tag (if any)."""
    return f"{title} · {tag}" if tag else title


def channel_metadata(image: ImcImage, index: int, *, kind: str = RAW, **extra) -> dict:
    """``layer.metadata`` for channel ``index`` of ``image``.

    Returns
    -------
    dict
        ``{"imc": {...}}`` with ``image`` (the image's short name), ``source``,
        ``acquisition``, ``kind`` (``"raw"``, ``"normalized"``, …),
        ``channel_index``, ``channel_name``, ``metal``, ``label``,
        ``channel_names`` (all channels of the image, in order),
        ``pixel_size_um``, plus any ``extra`` items.
    """
    info = {
        "image": image.name,
        "source": image.source,
        "acquisition": image.acquisition,
        "kind": kind,
        "channel_index": int(index),
        "channel_name": image.channel_names[index],
        "metal": image.metals[index],
        "label": image.labels[index],
        "channel_names": list(image.channel_names),
        "metals": list(image.metals),
        "labels": list(image.labels),
        "pixel_size_um": float(image.pixel_size_um),
    }
    info.update(extra)
    return {IMC_KEY: info}


def image_layer_data(
    image: ImcImage,
    *,
    with_acquisition: bool = False,
    kind: str = RAW,
    colormaps=None,
    contrast: list[tuple[float, float]] | None = None,
    translate: tuple[float, float] = (0.0, 0.0),
    **extra_metadata,
) -> tuple:
    """One napari layer-data tuple for ``image``, split into channels by napari.

    Parameters
    ----------
    image : ImcImage
    with_acquisition : bool
        Append the acquisition to layer names (files with several acquisitions).
    kind : str
        ``"raw"`` for read data; derived layers name their kind.
    colormaps : sequence, optional
        One colormap per channel; default cycles :data:`COLORMAPS`.
    contrast : sequence of (low, high), optional
        Per-channel contrast limits; default from :func:`contrast_limits`.
    translate : tuple of float
        ``(ty, tx)`` in world units, e.g. to sit exactly on the raw layers.
    **extra_metadata
        Added to each layer's ``metadata["imc"]``.

    Returns
    -------
    tuple
        ``(data (C, Y, X), kwargs, "image")`` with ``channel_axis=0``.
    """
    n = image.n_channels
    if colormaps is None:
        colormaps = [COLORMAPS[i % len(COLORMAPS)] for i in range(n)]
    if contrast is None:
        contrast = [contrast_limits(image.data[i]) for i in range(n)]
    px = float(image.pixel_size_um)
    kwargs = {
        "channel_axis": 0,
        "name": [layer_name(image, i, with_acquisition=with_acquisition, kind=kind)
                 for i in range(n)],
        "blending": "additive",
        "colormap": list(colormaps),
        "contrast_limits": [tuple(c) for c in contrast],
        "scale": (px, px),
        "translate": tuple(float(t) for t in translate),
        "visible": [i < MAX_VISIBLE for i in range(n)],
        "metadata": [channel_metadata(image, i, kind=kind, **extra_metadata) for i in range(n)],
        # one (Y, X) pair per channel: napari would read a bare pair as one unit per channel
        **{key: [value] * n for key, value in layer_units().items()},
    }
    return (image.data, kwargs, "image")
