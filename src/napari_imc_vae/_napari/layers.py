"""Find the IMC images in a viewer: layers → :class:`ImcImage` (shared by all widgets).

An IMC image in napari is either

- the 2-D per-channel Image layers of one image, grouped by ``metadata["imc"]``
  (what the reader, the sample data and the widgets add), or
- one 3-D Image layer of shape (C, Y, X); channel names from
  ``metadata["imc"]["channel_names"]`` when they fit, else ``ch0, ch1, …``.

Anything else (RGB, Labels, Points, mixed images, …) raises a ValueError
that names the layer and the problem, for the widget to show.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from napari.layers import Image, Layer

from napari_imc_vae._napari.layer_data import IMC_KEY, RAW
from napari_imc_vae.io import ImcImage

__all__ = ["LayerImage", "find_imc_images", "imc_image_from_layers", "imc_info"]


@dataclass
class LayerImage:
    """An IMC image found in the viewer: its layers and channel identity.

    Finding images is cheap (no pixel data is touched); :attr:`image` stacks
    the pixels on first access.

    Attributes
    ----------
    layers : list of napari.layers.Image
        The source layers: one per channel in channel order, or the single
        multi-channel (C, Y, X) layer.
    channel_names, metals, labels : list
        Per channel, as for :class:`ImcImage`.
    pixel_size_um : float
    source : str
    acquisition : str or None
    kind : str
        ``metadata["imc"]["kind"]`` of the layers (``"raw"`` for read data).
    name : str
        Short image name (the reader's ``ImcImage.name``, else the layer name).
    """

    layers: list[Image]
    channel_names: list[str]
    metals: list | None = None
    labels: list | None = None
    pixel_size_um: float = 1.0
    source: str = ""
    acquisition: str | None = None
    kind: str = RAW
    name: str = ""
    _image: ImcImage | None = field(default=None, repr=False)

    @property
    def image(self) -> ImcImage:
        """The pixels as a float32 copy (never a view of a layer's data)."""
        if self._image is None:
            if self.is_multichannel_layer:
                data = np.array(self.layers[0].data, dtype=np.float32, copy=True)
            else:
                data = np.stack([np.asarray(lay.data, dtype=np.float32) for lay in self.layers])
            self._image = ImcImage(
                data=data, channel_names=self.channel_names, metals=self.metals,
                labels=self.labels, pixel_size_um=self.pixel_size_um, source=self.source,
                acquisition=self.acquisition,
            )
        return self._image

    @property
    def n_channels(self) -> int:
        return len(self.channel_names)

    @property
    def label(self) -> str:
        """Text for a picker: image name, channel count and kind."""
        suffix = "" if self.kind == RAW else f", {self.kind}"
        channels = "1 channel" if self.n_channels == 1 else f"{self.n_channels} channels"
        return f"{self.name} ({channels}{suffix})"

    @property
    def is_multichannel_layer(self) -> bool:
        return len(self.layers) == 1 and self.layers[0].ndim == 3

    @property
    def translate(self) -> tuple[float, float]:
        return tuple(float(t) for t in self.layers[0].translate[-2:])


def imc_info(layer: Layer) -> dict | None:
    """The ``metadata["imc"]`` dict of a layer, or None."""
    info = layer.metadata.get(IMC_KEY) if isinstance(layer.metadata, dict) else None
    return info if isinstance(info, dict) else None


def _group_key(info: dict) -> tuple:
    return (info.get("source"), info.get("acquisition"), info.get("image"), info.get("kind", RAW))


def _check_image_layer(layer: Layer) -> None:
    if not isinstance(layer, Image):
        kind = type(layer).__name__
        raise ValueError(
            f"Layer {layer.name!r} is a {kind} layer, not an Image layer: pick the channel "
            "layers of an IMC image or one multi-channel (C, Y, X) image layer"
        )
    if layer.rgb:
        raise ValueError(
            f"Layer {layer.name!r} is an RGB image (shape {tuple(layer.data.shape)}): an IMC "
            "image is a stack of channel counts, one layer per channel or one (C, Y, X) layer"
        )
    if getattr(layer, "multiscale", False):
        raise ValueError(f"Layer {layer.name!r} is multiscale; open it at one resolution")
    if layer.ndim not in (2, 3):
        raise ValueError(
            f"Layer {layer.name!r} has {layer.ndim} dimensions (shape "
            f"{tuple(layer.data.shape)}); expected (Y, X) per channel or (C, Y, X)"
        )


def _pixel_size(layer: Image) -> float:
    sy, sx = (float(s) for s in layer.scale[-2:])
    if not np.isclose(sy, sx):
        raise ValueError(f"Layer {layer.name!r} has non-square pixels (scale {sy} × {sx})")
    return sx


def _from_multichannel(layer: Image) -> LayerImage:
    info = imc_info(layer) or {}
    n = int(layer.data.shape[0])
    names = info.get("channel_names")
    if not (isinstance(names, list) and len(names) == n and len(set(map(str, names))) == n):
        names = [f"ch{i}" for i in range(n)]
    metals, labels = info.get("metals"), info.get("labels")
    return LayerImage(
        layers=[layer],
        channel_names=[str(c) for c in names],
        metals=metals if isinstance(metals, list) and len(metals) == n else None,
        labels=labels if isinstance(labels, list) and len(labels) == n else None,
        pixel_size_um=_pixel_size(layer),
        source=info.get("source") or layer.name,
        acquisition=info.get("acquisition"),
        kind=info.get("kind", RAW),
        name=info.get("image") or layer.name,
    )


def _from_channels(layers: Sequence[Image]) -> LayerImage:
    infos = [imc_info(layer) for layer in layers]
    keys = {_group_key(i) for i in infos if i is not None}
    if len(keys) > 1 or (keys and any(i is None for i in infos)):
        images = sorted({str(i.get("image")) if i else "(no IMC metadata)" for i in infos})
        raise ValueError(f"The selected layers belong to different images: {images}; "
                         "pick the channel layers of one image")
    shapes = {tuple(layer.data.shape) for layer in layers}
    if len(shapes) > 1:
        detail = ", ".join(f"{lay.name!r} {tuple(lay.data.shape)}" for lay in layers)
        raise ValueError(f"Channel layers of one image must share one (Y, X) shape; got {detail}")
    for layer in layers:
        translate = tuple(float(t) for t in layer.translate[-2:])
        if translate != tuple(float(t) for t in layers[0].translate[-2:]):
            raise ValueError(f"Layer {layer.name!r} is translated differently from "
                             f"{layers[0].name!r}: channels of one image must overlap exactly")
    sizes = {_pixel_size(layer) for layer in layers}
    if len(sizes) > 1:
        raise ValueError(f"The channel layers have different pixel sizes {sorted(sizes)}")
    if keys:
        order = sorted(range(len(layers)), key=lambda k: infos[k].get("channel_index", k))
        indices = [infos[k].get("channel_index") for k in order]
        if len(set(indices)) != len(indices):
            repeated = {i for i in indices if indices.count(i) > 1}
            dup = sorted(layers[k].name for k in order
                         if infos[k].get("channel_index") in repeated)
            raise ValueError(f"Layers {dup} claim the same channel of one image "
                             "(a duplicated layer?)")
        layers = [layers[k] for k in order]
        infos = [infos[k] for k in order]
        names = [str(i.get("channel_name") or lay.name) for i, lay in zip(infos, layers)]
        info = infos[0]
    else:
        names = [layer.name for layer in layers]
        info = {}
    if len(set(names)) != len(names):
        raise ValueError(f"Channel names repeat among the selected layers: {names}")
    return LayerImage(
        layers=list(layers),
        channel_names=names,
        metals=[i.get("metal") for i in infos] if info else None,
        labels=[i.get("label") for i in infos] if info else None,
        pixel_size_um=sizes.pop(),
        source=info.get("source") or layers[0].name,
        acquisition=info.get("acquisition"),
        kind=info.get("kind", RAW),
        name=info.get("image") or layers[0].name,
    )


def imc_image_from_layers(layers: Iterable[Layer]) -> LayerImage:
    """Build the IMC image that a set of layers (e.g. the viewer's selection) forms.

    Parameters
    ----------
    layers : iterable of napari layers
        One multi-channel (C, Y, X) Image layer, or 2-D Image layers that are
        the channels of one image (grouped by their IMC metadata, ordered by
        channel; layers without metadata are channels named by layer name).

    Returns
    -------
    LayerImage

    Raises
    ------
    ValueError
        No layer; a non-Image, RGB, multiscale or >3-D layer; several 3-D
        layers or a mix of 2-D and 3-D; layers of different images, shapes,
        pixel sizes or positions. The message names the layer(s).
    """
    layers = list(layers)
    if not layers:
        raise ValueError("No layer selected: open an IMC image (File > Open) or select "
                         "its channel layers in the layer list")
    for layer in layers:
        _check_image_layer(layer)
    stacks = [layer for layer in layers if layer.ndim == 3]
    if stacks:
        if len(layers) > 1:
            names = [layer.name for layer in layers]
            raise ValueError(f"Select one multi-channel (C, Y, X) layer or 2-D channel layers "
                             f"of one image, not a mix of several: {names}")
        return _from_multichannel(stacks[0])
    return _from_channels(layers)


def find_imc_images(layers: Iterable[Layer], *, kinds: Collection[str] | None = (RAW,)
                    ) -> list[LayerImage]:
    """All IMC images that can be formed from a viewer's layers.

    Groups of 2-D layers with the same IMC metadata are one image each; every
    non-RGB 3-D Image layer is one image. Layers that form no valid image are
    skipped (use :func:`imc_image_from_layers` to get the reason).

    Parameters
    ----------
    layers : iterable of napari layers
        Typically ``viewer.layers``.
    kinds : collection of str or None
        Keep images whose layers have one of these kinds (default raw data
        only); None keeps all.

    Returns
    -------
    list of LayerImage
        In layer-list order of each image's first layer.
    """
    groups: dict[tuple, list[Image]] = {}
    singles: list[Image] = []
    for layer in layers:
        if not isinstance(layer, Image) or layer.rgb or layer.ndim not in (2, 3):
            continue
        info = imc_info(layer)
        if layer.ndim == 3:
            singles.append(layer)
        elif info is not None:
            groups.setdefault(_group_key(info), []).append(layer)
    found = []
    for group in [*groups.values(), *([s] for s in singles)]:
        try:
            found.append(imc_image_from_layers(group))
        except ValueError:
            continue
    if kinds is not None:
        found = [f for f in found if f.kind in kinds]
    order = {id(layer): k for k, layer in enumerate(layers)} if isinstance(layers, Sequence) else {}
    return sorted(found, key=lambda f: min(order.get(id(lay), 0) for lay in f.layers))
