"""Patches from normalized images, packed on the device for sampling without per-sample Python.

Every image is flattened into one (total_pixels, C) tensor, channels last; a patch is a gather
of rows at ``base + dy·width + dx``: each pixel is one contiguous run of C values, 4-10× faster
to gather on a CPU than C scattered values from a (C, total_pixels) layout. The validation split is by region: the last rows of each image
(a band at least one patch high) hold the validation patches, and no training patch reaches
into that band, so no validation pixel is ever seen in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from napari_imc_vae.engine.model.d4 import N_ELEMENTS, d4_apply, d4_permutations


class PatchSizeError(ValueError):
    """The images are too small, or the patch too large, to cut a single patch."""


@dataclass
class _Positions:
    base: torch.Tensor  # (N,) flat offset of each patch's top-left pixel
    width: torch.Tensor  # (N,) width of the image the patch lies in


def _grid(y0: int, y1: int, x1: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners on a stride grid with rows in [y0, y1] and columns in [0, x1]."""
    ys, xs = np.arange(y0, y1 + 1, stride), np.arange(0, x1 + 1, stride)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return yy.ravel(), xx.ravel()


@dataclass(frozen=True)
class GridSpec:
    """Patch corners on a stride grid: rows ``y0, y0+stride, … ≤ y1``, columns ``0 … ≤ x1``."""

    y0: int
    y1: int
    x1: int
    stride: int

    @property
    def shape(self) -> tuple[int, int]:
        return len(range(self.y0, self.y1 + 1, self.stride)), len(range(0, self.x1 + 1, self.stride))

    @property
    def size(self) -> int:
        ny, nx = self.shape
        return ny * nx

    def corners(self, index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of the corners (all, or those at ``index`` in row-major order)."""
        if index is None:
            return _grid(self.y0, self.y1, self.x1, self.stride)
        nx = self.shape[1]
        return self.y0 + (index // nx) * self.stride, (index % nx) * self.stride


@dataclass(frozen=True)
class ImageSplit:
    """Where one (Y, X) image's training and validation patches lie.

    ``train_rows``: training patches lie wholly in rows ``[0, train_rows)``; ``train`` is their
    corner grid (coarsened by the cohort's stride); ``val`` the validation corners (stride
    ``p // 2``) in the band below, or None when the image is too small to split.
    """

    height: int
    width: int
    train_rows: int
    train: GridSpec
    val: GridSpec | None

    def n_positions(self, patch_size: int) -> int:
        """All training corners at stride 1."""
        return (self.train_rows - patch_size + 1) * (self.width - patch_size + 1)


def split_images(shapes, patch_size: int, val_fraction: float, max_positions: int) -> list[ImageSplit | None]:
    """The training/validation split of each image of a cohort; None for images smaller than a patch.

    The last rows of each image (a band of ``max(p, round(val_fraction·Y))`` rows) hold the
    validation patches; no training patch reaches into it. Training corners are taken on a
    stride grid coarse enough that the cohort has at most ``max_positions`` of them.

    Raises
    ------
    PatchSizeError
        When no image is at least one patch in each direction.
    """
    p = int(patch_size)
    usable = [(h, w) for h, w in shapes if h >= p and w >= p]
    if not usable:
        sizes = ", ".join(f"{h}×{w}" for h, w in shapes)
        largest = max(min(h, w) for h, w in shapes)
        if largest < 2:  # ModelConfig.patch_size >= 2: no model can be trained on these
            raise PatchSizeError(f"every image is too small for any model ({sizes} px): a model needs images "
                                 f"of at least 2×2 px (the smallest patch size, 2)")
        raise PatchSizeError(
            f"patch size {p} is larger than every image ({sizes} px); choose a patch size of at most "
            f"{largest}"
        )
    total_train = sum((h - p + 1) * (w - p + 1) for h, w in usable)
    stride = max(1, int(np.ceil(np.sqrt(total_train / max_positions))))
    splits: list[ImageSplit | None] = []
    for h, w in shapes:
        if h < p or w < p:
            splits.append(None)
            continue
        band = max(p, int(round(val_fraction * h)))
        if val_fraction > 0 and h - band >= p:  # room for a training patch above the band
            train_rows, val = h - band, GridSpec(h - band, h - p, w - p, max(1, p // 2))
        else:  # too small to split: training only
            train_rows, val = h, None
        splits.append(ImageSplit(h, w, train_rows, GridSpec(0, train_rows - p, w - p, stride), val))
    return splits


def gather_patches(pixels: torch.Tensor, base: torch.Tensor, width: torch.Tensor, dy: torch.Tensor,
                   dx: torch.Tensor, patch_size: int, order: torch.Tensor | None = None) -> torch.Tensor:
    """Patches (B, C, P, P) of flattened images ``pixels`` (N, C) with corners at flat ``base``.

    ``width`` is the row length of the image each patch lies in; ``order`` (B, P·P), when given,
    permutes each patch's pixels (a D4 view) within the same gather.
    """
    flat = base[:, None] + dy[None] * width[:, None] + dx[None]  # (B, P*P)
    if order is not None:
        flat = flat.gather(1, order)
    patches = pixels.index_select(0, flat.reshape(-1))  # (B*P*P, C)
    b, c = base.shape[0], pixels.shape[1]
    return patches.view(b, patch_size * patch_size, c).transpose(1, 2).contiguous().view(b, c, patch_size, patch_size)


class PatchSampler:
    """Random training patches and fixed validation patches from normalized images.

    Parameters
    ----------
    images : sequence of ndarray of shape (C, Y, X)
        Normalized images with the same channels (NaN marks missing pixels).
    patch_size : int
    val_fraction : float
        Height of each image's validation band as a fraction of its rows (at least one patch).
    device : torch.device or str
    max_positions : int
        Training positions are taken on a stride grid coarse enough to stay under this count,
        so very large images do not need a position table of their pixel count.

    Raises
    ------
    PatchSizeError
        When no image is at least one patch in each direction.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        patch_size: int,
        *,
        val_fraction: float = 0.15,
        device: torch.device | str = "cpu",
        max_positions: int = 4_000_000,
    ):
        if not images:
            raise ValueError("PatchSampler needs at least one image, got none")
        channels = {np.shape(im)[0] for im in images}
        if len(channels) != 1 or any(np.ndim(im) != 3 for im in images):
            raise ValueError(f"all images must be (C, Y, X) with the same C, got shapes {[np.shape(im) for im in images]}")
        p = int(patch_size)
        splits = split_images([np.shape(im)[1:] for im in images], p, val_fraction, max_positions)
        self.patch_size, self.device = p, torch.device(device)
        self.n_channels = channels.pop()
        total = sum(s.height * s.width for s in splits if s is not None)
        packed = np.empty((total, self.n_channels), np.float32)  # channels last, filled in place
        offset = 0
        train, val = [], []
        for im, split in zip(images, splits):
            if split is None:  # smaller than a patch
                continue
            w = split.width
            packed[offset : offset + split.height * w].reshape(split.height, w, -1)[...] = np.moveaxis(im, 0, -1)
            if split.val is not None:
                vy, vx = split.val.corners()
                val.append((offset + vy * w + vx, np.full(vy.size, w)))
            ty, tx = split.train.corners()
            train.append((offset + ty * w + tx, np.full(ty.size, w)))
            offset += split.height * w
        self._pixels = torch.from_numpy(packed).to(self.device)  # (total, C)
        #: No NaN or Inf anywhere: losses may skip their masks.
        self.all_finite = bool(torch.isfinite(self._pixels).all())
        self._train = self._positions(train)
        self._val = self._positions(val)
        dy, dx = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
        self._dy = torch.from_numpy(dy.ravel()).to(self.device)
        self._dx = torch.from_numpy(dx.ravel()).to(self.device)

    def _positions(self, parts: list[tuple[np.ndarray, np.ndarray]]) -> _Positions:
        if not parts:
            empty = torch.zeros(0, dtype=torch.long, device=self.device)
            return _Positions(empty, empty)
        base = torch.from_numpy(np.concatenate([b for b, _ in parts]).astype(np.int64))
        width = torch.from_numpy(np.concatenate([w for _, w in parts]).astype(np.int64))
        return _Positions(base.to(self.device), width.to(self.device))

    @property
    def n_train(self) -> int:
        return int(self._train.base.numel())

    @property
    def n_val(self) -> int:
        return int(self._val.base.numel())

    def _gather(self, pos: _Positions, index: torch.Tensor, order: torch.Tensor | None = None) -> torch.Tensor:
        return gather_patches(self._pixels, pos.base[index], pos.width[index], self._dy, self._dx,
                              self.patch_size, order)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A random batch: untransformed patches, D4 views of them, and the elements used.

        Returns
        -------
        base : Tensor of shape (B, C, P, P)
        views : Tensor of shape (B, C, P, P)
            ``views[i] = g_{transforms[i]}(base[i])``.
        transforms : LongTensor of shape (B,)
        """
        index = torch.randint(self.n_train, (batch_size,), device=self.device, generator=generator)
        transforms = torch.randint(N_ELEMENTS, (batch_size,), device=self.device, generator=generator)
        base = self._gather(self._train, index)
        return base, d4_apply(base, transforms), transforms

    def sample_views(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`sample` without the untransformed patches: the same draws and views, one gather.

        Returns
        -------
        views : Tensor of shape (B, C, P, P)
        transforms : LongTensor of shape (B,)
        """
        index = torch.randint(self.n_train, (batch_size,), device=self.device, generator=generator)
        transforms = torch.randint(N_ELEMENTS, (batch_size,), device=self.device, generator=generator)
        # view pixel i of patch b is base pixel perms[t_b, i]: permute the gather's offsets instead
        order = d4_permutations(self.patch_size, self.device)[transforms]  # (B, P*P)
        return self._gather(self._train, index, order), transforms

    def validation_patches(self, max_patches: int | None = None) -> torch.Tensor:
        """Validation patches (N, C, P, P), a fixed evenly spaced subset when capped."""
        return self._fixed(self._val, max_patches)

    def training_patches(self, max_patches: int | None = None) -> torch.Tensor:
        """Training patches (N, C, P, P), a fixed evenly spaced subset (for baselines such as PCA)."""
        return self._fixed(self._train, max_patches)

    def _fixed(self, pos: _Positions, max_patches: int | None) -> torch.Tensor:
        n = int(pos.base.numel())
        if max_patches is not None and n > max_patches:
            index = torch.linspace(0, n - 1, max_patches, device=self.device).round().long()
        else:
            index = torch.arange(n, device=self.device)
        return self._gather(pos, index)
