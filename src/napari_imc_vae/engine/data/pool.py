"""Patches from a bounded in-memory pool of tiles, refilled from the disk cache image by image.

The pool is ``n_tiles`` tiles of T×T pixels (all channels last, float32, on the training device),
cut at random places from the training regions of the cached images. A batch draws tiles and
positions inside them and gathers the patches in one pass, as ``PatchSampler`` does; D4 views
are a permuted gather, on the device. After every ``refill_patches`` patches drawn, the oldest
``refill_tiles`` tiles are replaced by new ones, read (in a helper thread, while training goes
on) from one image or a few, chosen at random.

Uniform over the cohort: tile origins are drawn from an extended range (a tile may overhang the
region by up to T - P pixels, and is then moved inside with only its overlap counted as valid),
so every training position is covered by the same number of possible tiles; images are chosen
in proportion to their possible tiles over that coverage, and tiles in proportion to their
valid positions. Each training position is then equally likely, as in ``PatchSampler``.

Validation is by region, per image, exactly as in ``PatchSampler`` (same band, same corners,
same evenly spaced subset): validation and training patches are read from the cache on demand.
"""

from __future__ import annotations

import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from napari_imc_vae.engine.model.d4 import N_ELEMENTS, d4_apply, d4_permutations
from napari_imc_vae.engine.data.patches import GridSpec, gather_patches, split_images

# ``NormalizedCache`` in annotations is engine.data.cohort's; not imported, since cohort imports this module



def _axis(extent: int, tile: int, p: int) -> tuple[int, int, int, int]:
    """Along one axis of a region: tile size, first virtual origin, number of virtual origins,
    and how many virtual tiles cover each position."""
    size = min(tile, extent)
    if size == extent:  # the whole axis in one tile: one origin, every position valid
        return size, 0, 1, 1
    return size, -(size - p), extent - p + size - p + 1, size - p + 1


