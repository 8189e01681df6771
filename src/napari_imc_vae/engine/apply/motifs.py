"""Tissue motifs: k-means clusters of the latent map (scikit-learn's MiniBatchKMeans).

Each latent vector describes the patch centred on one point of the stride grid, and is
the same for the patch's 8 rotations/flips, so clusters of latent vectors are kinds of
tissue neighbourhood whatever their orientation. Labels live on the latent grid (cell
``(i, j)`` is the tile centred on image pixel ``(i*stride, j*stride)``); motif 1 is the
largest, 0 is never used (napari's Labels layer shows 0 as background).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# DEFAULT_MOTIFS (the CLI and the Reconstruct widget ask for it unless told otherwise) lives in engine.defaults
from napari_imc_vae.engine.defaults import DEFAULT_MOTIFS

__all__ = ["DEFAULT_MOTIFS", "MOTIF_FIT_POINTS", "MotifModel", "motif_abundance", "upsample_grid",
           "motif_table"]

#: k-means is fitted on at most this many latent vectors (evenly spaced), then assigns all.
MOTIF_FIT_POINTS = 50_000


@dataclass(frozen=True)
class MotifModel:
    """Motif centres in latent space, largest motif first.

    Attributes
    ----------
    centers : ndarray of shape (k, D), float32
    seed : int
        Of the fit (k-means++ seeding and mini-batches).
    """

    centers: np.ndarray
    seed: int = 0

    @property
    def k(self) -> int:
        return int(self.centers.shape[0])

    @classmethod
    def fit(cls, vectors: np.ndarray, k: int = DEFAULT_MOTIFS, *, seed: int = 0,
            max_fit: int = MOTIF_FIT_POINTS) -> "MotifModel":
        """Fit ``k`` motifs to latent vectors.

        Parameters
        ----------
        vectors : ndarray of shape (N, D)
            Latent vectors; non-finite rows are left out of the fit.
        k : int
            Motifs, 1 … N (fewer when there are fewer distinct vectors).
        seed : int
        max_fit : int
            Fit on an evenly spaced subset of at most this many vectors.

        Raises
        ------
        ValueError
            For ``k < 1`` or no finite (N, D) vectors.
        """
        from sklearn.cluster import MiniBatchKMeans

        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"vectors must have shape (N, D), got {x.shape}")
        x = x[np.isfinite(x).all(axis=1)]
        if len(x) == 0:
            raise ValueError("no finite latent vector to fit motifs to")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"the number of motifs must be an integer >= 1, got {k!r}")
        if len(x) > max_fit:
            x = x[np.linspace(0, len(x) - 1, max_fit).round().astype(int)]
        k = int(min(k, len(np.unique(x, axis=0))))
        km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096,
                             max_iter=100).fit(x)
        sizes = np.bincount(km.labels_, minlength=k)
        order = np.argsort(-sizes, kind="stable")
        return cls(km.cluster_centers_[order].astype(np.float32), int(seed))

    def assign(self, latent: np.ndarray, chunk: int = 65_536) -> np.ndarray:
        """Motif of every latent vector: labels 1 … k.

        Parameters
        ----------
        latent : ndarray of shape (D, ny, nx) or (N, D)

        Returns
        -------
        ndarray of shape (ny, nx) or (N,), int32
        """
        lat = np.asarray(latent, dtype=np.float32)
        grid = lat.ndim == 3
        x = lat.reshape(lat.shape[0], -1).T if grid else lat
        if x.shape[1] != self.centers.shape[1]:
            raise ValueError(f"latent vectors have {x.shape[1]} dimensions, the motifs {self.centers.shape[1]}")
        x = np.nan_to_num(x)
        c2 = (self.centers.astype(np.float64) ** 2).sum(1)
        out = np.empty(len(x), dtype=np.int32)
        for a in range(0, len(x), chunk):  # ‖x−c‖² = ‖x‖² − 2x·c + ‖c‖²; ‖x‖² does not change argmin
            d = c2[None] - 2.0 * (x[a : a + chunk].astype(np.float64) @ self.centers.T.astype(np.float64))
            out[a : a + chunk] = np.argmin(d, axis=1) + 1
        return out.reshape(lat.shape[1:]) if grid else out

    def to_state(self) -> dict:
        """Plain data for a model file (torch tensors and ints, weights-only loadable)."""
        import torch

        return {"centers": torch.from_numpy(np.ascontiguousarray(self.centers)), "seed": int(self.seed)}

    @classmethod
    def from_state(cls, state: dict) -> "MotifModel":
        centers = np.asarray(state["centers"], dtype=np.float32)
        if centers.ndim != 2 or len(centers) < 1:
            raise ValueError(f"motif centres must have shape (k, D), got {centers.shape}")
        return cls(centers, int(state.get("seed", 0)))


def upsample_grid(grid: np.ndarray, stride: int, shape: tuple[int, int]) -> np.ndarray:
    """Values on the stride grid → image pixels: pixel (y, x) takes cell (y/s, x/s) rounded.

    Grid cell ``(i, j)`` is the tile centred on pixel ``(i*stride, j*stride)``
    (see :class:`~napari_imc_vae.engine.apply.inference.Reconstruction`).
    """
    ny, nx = grid.shape[-2:]
    iy = np.minimum((np.arange(shape[0]) + stride // 2) // stride, ny - 1)
    ix = np.minimum((np.arange(shape[1]) + stride // 2) // stride, nx - 1)
    return grid[..., iy[:, None], ix[None, :]]


def motif_abundance(image: str, labels: np.ndarray, stride: int, shape: tuple[int, int], k: int) -> list[dict]:
    """Image pixels of each motif 1 … k, and their fraction of the labelled pixels.

    Parameters
    ----------
    image : str
        The image's name, written in every row.
    labels : ndarray of shape (ny, nx), int
        Motif labels 1 … k on the latent grid, upsampled to the image by :func:`upsample_grid`.
    stride : int
    shape : (int, int)
        The image's (Y, X).
    k : int

    Returns
    -------
    list of dict
        ``{"image", "motif", "pixels", "fraction"}`` for every motif, an empty one too (0 pixels).
    """
    counts = np.bincount(upsample_grid(labels, stride, shape).ravel(), minlength=k + 1)[1:]
    total = max(int(counts.sum()), 1)
    return [{"image": image, "motif": j + 1, "pixels": int(n), "fraction": n / total} for j, n in enumerate(counts)]

def motif_table(labels: np.ndarray, stride: int, raw: np.ndarray, channel_names: list[str],
                k: int) -> list[dict]:
    """One row per motif: pixels, fraction of the image and mean raw intensity per channel.

    Parameters
    ----------
    labels : ndarray of shape (ny, nx), int
        Motif labels 1 … k on the latent grid.
    stride : int
    raw : array of shape (C, Y, X)
        The image's raw channels (those the model knows, in ``channel_names`` order);
        non-finite pixels are left out of the means.
    channel_names : list of str
    k : int

    Returns
    -------
    list of dict
        ``{"motif", "pixels", "fraction", <channel>: mean, ...}`` for the motifs that label at
        least one pixel: an empty motif (k-means can leave one when the image has fewer kinds
        of tissue than the model's motifs) is not listed, so no row of NaN means reads as a
        kind of tissue.
    """
    c, h, w = raw.shape
    ny, nx = labels.shape
    # pixel (y, x) belongs to cell (iy[y], ix[x]) (see upsample_grid): iy and ix never decrease,
    # so sums over each cell's pixels are block sums (np.add.reduceat), not 40 passes over pixels
    iy = np.minimum((np.arange(h) + stride // 2) // stride, ny - 1)
    ix = np.minimum((np.arange(w) + stride // 2) // stride, nx - 1)
    y_starts, x_starts = np.flatnonzero(np.diff(iy, prepend=-1)), np.flatnonzero(np.diff(ix, prepend=-1))
    cells = labels[np.ix_(iy[y_starts], ix[x_starts])].ravel()  # the label of each block
    block_pixels = np.outer(np.diff(np.append(y_starts, h)), np.diff(np.append(x_starts, w))).ravel()
    values = np.asarray(raw, dtype=np.float32)
    finite = np.isfinite(values)
    everywhere = bool(finite.all())  # the usual case: every block is full, no masked sums
    block_sums = np.add.reduceat(np.add.reduceat(values if everywhere else np.where(finite, values, 0.0),
                                                 y_starts, 1), x_starts, 2).reshape(c, -1)
    block_counts = (np.broadcast_to(block_pixels, (c, block_pixels.size)) if everywhere else
                    np.add.reduceat(np.add.reduceat(finite, y_starts, 1, dtype=np.int64), x_starts, 2).reshape(c, -1))
    sums = np.stack([np.bincount(cells, weights=b, minlength=k + 1) for b in block_sums], axis=1)
    counts = np.stack([np.bincount(cells, weights=b, minlength=k + 1) for b in block_counts], axis=1)
    pixels = np.bincount(cells, weights=block_pixels, minlength=k + 1)[1:].astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts[1:] > 0, sums[1:] / np.maximum(counts[1:], 1), np.nan)
    total = max(int(pixels.sum()), 1)
    return [{"motif": j + 1, "pixels": int(pixels[j]), "fraction": float(pixels[j] / total),
             **{name: float(means[j, i]) for i, name in enumerate(channel_names)}}
            for j in range(k) if pixels[j] > 0]
