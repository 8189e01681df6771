"""The quality report's patches: Gaussian smoothing and a stride grid cut band by band.

:func:`gaussian_smooth` gives the smoothed target (σ = 1 px) the report measures against, next
to the patches themselves; :class:`GridPatches` cuts both from a normalized image as its rows
arrive (a whole-image reconstruction's ``on_rows``), holding only a band of rows at a time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from napari_imc_vae.engine.apply.tiling import reflect_index

__all__ = ["GridPatches", "gaussian_smooth", "smoothing_radius"]


def smoothing_radius(sigma: float = 1.0, truncate: float = 4.0) -> int:
    """Rows (and columns) on each side that one output pixel of :func:`gaussian_smooth` reads."""
    return max(1, int(truncate * sigma + 0.5))


def gaussian_smooth(x, sigma: float = 1.0, truncate: float = 4.0, *,
                    rows: tuple[int, int] | None = None, dtype: torch.dtype = torch.float64) -> np.ndarray:
    """Gaussian blur over the last two axes, reflecting at the borders, NaN-aware.

    Smooth the whole image before cutting patches where you can (pass those patches
    as ``smooth_target`` to :func:`evaluate`, or let :class:`GridPatches` do it band by
    band); per patch, the reflection at the patch border slightly over-weights edge
    pixels. NaN pixels are left out of the weighted mean around them and stay NaN.

    Parameters
    ----------
    x : array of shape (..., Y, X)
    sigma : float
        Standard deviation in pixels (> 0).
    truncate : float
        Kernel radius in standard deviations.
    rows : (int, int), optional
        Only the rows ``[start, stop)`` (second-to-last axis) of the result, computed from
        the rows within :func:`smoothing_radius` of them: a band of an image holding that
        many more rows on each side (or reaching the image's border) gives exactly the
        whole image's result for those rows.
    dtype : torch.dtype
        Arithmetic precision: float64 (default) for data of any range, such as raw counts;
        float32 suffices for normalized data and takes half the time and memory.

    Returns
    -------
    ndarray of the same shape (``stop - start`` rows with ``rows``), float32
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    from scipy import ndimage  # 3× faster than our own separable convolution (docs/benchmarks.md)

    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    t = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if t.ndim < 2:
        raise ValueError(f"x must have at least 2 dimensions (..., Y, X), got shape {tuple(t.shape)}")
    y0, y1 = (0, t.shape[-2]) if rows is None else (int(rows[0]), int(rows[1]))
    if not 0 <= y0 < y1 <= t.shape[-2]:
        raise ValueError(f"rows must be (start, stop) with 0 <= start < stop <= {t.shape[-2]}, got {rows}")
    r = smoothing_radius(sigma, truncate)
    if rows is not None:  # the rows within r of the band, reflected at the image's borders
        t = t[..., reflect_index(np.arange(y0 - r, y1 + r), t.shape[-2]), :]
    t = t.astype(np_dtype, copy=False)
    valid = np.isfinite(t)
    everywhere = bool(valid.all())  # the usual case: the weights sum to 1 at every pixel
    # scipy's "mirror" (d c b | a b c d) is tiling.reflect_index's reflection
    smooth = functools.partial(ndimage.gaussian_filter, sigma=sigma, axes=(-2, -1), mode="mirror", radius=r)
    num = smooth(t if everywhere else np.where(valid, t, 0))
    if not everywhere:
        num = np.where(valid, num / np.maximum(smooth(valid.astype(np_dtype)), np.finfo(np_dtype).tiny), np.nan)
    if rows is not None:
        num = num[..., r : r + y1 - y0, :]
    return num.astype(np.float32, copy=False)


@dataclass(frozen=True)
class _Band:
    """Patch rows ``[lo, hi)`` and the rows ``[a, b)`` smoothing them reads; positions ``[first, last)``."""

    a: int
    lo: int
    hi: int
    b: int
    first: int
    last: int


class GridPatches:
    """Patches on a stride grid of a normalized image, and the same patches of it smoothed.

    The grid holds a ``patch`` × ``patch`` patch at every multiple of ``stride`` (in Y and X)
    where one fits; when there are more than ``cap``, at most ``cap`` of them: evenly spaced
    rows of the grid, each with evenly spaced patches (whole rows where they fit), so that only
    those rows of the image are held and smoothed. The patches are cut band by band as the image's rows arrive: only the
    rows they need, plus :func:`smoothing_radius` rows on each side, are held and smoothed
    (in float32), and what comes out equals cutting them from the whole image and from
    ``gaussian_smooth(image)`` (the smoothed ones up to float32 rounding, ~1e-6 on
    normalized data).

    Feed rows in increasing order with :meth:`add` (every row, as a reconstruction's
    ``on_rows`` gives them, or only the :attr:`row_ranges`), or pull them with :meth:`read`;
    then :meth:`result` gives the patches.

    Parameters
    ----------
    shape : tuple of int
        ``(C, Y, X)`` of the image, at least ``patch`` in Y and X.
    patch, stride : int
    cap : int, optional
        At most this many patches.
    sigma : float
        Of the smoothing (see :func:`gaussian_smooth`).
    band_values : int
        About how many values of image rows one band may hold (memory bound).
    """

    def __init__(self, shape, patch: int, stride: int, *, cap: int | None = None, sigma: float = 1.0,
                 band_values: int = 1 << 21) -> None:
        c, h, w = (int(n) for n in shape)
        if h < patch or w < patch or patch < 1 or stride < 1:
            raise ValueError(f"a {h}×{w} image holds no {patch}×{patch} patch at stride {stride}")
        self.shape, self.patch, self.stride, self.sigma = (c, h, w), int(patch), int(stride), float(sigma)
        ys, xs = np.arange(0, h - patch + 1, stride), np.arange(0, w - patch + 1, stride)
        if cap is not None and ys.size * xs.size > cap:
            n_rows = min(ys.size, max(1, cap // xs.size))
            ys = ys[np.unique(np.linspace(0, ys.size - 1, n_rows).round().astype(int))]
            xs = xs[np.unique(np.linspace(0, xs.size - 1, min(xs.size, cap // ys.size)).round().astype(int))]
        yy, xx = (a.ravel() for a in np.meshgrid(ys, xs, indexing="ij"))
        self._yy, self._xx = yy, xx
        self.patches = np.empty((len(yy), c, patch, patch), dtype=np.float32)
        self.smooth = np.empty_like(self.patches)
        self._bands = self._plan(np.unique(yy), max(1, band_values // (c * w)))
        self._next = 0  # next band to cut
        self._buf, self._start = np.empty((c, 0, w), np.float32), 0  # rows [start, start + len)

    def _plan(self, needed: np.ndarray, max_rows: int) -> list[_Band]:
        """Bands of patch rows: a new one where the rows grow too many or a gap opens."""
        p, r, h = self.patch, smoothing_radius(self.sigma), self.shape[1]
        bands, first = [], 0
        for i in range(1, len(needed) + 1):
            if i < len(needed) and needed[i] - needed[i - 1] <= p + 2 * r \
                    and needed[i] + p - needed[first] <= max_rows:
                continue
            lo, hi = int(needed[first]), int(needed[i - 1]) + p
            bands.append(_Band(max(lo - r, 0), lo, hi, min(hi + r, h),
                               int(np.searchsorted(self._yy, lo, "left")),
                               int(np.searchsorted(self._yy, needed[i - 1], "right"))))
            first = i
        return bands

    @property
    def origins(self) -> tuple[np.ndarray, np.ndarray]:
        """Top-left image pixel ``(y, x)`` of every patch, in the order of :meth:`result`."""
        return self._yy, self._xx

    @property
    def row_ranges(self) -> list[tuple[int, int]]:
        """Disjoint, increasing ``(start, stop)`` row ranges, about a band each: the rows needed."""
        out, end = [], 0
        for band in self._bands:
            start = max(band.a, end)
            if band.b > start:
                out.append((start, band.b))
                end = band.b
        return out

    @property
    def complete(self) -> bool:
        return self._next == len(self._bands)

    def add(self, start: int, rows: np.ndarray) -> None:
        """Take the image's rows ``[start, start + rows.shape[1])``, (C, n, X) normalized.

        Rows must come in increasing order; rows no patch needs may be left out.
        """
        end = self._start + self._buf.shape[1]
        if start < end:
            raise ValueError(f"rows must come in increasing order: got row {start} after row {end - 1}")
        if start > end and not self.complete and self._bands[self._next].a < start:
            raise ValueError(f"rows {max(self._bands[self._next].a, end)}…{start - 1} were needed but not given")
        rows = np.asarray(rows, dtype=np.float32)
        if start == end:
            self._buf = np.concatenate([self._buf, rows], axis=1)
        else:  # rows end…start-1 are not needed
            self._buf, self._start = rows.copy(), start
        end = self._start + self._buf.shape[1]
        while not self.complete and self._bands[self._next].b <= end:
            band = self._bands[self._next]
            self._cut(band, self._buf[:, band.a - self._start : band.b - self._start])
            self._next += 1
        keep = min(self._bands[self._next].a, end) if not self.complete else end  # rows later bands need
        if keep > self._start:
            self._buf = self._buf[:, keep - self._start :].copy()
            self._start = keep

    def read(self, rows) -> None:
        """Pull the :attr:`row_ranges` from ``rows(start, stop)`` → (C, stop - start, X) normalized."""
        for start, stop in self.row_ranges:
            self.add(start, rows(start, stop))

    def _cut(self, band: _Band, block: np.ndarray) -> None:
        lo, hi, p = band.lo - band.a, band.hi - band.a, self.patch
        smooth = gaussian_smooth(block, self.sigma, rows=(lo, hi), dtype=torch.float32)
        where = slice(band.first, band.last)
        ys, xs = self._yy[where] - band.lo, self._xx[where]
        for source, target in ((block[:, lo:hi], self.patches), (smooth, self.smooth)):
            windows = np.lib.stride_tricks.sliding_window_view(source, (p, p), axis=(1, 2))
            target[where] = windows[:, ys, xs].transpose(1, 0, 2, 3)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(patches, smooth)``, each (N, C, P, P) float32, in row-major grid order.

        Raises
        ------
        ValueError
            When rows some patch needs never came.
        """
        if not self.complete:
            band = self._bands[self._next]
            raise ValueError(f"rows up to {band.b - 1} are needed; got up to {self._start + self._buf.shape[1] - 1}")
        return self.patches, self.smooth
