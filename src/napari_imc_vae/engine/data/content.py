"""Is there anything in an image to learn from or measure? Checked before training and applying.

numpy only; both use cases call :func:`check_image_content`, so the message is the same in the CLI
and the widgets.
"""

from __future__ import annotations

import numpy as np

from napari_imc_vae.io import ImcImage

__all__ = ["ImageContentError", "check_image_content"]


class ImageContentError(ValueError):
    """An image holds nothing to learn from or measure: no finite pixel, or one constant value."""


def check_image_content(image: ImcImage, data: np.ndarray | None = None) -> None:
    """Fail now, naming the file, for an image with no finite pixel or a single value.

    Parameters
    ----------
    image : ImcImage
        Named in the message.
    data : array of shape (C, Y, X), optional
        The channels to check (e.g. those a model knows); default the whole image.

    Raises
    ------
    ImageContentError
    """
    values = image.data if data is None else data
    where = f"{image.name} ({image.source})" if image.source else image.name
    finite = np.isfinite(values)
    if not finite.any():
        raise ImageContentError(f"{where} has no finite pixel value (all NaN/Inf): nothing to learn "
                                f"from or measure")
    lo, hi = np.min(values, where=finite, initial=np.inf), np.max(values, where=finite, initial=-np.inf)
    if lo == hi:
        raise ImageContentError(f"{where} is constant (every finite pixel of every channel is {lo:g}): "
                                f"nothing to learn from or measure")
