"""napari writer contribution: image layers → one OME-TIFF with channel names.

Accepts one multi-channel (C, Y, X) layer or several 2-D channel layers (in the
order napari passes them, i.e. layer-list order). Channel names come from the
layers' IMC metadata (:mod:`.layer_data`), else from the layer names; metals,
where known, go to the OME ``Fluor`` attribute so :func:`napari_imc_vae.io.read_imc`
gives back the same names and metals.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
import numpy as np

from napari_imc_vae._napari.layer_data import IMC_KEY
from napari_imc_vae.io import ImcImage
from napari_imc_vae.io.outputs import write_map_tiff

__all__ = ["image_from_layer_data", "save_ome_tiff", "write_ome_tiff"]


def _channels_of(data, meta: dict) -> tuple[list[np.ndarray], list[str], list[str | None]]:
    name = str(meta.get("name", "image"))
    if meta.get("rgb"):
        raise ValueError(f"Layer {name!r} is an RGB image; only channel (count) images are "
                         "written as IMC OME-TIFF")
    arr = np.asarray(data)
    info = (meta.get("metadata") or {}).get(IMC_KEY) or {}
    if arr.ndim == 2:
        return [arr], [str(info.get("channel_name") or name)], [info.get("metal")]
    if arr.ndim == 3:
        n = arr.shape[0]
        names, metals = info.get("channel_names"), info.get("metals")
        if not (isinstance(names, list) and len(names) == n):
            names = [f"ch{i}" for i in range(n)]
        if not (isinstance(metals, list) and len(metals) == n):
            metals = [None] * n
        return list(arr), [str(c) for c in names], list(metals)
    raise ValueError(f"Layer {name!r} has shape {arr.shape}; expected (Y, X) or (C, Y, X)")


def image_from_layer_data(layer_data: Sequence[tuple]) -> ImcImage:
    """Stack napari layer data tuples into one :class:`ImcImage`.

    Parameters
    ----------
    layer_data : sequence of ``(data, meta, layer_type)``
        Image layers: one ``(C, Y, X)`` or several ``(Y, X)``, all of one size.

    Returns
    -------
    ImcImage
        Pixel size from the first layer's ``scale``.

    Raises
    ------
    ValueError
        No layer, a non-image or RGB layer, mismatched sizes, repeated channel names.
    """
    if not layer_data:
        raise ValueError("No layer to write")
    planes, names, metals = [], [], []
    for data, meta, layer_type in layer_data:
        if layer_type != "image":
            raise ValueError(f"Layer {meta.get('name')!r} is a {layer_type} layer; "
                             "only image layers are written as OME-TIFF")
        p, n, m = _channels_of(data, meta)
        planes += p
        names += n
        metals += m
    shapes = {p.shape for p in planes}
    if len(shapes) > 1:
        raise ValueError(f"The layers differ in size {sorted(shapes)}; select the channel "
                         "layers of one image")
    scale = layer_data[0][1].get("scale") or (1.0, 1.0)
    return ImcImage(
        data=np.stack(planes).astype(np.float32),
        channel_names=names,
        metals=metals,
        pixel_size_um=float(scale[-1]),
        source=str(layer_data[0][1].get("name", "")),
    )


def save_ome_tiff(path: str | os.PathLike, image: ImcImage) -> str:
    """Write an ImcImage as a float32 OME-TIFF (axes CYX) with channel names and metals.

    Through :func:`napari_imc_vae.io.outputs.write_map_tiff`, the package's one OME-TIFF
    writer (atomic, physical pixel size): the display names stay the names, the metals ride
    along as the OME ``Fluor`` (imctools style).

    Parameters
    ----------
    path : str or PathLike
        Output file, conventionally ``*.ome.tiff``.
    image : ImcImage

    Returns
    -------
    str
        The path written.
    """
    written = write_map_tiff(path, image.data, image.pixel_size_um, channel_names=image.channel_names,
                             metals=image.metals)
    return os.fspath(written)


def write_ome_tiff(path: str, layer_data: list[tuple]) -> list[str]:
    """npe2 multi-layer writer: selected image layers → one OME-TIFF.

    Parameters
    ----------
    path : str
        Output path chosen in napari.
    layer_data : list of ``(data, meta, layer_type)``

    Returns
    -------
    list of str
        ``[path]``.
    """
    from napari_imc_vae.io.output_guard import check_output_apart

    # never over the file a layer was read from (or its panel): refused, naming it
    sources = [((meta.get("metadata") or {}).get(IMC_KEY) or {}).get("source") for _, meta, _ in layer_data]
    check_output_apart(path, [s for s in sources if s], what="OME-TIFF")
    return [save_ome_tiff(path, image_from_layer_data(layer_data))]
