"""The normalized image, band by band: :func:`normalized_rows` reads and normalizes only the rows
asked for (with the halo a 3×3 hot-pixel filter needs), reusing the rows the previous band
already had; :func:`~napari_imc_vae.engine.apply.inference.reconstruct_image` feeds its tiles from
it, and :func:`~napari_imc_vae.engine.apply.use_case.assess_image` its quality patches.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["NormalizedRows", "normalized_rows"]

# rows read beyond a band on each side before normalizing, so a 3×3 neighbourhood step
# (the hot-pixel filter) sees the same neighbours as on the whole image
_NORMALIZER_HALO = 1


class NormalizedRows:
    """Normalized image rows on demand, reusing the rows the previous band already had.

    With ``as_read``, :meth:`get` also gives the rows normalized without the hot-pixel
    filter and where it replaced pixels (:meth:`Normalizer.normalize_as_read`).
    """

    def __init__(self, image, normalizer, as_read: bool = False) -> None:
        self.image, self.normalizer = image, normalizer
        self.as_read = bool(as_read) and hasattr(normalizer, "normalize_as_read")
        self.start, self.block = 0, None

    def _compute(self, lo: int, hi: int) -> tuple[np.ndarray, ...]:
        n = self.image.shape[1]
        a, b = max(lo - _NORMALIZER_HALO, 0), min(hi + _NORMALIZER_HALO, n)
        raw = np.asarray(self.image[:, a:b], dtype=np.float32)
        if self.as_read:
            parts = self.normalizer.normalize_as_read(raw)
        else:
            parts = (raw if self.normalizer is None else np.asarray(self.normalizer(raw), dtype=np.float32),)
        return tuple(part[:, lo - a : hi - a] for part in parts)

    def get_all(self, lo: int, hi: int) -> tuple[np.ndarray, ...]:
        """Rows ``[lo, hi)``: (normalized,) or, with ``as_read``, (normalized, as read, replaced)."""
        blk = self.block
        if blk is not None and self.start <= lo and hi <= self.start + blk[0].shape[1]:
            return tuple(part[:, lo - self.start : hi - self.start] for part in blk)
        if blk is not None and self.start <= lo < self.start + blk[0].shape[1]:
            end = self.start + blk[0].shape[1]
            blk = tuple(np.concatenate([old[:, lo - self.start :], new], axis=1)
                        for old, new in zip(blk, self._compute(end, hi)))
        else:
            blk = self._compute(lo, hi)
        self.start, self.block = lo, blk
        return blk

    def get(self, lo: int, hi: int) -> np.ndarray:
        """Normalized rows ``[lo, hi)`` as a (C, hi - lo, X) float32 array."""
        return self.get_all(lo, hi)[0]


def normalized_rows(image, normalizer) -> Callable[[int, int], np.ndarray]:
    """``rows(lo, hi)``: rows ``[lo, hi)`` of ``normalizer(image)`` as (C, hi - lo, X) float32.

    Reads and normalizes only those rows (and one more on each side for the hot-pixel
    filter); asking for increasing, overlapping ranges reuses the rows asked for before.
    Equal to the same rows of ``normalizer(image)`` on the whole image.
    """
    return NormalizedRows(image, normalizer).get