def _place(origin: np.ndarray, size: int, extent: int, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Physical origin and the valid corner range (first, count) of virtual tiles along an axis."""
    physical = np.clip(origin, 0, extent - size)
    first = np.maximum(origin, 0) - physical
    last = np.minimum(origin + size - p, extent - p) - physical
    return physical, first, last - first + 1


class _TileReader:
    """Cuts new tiles from the cache: the part of the pool its helper thread runs.

    Separate from the pool so that a read in flight does not keep the pool alive.
    """

    def __init__(self, cache: NormalizedCache, splits, images: list[int], geometry, image_p: np.ndarray,
                 patch_size: int, tile_size: int, seed: int) -> None:
        self.cache, self.splits, self.images, self.geometry = cache, splits, images, geometry
        self.image_p, self.patch_size, self.tile_size = image_p, patch_size, tile_size
        self.rng = np.random.default_rng(seed)
        self.dtype = np.float16 if all(cache.dtypes[i] == np.float16 for i in images) else np.float32

    def read(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``k`` new tiles (k, T, T, C) and their valid corner ranges (k, 4)."""
        p, t, rng = self.patch_size, self.tile_size, self.rng
        which = rng.choice(len(self.images), size=k, p=self.image_p)
        u = rng.random((k, 2))
        tiles = np.zeros((k, t, t, self.cache.n_channels), self.dtype)
        valid = np.zeros((k, 4), np.int64)
        for j in np.unique(which):
            rows = np.flatnonzero(which == j)
            (ty, oy, ny, _), (tx, ox, nx, _) = self.geometry[j]
            split = self.splits[self.images[j]]
            y, vy, cy = _place(oy + np.floor(u[rows, 0] * ny).astype(np.int64), ty, split.train_rows, p)
            x, vx, cx = _place(ox + np.floor(u[rows, 1] * nx).astype(np.int64), tx, split.width, p)
            image = self.cache.open(self.images[j])
            for r, y0, x0 in zip(rows, y, x):
                tiles[r, :ty, :tx] = image[y0 : y0 + ty, x0 : x0 + tx]
            del image  # unmap: its pages leave this process's resident memory
            valid[rows] = np.stack([vy, cy, vx, cx], axis=1)
        return tiles, valid


def _release(executor: ThreadPoolExecutor, cache: NormalizedCache) -> None:
    """End of a pool: let a read in flight finish (milliseconds), then delete the cache."""
    executor.shutdown(wait=True, cancel_futures=True)
    cache.close()


class PatchPool:
    """Random training patches and fixed validation patches from a :class:`NormalizedCache`.

    Same interface as :class:`~napari_imc_vae.engine.data.patches.PatchSampler`.

    Parameters
    ----------
    cache : NormalizedCache
    patch_size : int
    val_fraction : float
        Height of each image's validation band as a fraction of its rows (at least one patch).
    device : torch.device or str
    pool_mb : float
        Pool size (float32 tiles on ``device``); at least 8 tiles.
    tile_size : int, optional
        Tile side; default ``max(64, 2·patch_size)``.
    reuse : float
        Average number of drawn patches each pooled pixel appears in before it is replaced.
    seed : int
        Seeds the choice of tiles (training draws use the generator passed to ``sample``).
    max_positions : int
        As for ``PatchSampler``: the grid of :meth:`training_patches` stays under this count.

    Raises
    ------
    PatchSizeError
        When no image is at least one patch in each direction.
    """

    def __init__(self, cache: NormalizedCache, patch_size: int, *, val_fraction: float = 0.15,
                 device: torch.device | str = "cpu", pool_mb: float = 256.0, tile_size: int | None = None,
                 reuse: float = 4.0, seed: int = 0, max_positions: int = 4_000_000):
        if len(cache) == 0:
            raise ValueError("PatchPool needs at least one cached image, got none")
        p = self.patch_size = int(patch_size)
        self.cache, self.device = cache, torch.device(device)
        self.n_channels = int(cache.n_channels)
        self.splits = split_images(cache.shapes, p, val_fraction, max_positions)
        self._images = [i for i, s in enumerate(self.splits) if s is not None]
        t = self.tile_size = int(tile_size or max(64, 2 * p))
        if t < p:
            raise ValueError(f"tile_size {t} is smaller than the patch size {p}")
        # per usable image: (rows axis, columns axis), each (size, first origin, origins, cover)
        self._geometry = [(_axis(self.splits[i].train_rows, t, p), _axis(self.splits[i].width, t, p))
                          for i in self._images]
        # choose images by virtual tiles over coverage: every training position equally likely
        weight = np.array([(ry[2] / ry[3]) * (rx[2] / rx[3]) for ry, rx in self._geometry])
        self._image_p = weight / weight.sum()
        train_pixels = sum(self.splits[i].train_rows * self.splits[i].width for i in self._images)
        by_budget = int(pool_mb * 2**20 // (self.n_channels * t * t * 4))
        by_data = int(np.ceil(2 * train_pixels / (t * t)))  # a small cohort needs no bigger pool
        self.n_tiles = max(8, min(by_budget, by_data))
        self.refill_tiles = max(1, self.n_tiles // 32)
        self.refill_patches = max(1, int(round(reuse * self.refill_tiles * t * t / (p * p))))
        self.all_finite = cache.all_finite
        self._reader = _TileReader(cache, self.splits, self._images, self._geometry, self._image_p, p, t, seed)
        self._pixels = torch.zeros(self.n_tiles * t * t, self.n_channels, device=self.device)  # channels last
        self._valid = torch.zeros(self.n_tiles, 4, dtype=torch.long, device=self.device)  # y0, ny, x0, nx
        self._weight = torch.zeros(self.n_tiles, device=self.device)
        self._slot, self._drawn = 0, 0
        dy, dx = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
        self._dy = torch.from_numpy(dy.ravel()).to(self.device)
        self._dx = torch.from_numpy(dx.ravel()).to(self.device)
        self._fixed_cache: dict[tuple[str, int | None], torch.Tensor] = {}
        chunk = max(16, self.refill_tiles)  # a first fill in pieces: no transient copy of the whole pool
        for start in range(0, self.n_tiles, chunk):
            self._write(*self._reader.read(min(chunk, self.n_tiles - start)))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imc-vae-pool")
        self._finalizer = weakref.finalize(self, _release, self._executor, cache)
        self._next = self._executor.submit(self._reader.read, self.refill_tiles)

    # --- the pool ----------------------------------------------------------------------------------
    def _write(self, tiles: np.ndarray, valid: np.ndarray) -> None:
        k, t = tiles.shape[0], self.tile_size
        slots = torch.arange(self._slot, self._slot + k, device=self.device) % self.n_tiles
        new = torch.from_numpy(tiles).to(self.device).float()  # float16 crosses to the device, then widens
        self._pixels.view(self.n_tiles, t, t, self.n_channels).index_copy_(0, slots, new)
        valid_t = torch.from_numpy(valid).to(self.device)
        self._valid.index_copy_(0, slots, valid_t)
        self._weight.index_copy_(0, slots, (valid_t[:, 1] * valid_t[:, 3]).float())
        self._slot = (self._slot + k) % self.n_tiles

    def _advance(self, batch_size: int) -> None:
        """Count drawn patches; replace the oldest tiles when ``refill_patches`` have been drawn."""
        self._drawn += batch_size
        due = self._drawn // self.refill_patches
        if due == 0:
            return
        self._drawn -= due * self.refill_patches
        self._write(*self._next.result())
        if due > 1:  # a batch larger than a refill period: the rest now, in one read
            self._write(*self._reader.read(min((due - 1) * self.refill_tiles, self.n_tiles)))
        self._next = self._executor.submit(self._reader.read, self.refill_tiles)

    def _draw(self, batch_size: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        self._advance(batch_size)
        t = self.tile_size
        tile = torch.multinomial(self._weight, batch_size, replacement=True, generator=generator)
        u = torch.rand(batch_size, 2, device=self.device, generator=generator)
        valid = self._valid[tile]
        y = valid[:, 0] + (u[:, 0] * valid[:, 1]).long().clamp_max_(valid[:, 1] - 1)
        x = valid[:, 2] + (u[:, 1] * valid[:, 3]).long().clamp_max_(valid[:, 3] - 1)
        base = tile * (t * t) + y * t + x
        transforms = torch.randint(N_ELEMENTS, (batch_size,), device=self.device, generator=generator)
        return base, transforms

    def _gather(self, base: torch.Tensor, order: torch.Tensor | None = None) -> torch.Tensor:
        width = torch.full_like(base, self.tile_size)
        return gather_patches(self._pixels, base, width, self._dy, self._dx, self.patch_size, order)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A random batch: untransformed patches, D4 views of them, and the elements used."""
        base, transforms = self._draw(batch_size, generator)
        patches = self._gather(base)
        return patches, d4_apply(patches, transforms), transforms

    def sample_views(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """D4 views (B, C, P, P) of random training patches and the elements used (B,)."""
        base, transforms = self._draw(batch_size, generator)
        order = d4_permutations(self.patch_size, self.device)[transforms]
        return self._gather(base, order), transforms

    # --- fixed patches, read from the cache --------------------------------------------------------
    def _grids(self, kind: str) -> list[tuple[int, GridSpec]]:
        grids = []
        for i in self._images:
            grid = self.splits[i].val if kind == "val" else self.splits[i].train
            if grid is not None:
                grids.append((i, grid))
        return grids

    @property
    def n_train(self) -> int:
        """Training positions (every corner, stride 1)."""
        return sum(self.splits[i].n_positions(self.patch_size) for i in self._images)

    @property
    def n_val(self) -> int:
        return sum(g.size for _, g in self._grids("val"))

    def validation_patches(self, max_patches: int | None = None) -> torch.Tensor:
        """Validation patches (N, C, P, P): ``PatchSampler``'s, a fixed evenly spaced subset when capped."""
        return self._fixed("val", max_patches)

    def training_patches(self, max_patches: int | None = None) -> torch.Tensor:
        """Training patches (N, C, P, P) on ``PatchSampler``'s grid, evenly spaced when capped."""
        return self._fixed("train", max_patches)

    def _fixed(self, kind: str, max_patches: int | None) -> torch.Tensor:
        key = (kind, max_patches)
        if key not in self._fixed_cache:
            self._fixed_cache = {k: v for k, v in self._fixed_cache.items() if k[0] != kind}  # keep one per kind
            self._fixed_cache[key] = self._read_fixed(self._grids(kind), max_patches)
        return self._fixed_cache[key]

    def _read_fixed(self, grids: list[tuple[int, GridSpec]], max_patches: int | None) -> torch.Tensor:
        p = self.patch_size
        sizes = np.array([g.size for _, g in grids], dtype=np.int64)
        n = int(sizes.sum())
        if max_patches is not None and n > max_patches:  # the same subset as PatchSampler's
            index = torch.linspace(0, n - 1, max_patches).round().long().numpy()
        else:
            index = np.arange(n)
        out = np.empty((index.size, self.n_channels, p, p), np.float32)
        owner = np.searchsorted(np.cumsum(sizes), index, side="right")
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        offsets = np.arange(p)
        for g in np.unique(owner):
            rows = np.flatnonzero(owner == g)
            image_index, grid = grids[g]
            y, x = grid.corners(index[rows] - starts[g])
            image = self.cache.open(image_index)
            patches = image[(y[:, None] + offsets)[:, :, None], (x[:, None] + offsets)[:, None, :]]  # (n, P, P, C)
            out[rows] = patches.transpose(0, 3, 1, 2)
            del image, patches
        return torch.from_numpy(out).to(self.device)

    def close(self) -> None:
        """Stop the reader thread and delete the cache (the pool cannot sample afterwards);
        done by itself when the pool is garbage collected."""
        self._finalizer()
