"""TIFF readers: OME-TIFF, plain stacks with a panel, 2-D/multi-page TIFFs (folders: :mod:`.folder`).

Channel identity of one stack, in order of preference: the OME-XML channel names
(:mod:`~napari_imc_vae.io.ometiff`), a same-stem ``.csv`` or ``panel.csv`` beside the file
(:mod:`~napari_imc_vae.io.panel`), else ``ch0, ch1, ...``.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile

from napari_imc_vae.io._common import as_stack, build_image, check_file
from napari_imc_vae.io.image import ImcImage, ImcReadError, check_decoded_size
from napari_imc_vae.io.ometiff import parse_ome_channels
from napari_imc_vae.io.panel import PanelCountError, find_panel

_COLOUR = {tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.YCBCR, tifffile.PHOTOMETRIC.SEPARATED}


def _series_array(tf: tifffile.TiffFile, path: Path) -> np.ndarray:
    """Pixels of the file's image as (C, Y, X) or (Y, X), refusing colour images."""
    if not tf.series:
        raise ImcReadError(f"{path}: TIFF holds no image")
    series = tf.series
    planes = [s for s in series if len([n for n in s.shape if n != 1]) <= 2]
    if len(series) > 1 and not tf.is_ome and len(planes) == len(series):
        # Pages written one by one (one series each) are the channels of one stack.
        shapes = {s.shape for s in series}
        if len(shapes) > 1:
            raise ImcReadError(f"{path}: pages have different shapes {sorted(shapes)}")
        return np.stack([_one_series(tf, s, path).reshape(s.shape[-2:]) for s in series])
    return _one_series(tf, series[0], path)


def _one_series(tf: tifffile.TiffFile, series: tifffile.TiffPageSeries, path: Path) -> np.ndarray:
    page = series.keyframe
    axes = series.axes
    n_samples = series.shape[axes.index("S")] if "S" in axes else 1
    interleaved = axes.endswith("S") and n_samples in (3, 4)
    # Planar RGB with non-8-bit pixels is how tifffile tags any 3-plane stack by default:
    # those planes are channels. Interleaved samples and 8-bit colour are pictures.
    colour = page.photometric in _COLOUR and (
        page.photometric != tifffile.PHOTOMETRIC.RGB or series.dtype == np.uint8
    )
    if interleaved or colour:
        raise ImcReadError(
            f"{path}: RGB/colour image ({page.photometric.name}, {n_samples} samples per pixel); "
            "IMC readers expect one intensity per channel, shape (C, Y, X)"
        )
    check_decoded_size(path, series.shape, series.dtype)  # before decoding: compression can hide GBs
    data = series.asarray()
    if "S" in axes and data.ndim == 3 and n_samples > 1:
        # Extra non-colour samples (planar or interleaved) are channels.
        data = np.moveaxis(data, axes.index("S"), 0)
    return data


def _check_pages(tf: tifffile.TiffFile, path: Path) -> None:
    """Every strip or tile of every page inside the file and of a plausible size.

    tifffile zero-fills what a truncated file lacks and reads a missing strip as zeros; a
    silently blank channel is worse than an error.
    """
    size = tf.filehandle.size
    for i, page in enumerate(tf.pages):
        offsets, counts = page.dataoffsets, page.databytecounts
        if not offsets or not counts or len(offsets) != len(counts):
            raise ImcReadError(f"{path}: damaged TIFF, page {i} does not say where its pixels are")
        ends = [o + n for o, n in zip(offsets, counts)]
        if max(ends) > size:
            raise ImcReadError(
                f"{path}: truncated TIFF, page {i} needs {max(ends)} bytes, file has {size}"
            )
        if min(counts) == 0 or min(offsets) == 0:
            raise ImcReadError(f"{path}: damaged TIFF, page {i} has an empty strip or tile "
                               f"(it would read as zeros)")
        if page.compression == tifffile.COMPRESSION.NONE:
            needed = page.imagewidth * page.imagelength * page.samplesperpixel * page.bitspersample // 8
            if sum(counts) < needed:
                raise ImcReadError(f"{path}: damaged TIFF, page {i} holds {sum(counts)} bytes of pixels, "
                                   f"its {page.imagelength} x {page.imagewidth} image needs {needed}")


class TiffWarning(UserWarning):
    """Something tifffile noticed in a file that was still read; the message names the file."""


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # "<tifffile.TiffPages @8> invalid page offset 72352" -> "invalid page offset 72352"
        self.messages.append(re.sub(r"^<[^>]*>\s*", "", record.getMessage()))


