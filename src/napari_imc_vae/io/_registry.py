"""One entry point over every reader: the reader is picked by suffix (a folder has its own).

The formats' suffixes are named once, in :mod:`._suffixes`; :data:`FILE_SUFFIXES`,
:data:`FOLDER_SUFFIXES` and :func:`format_for` are what the rest of the package (the napari
reader and its manifest, the command line) uses.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from napari_imc_vae.io import _suffixes, folder, mcd, tiff
from napari_imc_vae.io.image import ImcImage, ImcReadError, source_stem

Acquisition = int | str | None


@dataclass(frozen=True)
class Format:
    """A format: its suffixes, and how to list, read one and read all of its acquisitions."""

    key: str  # short identifier: "ome-tiff", "tiff", "mcd", "txt", "folder"
    name: str
    suffixes: tuple[str, ...]  # empty: a folder
    read: Callable[[Path, Acquisition], ImcImage]
    acquisitions: Callable[[Path], list[str]]
    read_all: Callable[[Path], list[ImcImage]]
    extra: str | None = None

    def describe(self) -> str:
        kinds = ", ".join(self.suffixes) if self.suffixes else "a folder"
        needs = f"; needs the '{self.extra}' extra" if self.extra else ""
        return f"{self.name} ({kinds}{needs})"


def _check_acquisition_type(acquisition: Acquisition) -> None:
    if isinstance(acquisition, bool) or not isinstance(acquisition, (int, str, type(None))):
        raise TypeError(
            f"acquisition must be None, an int index or an identifier str, got {acquisition!r}"
        )


def _single(key: str, name: str, suffixes: tuple[str, ...], read: Callable[[Path], ImcImage],
            extra: str | None = None) -> Format:
    """A format with one acquisition per file, identified by the file name without suffix."""

    def read_one(path: Path, acquisition: Acquisition = None) -> ImcImage:
        if acquisition not in (None, 0, source_stem(path)):
            raise ImcReadError(
                f"{path}: holds one acquisition ({source_stem(path)!r}, index 0); "
                f"got acquisition={acquisition!r}"
            )
        return read(path)

    return Format(
        key=key,
        name=name,
        suffixes=suffixes,
        read=read_one,
        acquisitions=lambda path: [source_stem(path)],
        read_all=lambda path: [read(path)],
        extra=extra,
    )


FORMATS: tuple[Format, ...] = (
    _single(
        "ome-tiff",
        "OME-TIFF, channel names from the OME-XML (steinbock export ome, imctools)",
        _suffixes.OME_TIFF,
        tiff.read_tiff,
    ),
    _single(
        "tiff",
        "TIFF stack with a steinbock panel.csv or a same-stem .csv beside it, "
        "or a plain 2-D/multi-page TIFF (channels ch0, ch1, ...)",
        _suffixes.TIFF,
        tiff.read_tiff,
    ),
    Format(
        "mcd",
        "MCD (Fluidigm/Standard BioTools), several acquisitions",
        _suffixes.MCD,
        read=mcd.read_mcd,
        acquisitions=mcd.list_mcd_acquisitions,
        read_all=mcd.read_mcd_all,
        extra="mcd",
    ),
    _single("txt", "IMC .txt export, one acquisition", _suffixes.TXT, mcd.read_txt, extra="mcd"),
    Format(
        "folder",
        "folder: of single-channel TIFFs, one image (histoCAT, MCD Viewer, MIBI exports; "
        "file name = metal and marker); of multi-channel stacks or .txt files (steinbock img/), "
        "one image per file; of .mcd files, their acquisitions",
        (),
        read=folder.read_folder,
        acquisitions=folder.folder_acquisitions,
        read_all=folder.read_folder_all,
    ),
)

SUPPORTED_FORMATS: list[str] = [f.describe() for f in FORMATS]

#: Every suffix of a file format (lower case), longest first: the napari manifest's
#: ``filename_patterns`` are ``"*" + suffix`` of these.
FILE_SUFFIXES: tuple[str, ...] = _suffixes.ALL

#: Suffixes of the files a folder is read from (see :mod:`.folder` for the rule).
FOLDER_SUFFIXES: tuple[str, ...] = _suffixes.ALL


def format_for(path: str | os.PathLike[str]) -> Format:
    """The format that reads ``path``, chosen by its suffix (case-insensitive).

    Raises
    ------
    ImcReadError
        Unknown suffix (the message lists the supported formats) or a missing path.
    """
    path = Path(path)
    if path.is_dir():
        return next(f for f in FORMATS if not f.suffixes)
    name = path.name.lower()
    # Longest suffix first, so that ".ome.tiff" wins over ".tiff".
    for suffix in FILE_SUFFIXES:
        if name.endswith(suffix):
            return next(f for f in FORMATS if suffix in f.suffixes)
    if not path.exists():
        raise ImcReadError(f"{path}: file does not exist")
    listed = "; ".join(SUPPORTED_FORMATS)
    raise ImcReadError(f"{path}: unknown file format {path.suffix!r}; supported: {listed}")


def read_imc(path: str | os.PathLike[str], *, acquisition: Acquisition = None) -> ImcImage:
    """Read one IMC acquisition from any supported file (see :data:`SUPPORTED_FORMATS`).

    Parameters
    ----------
    path : str or PathLike
        An ``.mcd``, ``.txt``, ``.ome.tiff``/``.ome.tif``, ``.tiff``/``.tif`` file, or a
        folder (see :mod:`napari_imc_vae.io.folder` for what a folder is).
    acquisition : int or str, optional
        Which acquisition: a 0-based index or an identifier from :func:`list_acquisitions`.
        Default: the first (the only one for every format but ``.mcd`` and folders of
        several images).

    Returns
    -------
    ImcImage
        float32 ``data`` of shape (C, Y, X), unique ``channel_names`` (target where known,
        else metal), ``metals``, ``labels``, ``pixel_size_um`` and ``source``. NaN/Inf
        pixels are kept and reported with a :class:`NonFiniteWarning`.

    Raises
    ------
    ImcReadError
        Unknown suffix, missing/empty/truncated/corrupt file, colour image, data that is not
        2-D or 3-D, a panel whose row count differs from the stack's, an unknown
        acquisition, or the ``mcd`` extra missing for ``.mcd``/``.txt``.
    TypeError
        ``acquisition`` is neither None, int nor str.
    """
    _check_acquisition_type(acquisition)
    return format_for(path).read(Path(path), acquisition)


def read_imc_all(path: str | os.PathLike[str]) -> list[ImcImage]:
    """Read every acquisition of a file, in file order (one for all formats but ``.mcd``).

    Parameters
    ----------
    path : str or PathLike
        As for :func:`read_imc`.

    Returns
    -------
    list of ImcImage
        One per acquisition; ``ImcImage.acquisition`` is its identifier for ``.mcd`` files.

    Raises
    ------
    ImcReadError
        As for :func:`read_imc`.
    """
    return format_for(path).read_all(Path(path))


def list_acquisitions(path: str | os.PathLike[str]) -> list[str]:
    """Identifiers of the acquisitions in a file, in file order.

    Parameters
    ----------
    path : str or PathLike
        As for :func:`read_imc`.

    Returns
    -------
    list of str
        For ``.mcd``: each acquisition's description (``"ROI_001"``), or
        ``"<description>_<id>"`` where descriptions repeat or are empty. For every other
        format: one entry, the file name without suffix. Each identifier is accepted by
        ``read_imc(path, acquisition=...)``.

    Raises
    ------
    ImcReadError
        As for :func:`read_imc`; other formats' files are not opened.
    """
    path = Path(path)
    fmt = format_for(path)
    if fmt.suffixes and not path.is_file():
        raise ImcReadError(f"{path}: file does not exist")
    return fmt.acquisitions(path)
