"""Tile geometry for whole-image reconstruction: pure numpy, no model (DESIGN §5).

An image of shape (Y, X) is cut into P×P tiles at stride S. Tile ``(i, j)`` is
centred on image pixel ``(i*S, j*S)`` (the pixel at offset ``P // 2`` inside the
tile), so the tile grid is the stride grid: a latent map ``(D, ny, nx)`` shows in
napari over the image with ``scale=(S, S)`` and ``translate=(0, 0)``.

Tiles reaching outside the image read reflected pixels (``d c b | a b c d | c b a``,
numpy's ``"reflect"``). A pad wider than the image keeps reflecting back and forth
(a triangle wave over the indices), so any image of at least 1×1 px works; a
1-px axis has nothing to reflect and repeats its pixel (numpy's ``"edge"``).

Overlapping tiles are blended with a window that is smooth and never zero, and
divided by the summed weights, so an identity "model" stitches back the image
exactly. The grid is a full product of tile rows and columns, so the summed
weights are separable: ``outer(row_sums, col_sums)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TileGrid", "BandStitcher", "TileCapture", "reflect_index", "tile_window", "stitch"]


def reflect_index(index, size: int) -> np.ndarray:
    """Map any integer positions onto ``0..size-1`` by repeated reflection.

    Parameters
    ----------
    index : array-like of int
        Positions, possibly negative or ``>= size``.
    size : int
        Length of the axis (>= 1).

    Returns
    -------
    ndarray of int64, same shape as ``index``
        Equal to what ``np.pad(mode="reflect")`` reads, for pads of any width;
        all zeros when ``size == 1``.
    """
    index = np.asarray(index, dtype=np.int64)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    m = np.mod(index, period)
    return np.where(m < size, m, period - m)


def tile_window(patch_size: int) -> np.ndarray:
    """Blending weights of one tile: a Hann window sampled at pixel centres.

    ``w(t) = sin²(π (t + ½) / P)`` is smooth, symmetric and never zero (its
    minimum is ``sin²(π / 2P)``); with stride ``P / 2`` shifted windows sum to 1.

    Returns
    -------
    ndarray of shape (P, P), float64
    """
    w = _window_1d(patch_size)
    return np.outer(w, w)


def _window_1d(patch_size: int) -> np.ndarray:
    t = (np.arange(patch_size) + 0.5) / patch_size
    return np.sin(np.pi * t) ** 2


@dataclass(frozen=True)
class TileGrid:
    """Tile origins covering an image of shape ``(Y, X)``.

    Attributes
    ----------
    shape : tuple of int
        Image shape ``(Y, X)``.
    patch_size : int
        Tile side P.
    stride : int
        Step S between tile origins (``P // 2`` by default, at least 1).
    """

    shape: tuple[int, int]
    patch_size: int
    stride: int

    @classmethod
    def create(cls, shape, patch_size: int, stride: int | None = None) -> "TileGrid":
        """Validate the arguments and build a grid.

        Raises
        ------
        ValueError
            If ``shape`` is not two sizes >= 1, ``patch_size < 1`` or ``stride``
            is not in ``1..patch_size``.
        """
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"shape must be (Y, X) with both sizes >= 1, got {shape}")
        p = int(patch_size)
        if p < 1:
            raise ValueError(f"patch_size must be >= 1, got {patch_size}")
        s = max(1, p // 2) if stride is None else int(stride)
        if not 1 <= s <= p:
            # a stride above P would leave pixels no tile covers
            raise ValueError(f"stride must be in 1..patch_size ({p}), got {stride}")
        return cls(shape, p, s)

    # geometry along one axis -------------------------------------------------------------
    @property
    def pad_before(self) -> int:
        """Padding before each axis: tile ``i`` starts at image position ``i*S - P//2``."""
        return self.patch_size // 2

    def _count(self, size: int) -> int:
        s, p = self.stride, self.patch_size
        # enough tiles that the stride grid spans the axis and the last tile reaches its last pixel
        reach = -(-(size - (p - p // 2)) // s) + 1 if size > p - p // 2 else 1
        return max(-(-size // s), reach)

    @property
    def n_tiles(self) -> tuple[int, int]:
        """Tiles along each axis ``(ny, nx)``."""
        return self._count(self.shape[0]), self._count(self.shape[1])

    @property
    def total(self) -> int:
        ny, nx = self.n_tiles
        return ny * nx

    @property
    def padded_shape(self) -> tuple[int, int]:
        """Extent ``(Yp, Xp)`` of the padded image the tiles are cut from."""
        ny, nx = self.n_tiles
        return (ny - 1) * self.stride + self.patch_size, (nx - 1) * self.stride + self.patch_size

    def source_index(self, start: int, stop: int, axis: int) -> np.ndarray:
        """Image positions read by padded positions ``start..stop-1`` along ``axis`` (0 rows, 1 cols)."""
        return reflect_index(np.arange(start, stop) - self.pad_before, self.shape[axis])

    def weight_sums(self, axis: int) -> np.ndarray:
        """Summed 1-D window over all tiles, at each padded position along ``axis``: (Yp,) or (Xp,)."""
        w = _window_1d(self.patch_size)
        n = self.n_tiles[axis]
        sums = np.zeros(self.padded_shape[axis])
        for d in range(self.patch_size):
            sums[d : d + (n - 1) * self.stride + 1 : self.stride] += w[d]
        return sums

    def band_rows(self, i0: int, i1: int) -> tuple[int, int]:
        """Padded rows ``[r0, r1)`` read by tile rows ``i0..i1-1``."""
        return i0 * self.stride, (i1 - 1) * self.stride + self.patch_size

    # tiles ---------------------------------------------------------------------------------
    def extract(self, image, i0: int = 0, i1: int | None = None) -> np.ndarray:
        """Cut the tiles of tile rows ``i0..i1-1`` (all columns) from an image.

        Parameters
        ----------
        image : array-like of shape (C, Y, X)
            Only the rows these tiles read are converted, so a np.memmap stays on disk.

        Returns
        -------
        ndarray of shape ((i1 - i0) * nx, C, P, P), float32, row-major over (i, j)
        """
        i1 = self.n_tiles[0] if i1 is None else i1
        r0, r1 = self.band_rows(i0, i1)
        rows = self.source_index(r0, r1, 0)
        lo, hi = int(rows.min()), int(rows.max()) + 1
        block = np.asarray(image[:, lo:hi], dtype=np.float32)
        return self.extract_padded(block[:, rows - lo][:, :, self.source_index(0, self.padded_shape[1], 1)])

    def extract_padded(self, band: np.ndarray) -> np.ndarray:
        """Tiles of a padded band ``(C, R, Xp)`` whose first row is a tile-row origin.

        Returns
        -------
        ndarray of shape (n_rows * nx, C, P, P), float32
        """
        import torch

        p, s = self.patch_size, self.stride
        n_rows = (band.shape[1] - p) // s + 1
        # torch's copy of the strided windows uses every intra-op thread (numpy's, one)
        t = torch.from_numpy(np.ascontiguousarray(band, dtype=np.float32))
        win = t.unfold(1, p, s).unfold(2, p, s)[:, :n_rows]  # (C, n_rows, nx, P, P)
        return win.permute(1, 2, 0, 3, 4).contiguous().numpy().reshape(-1, band.shape[0], p, p)


class BandStitcher:
    """Blend reconstructed tiles back into image rows, one band of tile rows at a time.

    Feed consecutive bands with :meth:`add`; each call returns the image rows that
    no later tile touches, already divided by the summed weights. Memory holds one
    band plus the ``P - S`` overlapping rows, whatever the image height.

    Parameters
    ----------
    grid : TileGrid
    channels : int
        Channels C of the tiles.
    """

    def __init__(self, grid: TileGrid, channels: int) -> None:
        self.grid = grid
        self.channels = int(channels)
        self._window = tile_window(grid.patch_size).astype(np.float32)
        y_sums, x_sums = grid.weight_sums(0), grid.weight_sums(1)
        # real image pixels only: reflected padding is read, never written back
        pb = grid.pad_before
        self._y_sums = y_sums
        self._x_inv = (1.0 / x_sums[pb : pb + grid.shape[1]]).astype(np.float32)
        self._acc = np.zeros((self.channels, 0, grid.padded_shape[1]), dtype=np.float32)
        self._acc_start = 0  # padded row of self._acc[:, 0]
        self._next = 0  # next tile row expected

    def _add_strided(self, base: int, tiles: np.ndarray) -> None:
        """Any stride: one strided add per tile offset (no two tiles share a pixel within one)."""
        n_r, nx, _, p, _ = tiles.shape
        s = self.grid.stride
        weighted = tiles * self._window  # (n_r, nx, C, P, P)
        for dy in range(p):
            rows = slice(base + dy, base + dy + (n_r - 1) * s + 1, s)
            for dx in range(p):
                cols = slice(dx, dx + (nx - 1) * s + 1, s)
                self._acc[:, rows, cols] += weighted[:, :, :, dy, dx].transpose(2, 0, 1)

    def _add_blocks(self, base: int, tiles: np.ndarray) -> None:
        """Stride dividing P: tiles are q×q blocks of S×S on the S-grid; q² strided adds.

        Several times faster than :meth:`_add_strided`: each add weights one block of every
        tile and streams whole rows of the accumulator; done with torch, whose elementwise
        kernels use every intra-op thread (numpy's use one), on views of the same memory.
        """
        import torch

        n_r, nx, c, p, _ = tiles.shape
        s = self.grid.stride
        q = p // s
        src = torch.from_numpy(np.ascontiguousarray(tiles)).view(n_r, nx, c, q, s, q, s)
        win = torch.from_numpy(self._window).view(q, s, q, s)
        region = torch.from_numpy(self._acc)[:, base : base + (n_r + q - 1) * s]
        view = region.view(c, n_r + q - 1, s, nx + q - 1, s)  # splitting axes: always a view
        for a in range(q):
            for b in range(q):
                # block (a, b) of every tile, laid out like image rows: (C, n_r, S, nx, S)
                block = src[:, :, :, a, :, b, :].permute(2, 0, 3, 1, 4)
                view[:, a : a + n_r, :, b : b + nx, :] += block * win[a, :, b, :][None, None, :, None, :]

    def add(self, i0: int, i1: int, tiles: np.ndarray) -> tuple[int, int, np.ndarray]:
        """Blend tiles of tile rows ``i0..i1-1`` and return the finished image rows.

        Parameters
        ----------
        tiles : ndarray of shape ((i1 - i0) * nx, C, P, P)

        Returns
        -------
        y0, y1 : int
            Image rows ``[y0, y1)`` finished by this band (``y0 == y1`` when none).
        rows : ndarray of shape (C, y1 - y0, X), float32
        """
        g = self.grid
        p, s = g.patch_size, g.stride
        nx = g.n_tiles[1]
        if i0 != self._next or not i0 < i1 <= g.n_tiles[0]:
            raise ValueError(f"bands must be consecutive: expected tile rows from {self._next}, got {i0}..{i1}")
        if tiles.shape != ((i1 - i0) * nx, self.channels, p, p):
            raise ValueError(f"tiles must have shape {((i1 - i0) * nx, self.channels, p, p)}, got {tiles.shape}")
        r1 = g.band_rows(i0, i1)[1]
        grow = r1 - self._acc_start - self._acc.shape[1]
        if grow > 0:
            pad = np.zeros((self.channels, grow, self._acc.shape[2]), dtype=np.float32)
            self._acc = np.concatenate([self._acc, pad], axis=1)
        base = i0 * s - self._acc_start
        if p % s == 0:
            self._add_blocks(base, tiles.reshape(i1 - i0, nx, self.channels, p, p))
        else:
            self._add_strided(base, tiles.reshape(i1 - i0, nx, self.channels, p, p))
        self._next = i1
        done = g.padded_shape[0] if i1 == g.n_tiles[0] else i1 * s  # later tiles start at i1*S
        n_done = done - self._acc_start
        finished, self._acc = self._acc[:, :n_done], self._acc[:, n_done:]
        start, self._acc_start = self._acc_start, done
        pb, y_size = g.pad_before, g.shape[0]
        y0, y1 = max(start - pb, 0), min(done - pb, y_size)
        if y1 <= y0:
            return y0, y0, np.zeros((self.channels, 0, g.shape[1]), dtype=np.float32)
        block = finished[:, y0 + pb - start : y1 + pb - start, pb : pb + g.shape[1]]
        y_inv = (1.0 / self._y_sums[y0 + pb : y1 + pb]).astype(np.float32)
        return y0, y1, block * y_inv[None, :, None] * self._x_inv[None, None, :]


def stitch(tiles: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Blend all tiles of a grid into one image (small images, tests).

    Parameters
    ----------
    tiles : ndarray of shape (ny * nx, C, P, P)

    Returns
    -------
    ndarray of shape (C, Y, X), float32
    """
    st = BandStitcher(grid, tiles.shape[1])
    _, _, rows = st.add(0, grid.n_tiles[0], np.asarray(tiles, dtype=np.float32))
    return rows


class TileCapture:
    """Keeps the model's outputs for the tiles that are also patches of another grid (the report's).

    Pass :meth:`add` as ``reconstruct_image(..., on_tiles=...)``.

    A quality patch at image origin ``(y, x)`` on the stride grid is tile
    ``((y + P//2) / S, (x + P//2) / S)`` of the reconstruction when ``P//2`` is a multiple of
    ``S`` (the default stride, P/2): the report then reuses the reconstruction's outputs
    instead of running the model on those patches again.
    """

    def __init__(self, origins: tuple[np.ndarray, np.ndarray], patch: int, stride: int, n_cols: int,
                 channels: int, latent_dim: int) -> None:
        yy, xx = origins
        pad = patch // 2
        self.ok = pad % stride == 0
        self.rows, self.cols = (yy + pad) // stride, (xx + pad) // stride
        self.n_cols = n_cols
        self.recon = np.empty((len(yy), channels, patch, patch), np.float32) if self.ok else None
        self.mu = np.empty((len(yy), latent_dim), np.float32) if self.ok else None
        self.seen = 0

    def add(self, i0: int, i1: int, recon: np.ndarray, mu: np.ndarray) -> None:
        if not self.ok:
            return
        picked = np.nonzero((self.rows >= i0) & (self.rows < i1))[0]
        flat = (self.rows[picked] - i0) * self.n_cols + self.cols[picked]
        self.recon[picked], self.mu[picked] = recon[flat], mu[flat]
        self.seen += len(picked)

    def predictions(self):
        """(recon, mu) for every quality patch, or None when they could not all be kept."""
        return (self.recon, self.mu) if self.ok and self.seen == len(self.rows) else None