@contextmanager
def tifffile_messages() -> Iterator[list[str]]:
    """Collect tifffile's log lines instead of letting them reach stderr as raw text.

    The caller puts them into its error message, or re-emits them as a :class:`TiffWarning`.
    """
    logger = logging.getLogger("tifffile")
    handler = _Collect()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _declared_planes(tf: tifffile.TiffFile) -> tuple[int, str] | None:
    """Planes the file's metadata says it holds, and which metadata says so; None if silent."""
    if tf.is_ome and tf.ome_metadata:
        sizes = re.findall(r"<(?:\w+:)?Pixels\b[^>]*>", tf.ome_metadata)
        total = 0
        for tag in sizes:
            dims = dict(re.findall(r'\b(Size[CZT])="(\d+)"', tag))
            if len(dims) == 3:
                total += int(dims["SizeC"]) * int(dims["SizeZ"]) * int(dims["SizeT"])
        if total:
            return total, "the OME-XML"
    if tf.is_shaped and tf.shaped_metadata:  # tifffile's own JSON description
        shape = tf.shaped_metadata[0].get("shape") or []
        if len(shape) > 2 and all(isinstance(n, int) for n in shape):
            return int(np.prod(shape[:-2])), "the tifffile metadata"
    if tf.is_imagej:
        meta = tf.imagej_metadata or {}
        images = meta.get("images") or (
            meta.get("channels", 1) * meta.get("slices", 1) * meta.get("frames", 1)
        )
        if isinstance(images, int) and images > 0:
            return images, "the ImageJ metadata"
    return None


#: What tifffile logs about a file it could still parse that does not change what is read.
_HARMLESS = ("coercing invalid ASCII",)


def _check_structure(tf: tifffile.TiffFile, path: Path, messages: list[str]) -> None:
    """Refuse a file whose structure tifffile had to skip over or that disagrees with itself.

    A broken page chain (a cut file), a tag that could not be read, pages whose strips lie
    past the end, an OME-XML whose planes differ from the file's: tifffile reads what it can
    and logs the rest, which would give fewer channels (1 instead of 5) or zero-filled ones.
    """
    found = sum(int(getattr(page, "samplesperpixel", 1)) for page in tf.pages)  # walks the chain
    declared = _declared_planes(tf)
    damage = [m for m in messages if not any(h in m for h in _HARMLESS)]
    said = "; ".join(dict.fromkeys(messages))
    if declared is not None and found < declared[0] and damage:
        raise ImcReadError(
            f"{path}: truncated TIFF, {declared[1]} declares {declared[0]} planes but the file "
            f"holds {found} (tifffile: {said})"
        )
    if declared is not None and declared[1] == "the OME-XML" and declared[0] != found \
            and not re.search(r"<(?:\w+:)?UUID\b[^>]*FileName=", tf.ome_metadata or ""):
        raise ImcReadError(
            f"{path}: the OME-XML declares {declared[0]} planes (SizeC x SizeZ x SizeT) but the file "
            f"holds {found}: refusing to guess which planes are the channels"
        )
    if damage:
        _refuse_damage(path, found, said)
    _check_pages(tf, path)


def _refuse_damage(path: Path, found: int, said: str) -> None:
    if "page offset" in said or "offset to page" in said:
        try:
            find_panel(path, found)
        except PanelCountError as e:
            if e.listed > e.found:  # the panel is right, the file was cut short
                raise ImcReadError(f"{path}: truncated TIFF, the panel declares {e.listed} channels "
                                   f"but the file holds {e.found} (tifffile: {said})") from e
        except ImcReadError:
            pass  # an unreadable panel: the damage below is the news
        raise ImcReadError(f"{path}: truncated or damaged TIFF, its chain of pages breaks after page "
                           f"{found} (a cut file loses channels) (tifffile: {said})")
    raise ImcReadError(f"{path}: damaged TIFF, tifffile had to skip parts of it, so its channels "
                       f"cannot be trusted (tifffile: {said})")


