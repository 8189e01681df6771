"""Vendor files through readimc: ``.mcd`` (several acquisitions) and ``.txt`` (one).

readimc is the optional ``mcd`` extra and is imported only when such a file is read, so
that the rest of the package works without it (and without pandas/imageio, which readimc
needs but does not declare).

Acquisitions of an ``.mcd`` are identified by their description as the acquisition software
shows it (``"ROI_001"``); a description that is empty or repeated within the file becomes
``"<description>_<id>"`` (``"ROI_001_1"``, the suffix readimc and steinbock give ``.txt``
files), with ``id`` readimc's acquisition id.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from napari_imc_vae.io._common import build_image, check_file, display_names
from napari_imc_vae.io.image import ImcImage, ImcReadError, check_decoded_size, source_stem
from napari_imc_vae.io.panel import labels_by_metal

INSTALL_HINT = 'pip install "napari-imc-vae[mcd]"'


def _readimc(path: Path) -> ModuleType:
    try:
        import readimc
    except ImportError as e:
        raise ImcReadError(
            f"{path}: reading .mcd/.txt files needs readimc (with pandas and imageio), "
            f"the 'mcd' extra: {INSTALL_HINT} ({e})"
        ) from e
    return readimc


def _names(path: Path, metals: list[str], labels: list[str]) -> list[str]:
    # A panel.csv beside the raw files names targets better than the acquisition labels do.
    by_metal = labels_by_metal(path.parent)
    return display_names(metals, [by_metal.get(m, lab) for m, lab in zip(metals, labels)])


def _image(path: Path, acq: Any, data: Any, ident: str | None) -> ImcImage:
    metals = [str(m) for m in acq.channel_names]  # readimc's names are metal+mass
    labels = [str(lab) for lab in acq.channel_labels]
    pixel_size = float(getattr(acq, "pixel_size_x_um", 1.0) or 1.0)
    return build_image(
        data,
        path,
        metals=metals,
        labels=labels,
        names=_names(path, metals, labels),
        pixel_size_um=pixel_size,
        acquisition=ident,
    )


def _identifiers(acquisitions: list[Any]) -> list[str]:
    descriptions = [str(a.description or "").strip() for a in acquisitions]
    return [
        d if d and descriptions.count(d) == 1 else f"{d or 'acquisition'}_{a.id}"
        for d, a in zip(descriptions, acquisitions)
    ]


def _select(path: Path, idents: list[str], acquisition: int | str | None) -> int:
    if acquisition is None:
        return 0
    if isinstance(acquisition, bool) or not isinstance(acquisition, (int, str)):
        raise TypeError(
            f"acquisition must be an int index or an identifier str, got {acquisition!r}"
        )
    if isinstance(acquisition, int):
        if 0 <= acquisition < len(idents):
            return acquisition
        raise ImcReadError(
            f"{path}: acquisition index {acquisition} out of range; "
            f"the file has {len(idents)} acquisitions {idents}"
        )
    if acquisition in idents:
        return idents.index(acquisition)
    raise ImcReadError(f"{path}: no acquisition {acquisition!r}; the file has {idents}")


class _OpenMcd:
    """MCDFile opened with library errors turned into ImcReadError."""

    def __init__(self, path: Path) -> None:
        check_file(path)
        self.path = path
        self._file = _readimc(path).MCDFile(path)

    def __enter__(self) -> tuple[Any, list[Any], list[str]]:
        try:
            self._file.open()
            acquisitions = [a for slide in self._file.slides for a in slide.acquisitions]
        except Exception as e:  # readimc raises OSError, ValueError, XML and struct errors
            self._file.close()
            raise ImcReadError(
                f"{self.path}: not a readable MCD file (truncated or corrupt?): {e}"
            ) from e
        if not acquisitions:
            self._file.close()
            raise ImcReadError(f"{self.path}: MCD file holds no acquisitions")
        return self._file, acquisitions, _identifiers(acquisitions)

    def __exit__(self, *exc: object) -> None:
        self._file.close()


def _read_one(path: Path, f: Any, acq: Any, ident: str) -> ImcImage:
    import numpy as np

    try:  # the XML's size, before readimc allocates it
        shape = (len(acq.channel_names), int(acq.height_px), int(acq.width_px))
    except (AttributeError, TypeError, ValueError):
        shape = None
    if shape is not None:
        check_decoded_size(f"{path} (acquisition {ident!r})", shape, np.float32)
    try:
        data = f.read_acquisition(acq)
    except Exception as e:
        raise ImcReadError(
            f"{path}: acquisition {ident!r} cannot be read (truncated or corrupt?): {e}"
        ) from e
    return _image(path, acq, data, ident)


def list_mcd_acquisitions(path: Path) -> list[str]:
    """Identifiers of the acquisitions in an ``.mcd`` file, in file order (see module doc)."""
    with _OpenMcd(path) as (_, _, idents):
        return idents


def read_mcd(path: Path, acquisition: int | str | None = None) -> ImcImage:
    """Read one acquisition of an ``.mcd`` file.

    Parameters
    ----------
    path : Path
        The ``.mcd`` file.
    acquisition : int or str, optional
        0-based index or identifier from :func:`list_mcd_acquisitions`; default the first.

    Returns
    -------
    ImcImage
        ``data`` of shape (C, Y, X); ``metals`` such as ``"Pr141"``; ``labels`` as the
        acquisition software wrote them; ``acquisition`` the identifier.

    Raises
    ------
    ImcReadError
        readimc missing, unreadable file, unknown acquisition.
    """
    with _OpenMcd(path) as (f, acquisitions, idents):
        i = _select(path, idents, acquisition)
        return _read_one(path, f, acquisitions[i], idents[i])


def read_mcd_all(path: Path) -> list[ImcImage]:
    """Every acquisition of an ``.mcd`` file, in file order."""
    with _OpenMcd(path) as (f, acquisitions, idents):
        return [_read_one(path, f, a, i) for a, i in zip(acquisitions, idents)]


def read_txt(path: Path) -> ImcImage:
    """Read an IMC ``.txt`` file (one acquisition).

    Parameters
    ----------
    path : Path
        The ``.txt`` file written by the acquisition software.

    Returns
    -------
    ImcImage
        ``data`` of shape (C, Y, X); pixel size 1.0 µm (the file does not record it).

    Raises
    ------
    ImcReadError
        readimc missing, or a truncated/corrupt file: a row with more or fewer values than
        the header, pixels out of raster order, an incomplete last image row, or a size other
        than the ``.mcd`` beside it records for this acquisition.
    """
    check_file(path)
    readimc = _readimc(path)
    with open(path, "rb") as fh:
        fh.seek(-1, 2)
        if fh.read(1) not in (b"\n", b"\r"):
            # The acquisition software ends every row with a newline; a cut row would
            # otherwise be read as a short image row padded with NaN or zeros.
            raise ImcReadError(f"{path}: truncated IMC .txt file (last line is incomplete)")
    f = readimc.TXTFile(path)
    try:
        f.open()  # not `with`: a failing open() would leave the handle to the GC
        table = _txt_table(path, f.num_channels)
    except ImcReadError:
        raise
    except Exception as e:  # pandas parser, decode and readimc consistency errors
        raise ImcReadError(
            f"{path}: not a readable IMC .txt file (truncated or corrupt?): {e}"
        ) from e
    finally:
        f.close()
    data = _txt_pixels(path, table)
    return _image(path, f, data, None)


def _txt_table(path: Path, n_channels: int):
    """The table of a ``.txt`` export, every row with as many values as the header."""
    import numpy as np
    import pandas as pd

    _check_field_counts(path)
    # index_col=False: a first row with one value too many must not become the row labels
    table = pd.read_table(path, dtype=np.float32, index_col=False)
    values = table.to_numpy(dtype=np.float32)
    if values.shape[1] != n_channels + 6:
        raise ImcReadError(f"{path}: the header names {values.shape[1]} columns, expected 6 + {n_channels} channels")
    missing = np.flatnonzero(np.isnan(values).any(axis=1))
    if missing.size:
        raise ImcReadError(f"{path}: line {int(missing[0]) + 2} has fewer values than the header's "
                           f"{values.shape[1]} columns (or an empty value)")
    return values


def _check_field_counts(path: Path, chunk: int = 1 << 24) -> None:
    """Every line has as many tab-separated values as the header (pandas would fill a short
    row with NaN and drop the extra values of a long one), counted chunk by chunk."""
    import numpy as np

    expected, line, carry = None, 0, 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            buf = np.frombuffer(block, np.uint8)
            tabs = np.cumsum(buf == 9, dtype=np.int64)
            ends = np.flatnonzero(buf == 10)
            if not len(ends):
                carry += int(tabs[-1]) if len(tabs) else 0
                continue
            at_ends = tabs[ends]
            counts = np.diff(at_ends, prepend=0)
            counts[0] += carry
            carry = int(tabs[-1] - at_ends[-1])
            if expected is None:
                expected = int(counts[0])
            wrong = np.flatnonzero(counts != expected)
            if wrong.size:
                n = int(counts[wrong[0]]) + 1
                raise ImcReadError(f"{path}: line {line + int(wrong[0]) + 1} has {n} values, the header "
                                   f"{expected + 1} columns: the rows disagree with the header")
            line += len(ends)


def _txt_pixels(path: Path, values) -> Any:
    """(C, Y, X) from the table, refusing rows that are not one complete raster of the image."""
    import numpy as np

    if len(values) == 0:
        raise ImcReadError(f"{path}: IMC .txt file holds no pixel rows")
    x, y = values[:, 3], values[:, 4]
    if (x < 0).any() or (y < 0).any() or (x != np.round(x)).any() or (y != np.round(y)).any():
        raise ImcReadError(f"{path}: X and Y must be whole numbers >= 0")
    x, y = x.astype(np.int64), y.astype(np.int64)
    width, height = int(x.max()) + 1, int(y.max()) + 1
    n = len(values)
    if n != width * height and n == (height - 1) * width + int(x[-1]) + 1:
        raise ImcReadError(f"{path}: truncated IMC .txt file, the last image row has {int(x[-1]) + 1} of "
                           f"{width} pixels")
    index = np.arange(n)
    wrong = np.flatnonzero((x != index % width) | (y != index // width))
    if n != width * height or wrong.size:
        where = f"line {int(wrong[0]) + 2}" if wrong.size else f"{n} rows"
        raise ImcReadError(f"{path}: the pixel rows are not one {width} x {height} image in raster order "
                           f"({where}); the file is damaged")
    _check_against_mcd(path, width, height)
    return np.ascontiguousarray(values[:, 6:].T.reshape(-1, height, width))


def _check_against_mcd(path: Path, width: int, height: int) -> None:
    """A ``.txt`` cut at an image-row end looks complete; the ``.mcd`` beside it knows the size.

    The acquisition software names the export ``<mcd stem>_<description>_<id>.txt``.
    """
    stem, _, ident = source_stem(path).rpartition("_")
    if not ident.isdigit():
        return
    for mcd_file in path.parent.glob("*.mcd"):
        if not stem.startswith(source_stem(mcd_file) + "_"):
            continue
        try:
            with _OpenMcd(mcd_file) as (_, acquisitions, _):
                sizes = {str(a.id): (a.width_px, a.height_px) for a in acquisitions}
        except (ImcReadError, AttributeError):
            return  # the .mcd cannot tell; the .txt stands on its own
        if ident in sizes and sizes[ident] != (width, height):
            w, h = sizes[ident]
            raise ImcReadError(f"{path}: holds a {width} x {height} image but {mcd_file.name} records "
                               f"acquisition {ident} as {w} x {h}: the .txt file is truncated or damaged")
        return
