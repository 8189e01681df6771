"""Segmentation masks: one label image per acquisition (0 = background, 1 … n = cells).

Masks come from steinbock (``masks/``, one ``<image>.tiff`` per ``img/<image>.tiff``),
Mesmer, Cellpose or any tool writing a uint16/uint32 TIFF; the napari Labels layer gives
the same array. A mask belongs to its image by file name: ``masks/<name>.tiff`` (or
``.tif``, ``.ome.tiff``) for the image whose :attr:`~napari_imc_vae.io.ImcImage.name` is
``<name>``. Every check here runs before any work, so that a missing mask or one of
another shape stops the command before a single output is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["MaskError", "MASK_SUFFIXES", "as_labels", "read_mask", "mask_shape", "match_masks", "check_mask_shape"]

#: Suffixes a mask file may have, tried in this order.
MASK_SUFFIXES = (".tiff", ".tif", ".ome.tiff", ".ome.tif")


class MaskError(ValueError):
    """A mask is missing, unreadable or does not fit its image; the message names both."""


def as_labels(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    """``mask`` as a 2-D integer label image, or a :class:`MaskError` saying what it is instead.

    Leading axes of length 1 (a (1, Y, X) page stack) are dropped. Integer dtypes of any
    width are accepted (steinbock writes uint16, Cellpose uint16/uint32); floats, booleans
    and negative labels are refused: a probability map or a binary mask is not a segmentation.
    """
    arr = np.asarray(mask)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise MaskError(f"{name}: a mask must be a 2-D label image (Y, X), got shape {arr.shape}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise MaskError(f"{name}: a mask must hold integer cell labels (uint16/uint32, 0 = background), "
                        f"got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.signedinteger) and arr.size and arr.min() < 0:
        raise MaskError(f"{name}: cell labels must be >= 0 (0 = background), got {int(arr.min())}")
    return arr


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a label image (Y, X) from a TIFF.

    Raises
    ------
    MaskError
        The file cannot be read, or is not a 2-D integer label image (see :func:`as_labels`).
    """
    import tifffile

    path = Path(path)
    try:
        data = tifffile.imread(path)
    except (OSError, ValueError, tifffile.TiffFileError) as e:
        raise MaskError(f"cannot read the mask {path}: {e}") from e
    return as_labels(data, str(path))


def mask_shape(path: str | os.PathLike) -> tuple[int, int]:
    """(Y, X) of a mask file from its header alone (no pixels read)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            shape = tuple(int(s) for s in tif.series[0].shape if s != 1) if tif.series else ()
    except (OSError, ValueError, tifffile.TiffFileError) as e:
        raise MaskError(f"cannot read the mask {path}: {e}") from e
    if len(shape) != 2:
        raise MaskError(f"{path}: a mask must be a 2-D label image (Y, X), got shape {shape}")
    return shape  # type: ignore[return-value]


def check_mask_shape(mask_shape_yx: Sequence[int], image_shape_yx: Sequence[int], *, mask_name: str,
                     image_name: str) -> None:
    """Raise :class:`MaskError` naming both when a mask is not the size of its image."""
    m, i = tuple(int(s) for s in mask_shape_yx), tuple(int(s) for s in image_shape_yx)
    if m != i:
        raise MaskError(f"the mask {mask_name} is {m[0]}×{m[1]} px but the image {image_name} is "
                        f"{i[0]}×{i[1]} px: a mask must have its image's height and width")


def _mask_folder(folder: Path) -> Path:
    """A steinbock project folder stands for its ``masks/``."""
    inner = folder / "masks"
    return inner if inner.is_dir() and not any(folder.glob("*.tif*")) else folder


def match_masks(image_names: Sequence[str], masks: str | os.PathLike) -> dict[str, Path]:
    """The mask file of each image.

    Parameters
    ----------
    image_names : sequence of str
        :attr:`~napari_imc_vae.io.ImcImage.name` of each image.
    masks : path-like
        One mask file (for exactly one image), or a folder of masks named like the images
        (steinbock's ``masks/``, or the steinbock project folder holding it).

    Returns
    -------
    dict of str to Path

    Raises
    ------
    MaskError
        The path does not exist; one file for several images; an image without a mask in
        the folder (naming the image, the folder and the file names tried).
    """
    path = Path(masks)
    if not path.exists():
        raise MaskError(f"masks: {path} does not exist (give a mask file or a folder of masks)")
    names = list(image_names)
    if path.is_file():
        if len(names) != 1:
            raise MaskError(f"masks: one mask file {path} for {len(names)} images ({', '.join(names[:4])}"
                            f"{', ...' if len(names) > 4 else ''}); give a folder of masks named like the images")
        return {names[0]: path}
    folder = _mask_folder(path)
    found: dict[str, Path] = {}
    for name in names:
        candidates = [folder / f"{name}{suffix}" for suffix in MASK_SUFFIXES]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            tried = ", ".join(c.name for c in candidates[:2])
            raise MaskError(f"the image {name} has no mask in {folder} (looked for {tried}); "
                            "masks are matched to images by file name")
        found[name] = hit
    return found
