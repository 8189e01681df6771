"""Channel identity and pixel size from the OME-XML of an OME-TIFF.

Two IMC writers are understood:

- steinbock ``export ome``: ``<Channel Name="Pr141_Cytokeratin 5"/>`` (metal, underscore, target);
- imctools / ImcSegmentationPipeline: ``<Channel Name="Cytoker_651((3356))Pr141" Fluor="Pr141"/>``
  (the metal is in ``Fluor``, the name is the acquisition software's label).

Reading the pixels is :mod:`napari_imc_vae.io.tiff`'s job; this module only parses XML.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from napari_imc_vae.io._common import metal_from_label, parse_metal

_STEINBOCK_NAME = re.compile(r"^([A-Za-z]{1,2}\d{1,3})(?:Di)?_(.*)$")

# OME UnitsLength symbols -> micrometres.
_TO_UM = {"pm": 1e-6, "Å": 1e-4, "nm": 1e-3, "µm": 1.0, "um": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6}


@dataclass(frozen=True)
class OmeChannels:
    """What the OME-XML says about the channels of its first image."""

    metals: list[str | None]
    labels: list[str | None]
    pixel_size_um: float | None


def _local(tag: str) -> str:
    # OME namespaces differ between schema versions; match on the local name only.
    return tag.rsplit("}", 1)[-1]


def split_channel(name: str | None, fluor: str | None) -> tuple[str | None, str | None]:
    """Metal and label of one OME Channel from its ``Name`` and ``Fluor`` attributes.

    Parameters
    ----------
    name, fluor : str or None
        The attributes as written.

    Returns
    -------
    metal : str or None
        ``"Pr141"`` style, or None when neither attribute names a metal.
    label : str or None
        The target for steinbock names (``"Cytokeratin 5"``), else the name as written.
    """
    name = (name or "").strip() or None
    metal = parse_metal(fluor)
    if name is None:
        return metal, None
    m = _STEINBOCK_NAME.match(name)
    if m and parse_metal(m.group(1)) and (metal is None or parse_metal(m.group(1)) == metal):
        return parse_metal(m.group(1)), m.group(2).strip() or None
    return metal or metal_from_label(name) or parse_metal(name), name


def parse_ome_channels(xml: str, n_channels: int) -> OmeChannels | None:
    """Channel metals/labels and pixel size from OME-XML.

    Parameters
    ----------
    xml : str
        The OME-XML document (``tifffile.TiffFile.ome_metadata``).
    n_channels : int
        Channels in the pixel data; the XML must describe exactly these.

    Returns
    -------
    OmeChannels or None
        None when the XML does not parse, has no Pixels element, lists another number of
        channels, or names none of them (the caller then looks for a panel file).
        ``pixel_size_um`` is None when ``PhysicalSizeX`` is absent or unusable.
    """
    try:
        root = ET.fromstring(xml)
    except (ET.ParseError, ValueError):
        return None
    pixels = next((el for el in root.iter() if _local(el.tag) == "Pixels"), None)
    if pixels is None:
        return None
    channels = [el for el in pixels if _local(el.tag) == "Channel"]
    if len(channels) != n_channels:
        return None
    pairs = [split_channel(c.get("Name"), c.get("Fluor")) for c in channels]
    if not any(metal or label for metal, label in pairs):
        return None
    return OmeChannels(
        metals=[metal for metal, _ in pairs],
        labels=[label for _, label in pairs],
        pixel_size_um=_pixel_size(pixels),
    )


def _pixel_size(pixels: ET.Element) -> float | None:
    try:
        size = float(pixels.get("PhysicalSizeX", ""))
    except ValueError:
        return None
    factor = _TO_UM.get(pixels.get("PhysicalSizeXUnit", "µm"))
    if factor is None or not size > 0:
        return None
    return size * factor
