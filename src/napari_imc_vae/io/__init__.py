"""Readers for IMC files: every format becomes one :class:`ImcImage` per acquisition.

Formats (the reader is chosen by suffix, :func:`format_for`; see :data:`SUPPORTED_FORMATS`,
and :data:`FILE_SUFFIXES` / :data:`FOLDER_SUFFIXES` for the suffixes alone):

- ``.ome.tiff`` / ``.ome.tif``: OME-TIFF; channel names from the OME-XML, in the styles of
  steinbock ``export ome`` (``Pr141_Cytokeratin 5``) and imctools (``Fluor="Pr141"``);
  pixel size from ``PhysicalSizeX``.
- ``.tiff`` / ``.tif``: a stack with a steinbock ``panel.csv`` beside it (rows with
  ``keep=1``, in order) or a same-stem ``.csv`` listing one channel per line
  (ImcSegmentationPipeline); else a plain 2-D or multi-page TIFF, channels ``ch0, ch1, ...``.
- a folder (:mod:`~napari_imc_vae.io.folder`, one rule for every caller): of single-channel
  TIFFs, one image with one channel per file (histoCAT, MCD Viewer, MIBI exports; metal and
  marker from the file name, ``141Pr_CD45``, ``CD45(Pr141Di)``, ...); of multi-channel stacks
  (steinbock ``img/``) or IMC ``.txt`` files, one image per file; of ``.mcd`` files, all their
  acquisitions. Other mixtures are an error naming the odd files.
- ``.mcd`` (several acquisitions) and ``.txt`` (one), read by readimc: these need the
  ``mcd`` extra, ``pip install "napari-imc-vae[mcd]"``; it is imported only when used.

Every failure to read raises :class:`ImcReadError` (a ``ValueError``) naming the file and
the problem. NaN/Inf pixel values are kept and reported with a :class:`NonFiniteWarning`.
"""

from napari_imc_vae.io._common import steinbock_channel_name
from napari_imc_vae.io._registry import (
    FILE_SUFFIXES,
    FOLDER_SUFFIXES,
    SUPPORTED_FORMATS,
    format_for,
    list_acquisitions,
    read_imc,
    read_imc_all,
)
from napari_imc_vae.io.folder import FolderLayout, folder_layout
from napari_imc_vae.io.image import ImcImage, ImcReadError, NonFiniteWarning
from napari_imc_vae.io.tiff import TiffWarning

__all__ = [
    "FILE_SUFFIXES",
    "FOLDER_SUFFIXES",
    "SUPPORTED_FORMATS",
    "FolderLayout",
    "ImcImage",
    "ImcReadError",
    "NonFiniteWarning",
    "TiffWarning",
    "folder_layout",
    "format_for",
    "list_acquisitions",
    "read_imc",
    "read_imc_all",
    "steinbock_channel_name",
]
