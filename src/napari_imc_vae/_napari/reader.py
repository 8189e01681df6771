"""napari reader contribution: every format of :mod:`napari_imc_vae.io` as channel layers.

Each image becomes one Image layer per channel (``channel_axis=0``), named by
marker, additive blending, percentile contrast limits and ``scale`` = pixel
size (see :mod:`.layer_data`). An ``.mcd`` opens every acquisition: layer
names get the acquisition in brackets (``"H3K27Ac [ROI_001]"``) and the
acquisitions are laid out left to right, :data:`GAP_UM` apart, so that none
hides another. A folder is what :func:`napari_imc_vae.io.folder_layout` says (the
rule every caller shares): one image of single-channel files, or a set of images, each
opened as one group of channel layers whose names carry the image
(``"H3K27Ac [20210305_NE_mockData1_001]"``), laid out like acquisitions.
"""

from __future__ import annotations

import os
from pathlib import Path

from napari.utils.notifications import show_warning

from napari_imc_vae._napari.layer_data import image_layer_data
from napari_imc_vae.io import FILE_SUFFIXES, FOLDER_SUFFIXES, ImcReadError, format_for, read_imc_all
from napari_imc_vae.io.folder import looks_like_imc_txt

GAP_UM = 10.0


def _looks_readable(path: Path) -> bool:
    """Cheap check that ``path`` is worth handing to :func:`read_imc_all` (never raises).

    The suffixes are the io registry's, as are the manifest's ``filename_patterns``.
    """
    try:
        if path.is_dir():  # what io.folder_layout would read (without opening the TIFFs)
            return any(_looks_readable(p) for p in path.iterdir()
                       if p.name.lower().endswith(FOLDER_SUFFIXES) and not p.name.startswith("."))
        if not path.name.lower().endswith(FILE_SUFFIXES) or not path.is_file() or path.stat().st_size == 0:
            return False
        if format_for(path).key == "txt":
            # "*.txt" matches every text file: take only IMC exports
            return looks_like_imc_txt(path)
        return True
    except OSError:
        return False


def napari_get_reader(path: str | os.PathLike | list):
    """Return :func:`read_layers` if ``path`` looks like IMC data, else None.

    Parameters
    ----------
    path : str, PathLike or list of them
        A file or folder (or several) chosen in napari.

    Returns
    -------
    callable or None
        None for anything this plugin cannot read; never raises.
    """
    paths = path if isinstance(path, (list, tuple)) else [path]
    if not paths:
        return None
    if all(_looks_readable(Path(p)) for p in paths):
        return read_layers
    return None


def read_layers(path: str | os.PathLike | list) -> list[tuple] | None:
    """Read IMC file(s) into napari layer data tuples.

    Parameters
    ----------
    path : str, PathLike or list of them

    Returns
    -------
    list of tuple or None
        One ``(data (C, Y, X), kwargs, "image")`` tuple per acquisition, or
        None (with a warning notification saying why) when a file cannot be read.
    """
    paths = path if isinstance(path, (list, tuple)) else [path]
    layer_data = []
    for p in paths:
        try:
            images = read_imc_all(p)
        except ImcReadError as e:
            show_warning(f"napari-imc-vae could not read {p}: {e}")
            return None
        many = len(images) > 1
        from_folder = Path(p).is_dir()
        x = 0.0
        for image in images:
            data, kwargs, kind = image_layer_data(image, with_acquisition=many and not from_folder,
                                                  translate=(0.0, x))
            if many and from_folder:  # a set of images: the layer names carry the image
                kwargs["name"] = [f"{name} [{image.name}]" for name in image.channel_names]
            layer_data.append((data, kwargs, kind))
            x += image.data.shape[-1] * image.pixel_size_um + GAP_UM
    return layer_data