def tiff_planes(path: Path) -> int:
    """Planes (channels) of a TIFF without reading its pixels: 1 for a single-channel file.

    Raises
    ------
    ImcReadError
        For files that cannot be opened, and stacks with fewer pages than their
        metadata declares.
    """
    check_file(path)
    try:
        with tifffile_messages() as messages, tifffile.TiffFile(path) as tf:
            _check_structure(tf, path, messages)
            if not tf.series:
                raise ImcReadError(f"{path}: TIFF holds no image")
            series = tf.series
            if len(series) > 1 and not tf.is_ome:
                return len(series)
            shape, axes = series[0].shape, series[0].axes
            return int(np.prod([n for n, a in zip(shape, axes) if a not in "YX"], dtype=np.int64))
    except ImcReadError:
        raise
    except Exception as e:  # tifffile signals corruption through many exception types
        raise ImcReadError(f"{path}: not a readable TIFF (truncated or corrupt?): {e}") from e


def _load(path: Path) -> tuple[np.ndarray, str | None, list[str]]:
    """:func:`load_tiff`, plus tifffile's log lines about the file (not yet warned)."""
    check_file(path)
    try:
        with tifffile_messages() as messages, tifffile.TiffFile(path) as tf:
            _check_structure(tf, path, messages)
            data = _series_array(tf, path)
            ome_xml = tf.ome_metadata if tf.is_ome else None
    except ImcReadError as e:
        if messages and "tifffile:" not in str(e):
            raise ImcReadError(f"{e} (tifffile: {'; '.join(dict.fromkeys(messages))})") from e
        raise
    except Exception as e:  # tifffile signals corruption through many exception types
        said = f"; tifffile: {'; '.join(dict.fromkeys(messages))}" if messages else ""
        raise ImcReadError(f"{path}: not a readable TIFF (truncated or corrupt?): {e}{said}") from e
    return data, ome_xml, list(dict.fromkeys(messages))


def _warn(path: Path, messages: list[str]) -> None:
    for message in messages:
        warnings.warn(f"{path}: tifffile: {message}", TiffWarning, stacklevel=4)


def load_tiff(path: Path) -> tuple[np.ndarray, str | None]:
    """Pixels and OME-XML (or None) of a TIFF file; library errors become ImcReadError.

    Parameters
    ----------
    path : Path
        A ``.tif``/``.tiff``/``.ome.tiff`` file.

    Returns
    -------
    data : ndarray
        As stored, usually of shape (C, Y, X) or (Y, X).
    ome_xml : str or None
        The OME-XML document when the file is an OME-TIFF.

    Raises
    ------
    ImcReadError
        Missing, empty, truncated or corrupt files (also stacks with fewer pages than their
        OME-XML or ImageJ metadata declare) and colour images. What tifffile logs about a
        file it still reads becomes a :class:`TiffWarning`.
    """
    data, ome_xml, messages = _load(path)
    _warn(path, messages)
    return data, ome_xml


def read_tiff(path: Path) -> ImcImage:
    """Read a TIFF or OME-TIFF stack with its channel names.

    Parameters
    ----------
    path : Path
        The file. The OME-XML is used whenever present, whatever the suffix.

    Returns
    -------
    ImcImage
        ``data`` of shape (C, Y, X); a 2-D image is one channel. Pixel size from
        ``PhysicalSizeX`` when the OME-XML gives it, else 1.0 µm (IMC's native size).

    Raises
    ------
    ImcReadError
        Unreadable files, colour images, data that is not 2-D/3-D, and panel files whose
        row count differs from the stack's.
    """
    data, ome_xml, messages = _load(path)
    data = as_stack(data, path)
    n = data.shape[0]
    try:
        image = _identify(data, path, ome_xml)
    except PanelCountError as e:
        if messages and e.listed > e.found:
            # tifffile found the page chain broken: the file was cut short, the panel is right
            raise ImcReadError(
                f"{path}: truncated TIFF, the panel declares {e.listed} channels but the file "
                f"holds {e.found} (tifffile: {'; '.join(messages)})"
            ) from e
        raise
    _warn(path, messages)
    return image


def _identify(data: np.ndarray, path: Path, ome_xml: str | None) -> ImcImage:
    n = data.shape[0]
    ome = parse_ome_channels(ome_xml, n) if ome_xml else None
    if ome is not None:
        return build_image(
            data, path, metals=ome.metals, labels=ome.labels, pixel_size_um=ome.pixel_size_um or 1.0
        )
    panel = find_panel(path, n)
    if panel is not None:
        return build_image(data, path, metals=panel.metals, labels=panel.labels)
    return build_image(
        data, path, metals=[None] * n, labels=[None] * n, names=[f"ch{i}" for i in range(n)]
    )
