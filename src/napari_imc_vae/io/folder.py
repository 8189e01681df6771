"""The one rule for what a folder is, used by ``read_imc``, the napari reader and the CLI.

- A folder whose image files are all single-plane TIFFs (``.tif``, ``.tiff``, ``.ome.tif``,
  ``.ome.tiff``) is **one image**, one channel per file (histoCAT, MCD Viewer and MIBI
  exports). Channel identity comes from the file names (:func:`channel_identities`).
- A folder of multi-channel stacks (steinbock ``img/``, with or without ``panel.csv`` /
  ``images.csv``), or of IMC ``.txt`` files, is a **set of images**, one per file.
- A folder of ``.mcd`` files is the set of their acquisitions (``.txt`` exports of the same
  acquisitions beside them are skipped).
- Any other mixture is an :class:`ImcReadError` naming the odd files.

Files whose names start with a dot, and files of other kinds (``.csv``, notes, a ``.txt``
that is not an IMC export) are not images and are left alone.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_imc_vae.io import _suffixes, mcd, tiff
from napari_imc_vae.io._common import build_image, make_unique, parse_metal, split_identity, steinbock_name
from napari_imc_vae.io.image import ImcImage, ImcReadError, source_stem

#: One image, one channel per file.
CHANNELS = "channels"
#: A set of images, one per file.
IMAGES = "images"
#: The acquisitions of the ``.mcd`` files.
MCD = "mcd"

_SEPARATORS = "_- ."
_LISTED = 6  # odd files named in a message, at most


@dataclass(frozen=True)
class FolderLayout:
    """What a folder holds, by :func:`folder_layout`.

    Attributes
    ----------
    kind : str
        :data:`CHANNELS`, :data:`IMAGES` or :data:`MCD`.
    files : tuple of Path
        The files read, sorted by name.
    skipped : tuple of Path
        Image files left out on purpose (``.txt`` exports beside ``.mcd`` files).
    """

    kind: str
    files: tuple[Path, ...]
    skipped: tuple[Path, ...] = ()


def looks_like_imc_txt(path: Path) -> bool:
    """Whether a ``.txt`` file starts like an IMC export (push columns, X and Y); never raises."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    return b"Start_push" in head or (b"\tX\t" in head and b"\tY\t" in head)


def _names(paths: Sequence[Path | str]) -> str:
    names = [p.name if isinstance(p, Path) else p for p in paths]
    more = f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
    return ", ".join(names[:_LISTED]) + more


def folder_layout(path: str | os.PathLike) -> FolderLayout:
    """Classify a folder by the one rule of this module.

    Raises
    ------
    ImcReadError
        A missing folder, one without IMC image files, a mixture (the message names the
        odd files), or a TIFF that cannot be opened.
    """
    path = Path(path)
    if not path.is_dir():
        raise ImcReadError(f"{path}: folder does not exist")
    entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    _refuse_unreadable(path, entries)
    files = [p for p in entries if p.is_file()]
    by_kind: dict[str, list[Path]] = {"mcd": [], "txt": [], "tiff": []}
    for p in files:
        name = p.name.lower()
        if name.endswith(_suffixes.MCD):
            by_kind["mcd"].append(p)
        elif name.endswith(_suffixes.TXT):
            if looks_like_imc_txt(p):
                by_kind["txt"].append(p)
        elif name.endswith(_suffixes.OME_TIFF + _suffixes.TIFF):
            by_kind["tiff"].append(p)
    mcds, txts, tiffs = by_kind["mcd"], by_kind["txt"], by_kind["tiff"]
    if mcds:
        if tiffs:
            raise ImcReadError(f"{path}: a folder of .mcd files ({_names(mcds)}) also holds TIFFs: "
                               f"{_names(tiffs)}; put them in a folder of their own")
        return FolderLayout(MCD, tuple(mcds), skipped=tuple(txts))
    if txts and tiffs:
        odd, kind = (txts, ".txt") if len(txts) <= len(tiffs) else (tiffs, "TIFF")
        raise ImcReadError(f"{path}: mixes IMC .txt files and TIFFs; the odd {kind} files: "
                           f"{_names(odd)}")
    if txts:
        return FolderLayout(IMAGES, tuple(txts))
    if not tiffs:
        raise ImcReadError(f"{path}: folder holds no IMC image files "
                           f"({', '.join(_suffixes.ALL)})")
    planes = {p: tiff.tiff_planes(p) for p in tiffs}
    single = [p for p in tiffs if planes[p] == 1]
    stacks = [p for p in tiffs if planes[p] > 1]
    if single and stacks:
        odd, kind = (single, "single-channel") if len(single) <= len(stacks) else (stacks, "multi-channel")
        raise ImcReadError(
            f"{path}: mixes single-channel TIFFs ({len(single)}, read as the channels of one image) "
            f"and multi-channel stacks ({len(stacks)}, each an image); the odd {kind} files: "
            f"{_names(odd)}"
        )
    if stacks or (path / "images.csv").is_file():
        return FolderLayout(IMAGES, tuple(tiffs))
    return FolderLayout(CHANNELS, tuple(tiffs))


def _refuse_unreadable(folder: Path, entries: Sequence[Path]) -> None:
    """An entry named like an image that cannot be read (a broken or looping symlink, a FIFO,
    a folder, no permission) is an error: skipping it would read an image without a channel."""
    for p in entries:
        if not p.name.lower().endswith(_suffixes.ALL):
            continue
        try:
            mode = p.stat().st_mode  # follows symlinks: a dangling or looping one raises here
        except OSError as e:
            target = f" -> {os.readlink(p)}" if p.is_symlink() else ""
            raise ImcReadError(f"{folder}: cannot read {p.name}{target}: {e.strerror or e} "
                               f"(a broken or looping symlink?); remove it or fix it") from e
        if stat.S_ISDIR(mode):
            raise ImcReadError(f"{folder}: {p.name} is a folder named like an image file; "
                               f"rename or move it")
        if not stat.S_ISREG(mode):
            raise ImcReadError(f"{folder}: {p.name} is not a regular file (a FIFO, socket or device)")
        if not os.access(p, os.R_OK):
            raise ImcReadError(f"{folder}: {p.name} cannot be read (no read permission)")


def shared_prefix(stems: Sequence[str]) -> str:
    """The start every stem shares, up to a separator, and before any metal tag.

    ``["ROI1_115In_CD45", "ROI1_141Pr_CD3"]`` -> ``"ROI1_"``; empty for a single stem, or
    when removing it would leave a stem empty.
    """
    if len(stems) < 2:
        return ""
    prefix = os.path.commonprefix(list(stems))
    cut = max(prefix.rfind(c) for c in _SEPARATORS) + 1
    prefix = prefix[:cut]
    # never remove a metal: "Pr141_CD45_a", "Pr141_CD45_b" keep their "Pr141_"
    position = 0
    for token in prefix.split("_")[:-1]:
        if parse_metal(token):
            prefix = prefix[:position]
            break
        position += len(token) + 1
    if any(len(s) <= len(prefix) for s in stems):
        return ""
    return prefix


def channel_identities(stems: Sequence[str]) -> tuple[list[str | None], list[str | None], str]:
    """Metals and labels of the channels named by ``stems``, and the prefix removed from all."""
    prefix = shared_prefix(stems)
    pairs = [split_identity(stem[len(prefix):]) for stem in stems]
    return [m for m, _ in pairs], [lab for _, lab in pairs], prefix


def read_channel_folder(path: Path, files: Sequence[Path]) -> ImcImage:
    """One image from single-channel TIFFs, channel ``i`` from ``files[i]``.

    Channels are named steinbock-style (``Pr141_CD45``) from the file names, after removing
    a prefix every file shares (a ROI name, say), which the image's ``notes`` report.
    """
    planes = []
    for file in files:
        data, _ = tiff.load_tiff(file)
        if data.ndim == 3 and data.shape[0] == 1:
            data = data[0]
        if data.ndim != 2:
            raise ImcReadError(f"{file}: expected a single-channel image, got shape {data.shape}")
        if planes and data.shape != planes[0].shape:
            raise ImcReadError(
                f"{file}: shape {data.shape} differs from {files[0].name}'s {planes[0].shape}"
            )
        planes.append(data.astype(np.float32, copy=False))
    metals, labels, prefix = channel_identities([source_stem(f) for f in files])
    names = make_unique([steinbock_name(m, lab) or f"ch{i}" for i, (m, lab) in enumerate(zip(metals, labels))],
                        metals)
    image = build_image(np.stack(planes), path, metals=metals, labels=labels, names=names)
    if prefix:
        image.notes.append(f"{path}: removed the prefix {prefix!r} that every file name shares "
                           f"from the channel names")
    return image


def _read_file(file: Path) -> list[ImcImage]:
    name = file.name.lower()
    if name.endswith(_suffixes.MCD):
        return mcd.read_mcd_all(file)
    if name.endswith(_suffixes.TXT):
        return [mcd.read_txt(file)]
    return [tiff.read_tiff(file)]


def _identifiers(layout: FolderLayout) -> list[str]:
    if layout.kind == MCD:
        return [f"{source_stem(f)}/{a}" for f in layout.files for a in mcd.list_mcd_acquisitions(f)]
    return [source_stem(f) for f in layout.files]


def folder_acquisitions(path: Path) -> list[str]:
    """Identifiers of a folder's images: its own name for one image of channels, else one per
    file (the file name without suffix), or ``"<mcd file>/<acquisition>"``."""
    layout = folder_layout(path)
    if layout.kind == CHANNELS:
        return [path.name]
    return _identifiers(layout)


def read_folder(path: Path, acquisition: int | str | None = None) -> ImcImage:
    """One image of a folder: the first unless ``acquisition`` (index or identifier) says."""
    layout = folder_layout(path)
    if layout.kind == CHANNELS:
        if acquisition not in (None, 0, path.name):
            raise ImcReadError(f"{path}: a folder of single-channel TIFFs is one image "
                               f"({path.name!r}, index 0); got acquisition={acquisition!r}")
        return read_channel_folder(path, layout.files)
    idents = _identifiers(layout)
    if acquisition is None:
        index = 0
    elif isinstance(acquisition, int):
        if not 0 <= acquisition < len(idents):
            raise ImcReadError(f"{path}: acquisition index {acquisition} out of range; "
                               f"the folder holds {len(idents)} images")
        index = acquisition
    elif acquisition in idents:
        index = idents.index(acquisition)
    else:
        raise ImcReadError(f"{path}: no image {acquisition!r}; the folder holds {_names(idents)}")
    if layout.kind == MCD:
        stem, _, acq = idents[index].partition("/")
        file = next(f for f in layout.files if source_stem(f) == stem)
        return mcd.read_mcd(file, acq)
    return _read_file(layout.files[index])[0]


def read_folder_all(path: Path) -> list[ImcImage]:
    """Every image of a folder, in file (and acquisition) order."""
    layout = folder_layout(path)
    if layout.kind == CHANNELS:
        return [read_channel_folder(path, layout.files)]
    return [image for f in layout.files for image in _read_file(f)]
