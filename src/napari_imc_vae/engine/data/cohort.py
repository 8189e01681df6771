"""Training data for cohorts larger than RAM: images read one at a time, a disk cache, one path choice.

:func:`build_sampler` is the one place that decides how a run holds its normalized pixels
(the command line and the napari widget both reach it through ``TrainingRun``):

- up to :attr:`CohortOptions.in_memory_mb` of normalized float32 pixels, in RAM, packed in a
  :class:`~napari_imc_vae.engine.data.patches.PatchSampler` (fastest for one or a few ROIs);
- above that, in a :class:`NormalizedCache` on disk (float16 where the values fit, see there)
  and sampled through a bounded :class:`~napari_imc_vae.engine.data.pool.PatchPool`, so peak memory
  depends on the pool and the model, not on the number of images.

Images may come as an :class:`ImageStream`, which reads each file only when iterated and keeps
none, so a run never holds more than one raw image at a time.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_imc_vae.io import ImcImage
from napari_imc_vae.io.atomic import OWNER_PATTERN

#: Largest finite float16; a normalized image with a larger finite value is cached in float32.
FLOAT16_MAX = 65504.0
#: Cache folders are ``<prefix><host>-p<pid>-<random>``: the owner, so a later run can remove a
#: cache whose process was killed outright.
CACHE_PREFIX = "napari-imc-vae-cache-"
_CACHE_NAME = re.compile(rf"^{CACHE_PREFIX}{OWNER_PATTERN}-[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class CohortOptions:
    """How a training run holds its normalized pixels (see :func:`build_sampler`).

    Attributes
    ----------
    in_memory_mb : float
        Normalized float32 pixels up to this size stay in RAM (the packed sampler costs about
        twice this while it is built); above it they go to the disk cache. 0 always caches.
    pool_mb : float
        Size of the in-memory patch pool (float32 tiles, on the training device).
    cache_dir : str or None
        Where the cache's temporary folder is made (default: the system temp folder; it should
        be a disk, not a RAM-backed tmpfs). The folder is deleted when the sampler is.
    reuse : float
        Average number of sampled patches each pooled pixel appears in before it is replaced.
    """

    #: 256 MB: one 1024² × 40 image stays in RAM; 3 of them in RAM peaked at 2.1 GB against 1.0 GB
    #: through the pool, which was as fast (docs/benchmarks.md, "Cohorts larger than RAM").
    in_memory_mb: float = 256.0
    pool_mb: float = 256.0
    cache_dir: str | None = None
    reuse: float = 4.0

    @classmethod
    def from_env(cls) -> "CohortOptions":
        """Defaults, overridden by ``NAPARI_IMC_VAE_IN_MEMORY_MB``, ``NAPARI_IMC_VAE_POOL_MB`` and
        ``NAPARI_IMC_VAE_CACHE_DIR`` where set (the same for the command line and the widget).

        Raises
        ------
        ValueError
            For a variable that is not a number >= 0.
        """
        values: dict = {}
        for field, name in (("in_memory_mb", "NAPARI_IMC_VAE_IN_MEMORY_MB"), ("pool_mb", "NAPARI_IMC_VAE_POOL_MB")):
            text = os.environ.get(name)
            if text:
                try:
                    values[field] = float(text)
                except ValueError:
                    raise ValueError(f"{name} must be a number of MB, got {text!r}") from None
                if not values[field] >= 0:
                    raise ValueError(f"{name} must be >= 0, got {text!r}")
        if os.environ.get("NAPARI_IMC_VAE_CACHE_DIR"):
            values["cache_dir"] = os.environ["NAPARI_IMC_VAE_CACHE_DIR"]
        return cls(**values)


def fits_in_memory(normalized_bytes: int, options: CohortOptions) -> bool:
    """Whether normalized pixels of this size are kept in RAM (else cached on disk and pooled)."""
    return normalized_bytes <= options.in_memory_mb * 2**20


class ImageStream:
    """Images read one file at a time whenever it is iterated; none is kept between items.

    Parameters
    ----------
    loaders : sequence of callables
        Each returns one :class:`ImcImage` or a list of them (an .mcd's acquisitions).
    """

    def __init__(self, loaders: Sequence[Callable[[], ImcImage | list[ImcImage]]]) -> None:
        self.loaders = list(loaders)

    def __iter__(self) -> Iterator[ImcImage]:
        for load in self.loaders:
            loaded = load()
            yield from ([loaded] if isinstance(loaded, ImcImage) else loaded)

    def __repr__(self) -> str:
        return f"ImageStream({len(self.loaders)} sources)"


class NormalizedCache:
    """Normalized images on disk, one ``.npy`` file each, laid out (Y, X, C).

    Channels last, so a tile of T×T pixels is T contiguous runs of T·C values. Values are stored
    as float16 unless an image has a finite value beyond :data:`FLOAT16_MAX` (then float32):
    float16 keeps 11 significant bits, a rounding error of at most 2**-11·|v| (|v| < 2: below
    0.001 normalized units), far below the shot noise of IMC data (measured in
    ``docs/benchmarks.md``, "Cohorts larger than RAM"). NaN and ±Inf are kept.

    The folder is a fresh temporary one, ``napari-imc-vae-cache-<host>-p<pid>-<random>``,
    deleted by :meth:`close`, when the cache is garbage collected, or at interpreter exit (also
    after Ctrl-C, SIGTERM or SIGHUP on the command line). A cache left by a process killed
    outright is deleted by the next cache made in the same place, once that process is gone.

    Parameters
    ----------
    directory : str or None
        Parent of the temporary folder (default: the system temp folder).
    """

    def __init__(self, directory: str | None = None) -> None:
        from napari_imc_vae.io.atomic import OutputError, owner_tag, remove_leftovers

        parent = directory or tempfile.gettempdir()
        remove_leftovers(parent, _CACHE_NAME)
        try:
            self.path = Path(tempfile.mkdtemp(prefix=f"{CACHE_PREFIX}{owner_tag()}-", dir=parent))
        except OSError as e:
            raise OutputError(f"cannot make the training cache in {parent}: {e.strerror or e} (set "
                              f"NAPARI_IMC_VAE_CACHE_DIR to a writable folder on a disk with room)") from e
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), ignore_errors=True)
        self.shapes: list[tuple[int, int]] = []
        self.dtypes: list[np.dtype] = []
        self.n_channels: int | None = None
        #: No NaN or Inf in any image added.
        self.all_finite = True

    def __len__(self) -> int:
        return len(self.shapes)

    def add(self, normalized: np.ndarray) -> None:
        """Write one normalized (C, Y, X) image (see :meth:`add_channels`)."""
        if normalized.ndim != 3:
            raise ValueError(f"a normalized image must have shape (C, Y, X), got {normalized.shape}")
        self.add_channels(normalized, normalized.shape)

    def add_channels(self, channels: Iterable[np.ndarray], shape: tuple[int, int, int]) -> None:
        """Write one normalized image given channel by channel ((Y, X) arrays), so that only the
        stored copy and one channel are in memory (``Normalizer.normalized_channels``).

        Raises
        ------
        ValueError
            For a channel count that differs from the first image's or from ``shape``.
        """
        c, h, w = shape
        if self.n_channels is not None and c != self.n_channels:
            raise ValueError(f"image has {c} channels, the cache holds {self.n_channels}")
        stored = np.empty((h, w, c), np.float16)
        n = 0
        for n, channel in enumerate(channels, start=1):
            finite = np.isfinite(channel)
            self.all_finite = self.all_finite and bool(finite.all())
            peak = max(abs(float(channel.max(where=finite, initial=0.0))),
                       abs(float(channel.min(where=finite, initial=0.0))))
            if peak > FLOAT16_MAX and stored.dtype == np.float16:  # would overflow: keep float32
                stored = stored.astype(np.float32)
            stored[..., n - 1] = channel
        if n != c:
            raise ValueError(f"expected {c} channels, got {n}")
        self._save(self._file(len(self.shapes)), stored)
        self.n_channels = c
        self.shapes.append((h, w))
        self.dtypes.append(stored.dtype)

    def _save(self, file: Path, stored: np.ndarray) -> None:
        """``np.save``, with a full disk said as such (numpy says only "N requested and M written")."""
        from napari_imc_vae.io.atomic import OutputError, free_space, size_text

        try:
            np.save(file, stored)
        except OSError as e:
            file.unlink(missing_ok=True)
            cause = e.strerror or str(e)
            raise OutputError(
                f"cannot write the training cache {file} ({size_text(stored.nbytes)} for one image): {cause}; "
                f"disk full? {free_space(self.path.parent)}; set NAPARI_IMC_VAE_CACHE_DIR to a folder on a disk with "
                f"room, or NAPARI_IMC_VAE_IN_MEMORY_MB higher to keep the images in RAM") from e

    def _file(self, index: int) -> Path:
        return self.path / f"{index:05d}.npy"

    def open(self, index: int) -> np.ndarray:
        """Image ``index`` as a read-only memory map of shape (Y, X, C).

        Drop it when done: pages of a map count in the process's resident memory while it lives.
        """
        return np.load(self._file(index), mmap_mode="r")

    @property
    def nbytes(self) -> int:
        return sum(h * w * (self.n_channels or 0) * d.itemsize for (h, w), d in zip(self.shapes, self.dtypes))

    def close(self) -> None:
        """Delete the folder (idempotent)."""
        self._finalizer()


def build_sampler(images: Iterable[ImcImage], normalizer, patch_size: int, *, val_fraction: float,
                  device, seed: int = 0, options: CohortOptions | None = None,
                  on_image: Callable[[ImcImage], None] | None = None):
    """Normalize the images one at a time into the sampler training draws from.

    Normalized images are kept in RAM while their total stays within
    ``options.in_memory_mb`` (:func:`fits_in_memory`); as soon as it would not, every image (the
    kept ones first) goes to a :class:`NormalizedCache` and the result is a
    :class:`~napari_imc_vae.engine.data.pool.PatchPool`.

    Parameters
    ----------
    images : iterable of ImcImage
        A list or an :class:`ImageStream`; iterated once.
    normalizer : Normalizer
    patch_size : int
    val_fraction : float
        Height of each image's validation band, as for ``PatchSampler``.
    device : torch.device or str
    seed : int
        Seeds the pool's choice of tiles; under ``torchrun`` each rank adds its ``RANK`` (each
        rank builds its own cache and pool, so their pools hold different tiles).
    options : CohortOptions, optional
        Default :meth:`CohortOptions.from_env`.
    on_image : callable, optional
        Called with each raw image before it is normalized (checks that need the raw pixels).

    Returns
    -------
    PatchSampler or PatchPool
        Both have ``sample_views``, ``sample``, ``validation_patches``, ``training_patches``,
        ``n_train``, ``n_val``, ``all_finite`` and ``device``.
    """
    from napari_imc_vae.engine.data.patches import PatchSampler
    from napari_imc_vae.engine.device import process_context
    from napari_imc_vae.engine.data.pool import PatchPool

    from napari_imc_vae.io.atomic import remove_leftovers

    options = options or CohortOptions.from_env()
    # caches of runs killed outright (kill -9), even when this run keeps its images in RAM
    remove_leftovers(options.cache_dir or tempfile.gettempdir(), _CACHE_NAME)
    kept: list[np.ndarray] = []
    kept_bytes, cache = 0, None
    for image in images:
        if on_image is not None:
            on_image(image)
        shape = (normalizer.n_channels, *image.shape[1:])
        nbytes = 4 * int(np.prod(shape))
        if cache is None and fits_in_memory(kept_bytes + nbytes, options):
            kept.append(normalizer(image))
            kept_bytes += nbytes
            continue
        if cache is None:
            cache = NormalizedCache(options.cache_dir)
            for earlier in kept:
                cache.add(earlier)
            kept = []
        # channel by channel: the raw image, one normalized channel and the stored copy
        cache.add_channels(normalizer.normalized_channels(image), shape)
    image = None  # the last raw image is not needed while the pool fills
    if cache is None:
        if not kept:
            raise ValueError("no images to train on")
        return PatchSampler(kept, patch_size, val_fraction=val_fraction, device=device)
    return PatchPool(cache, patch_size, val_fraction=val_fraction, device=device, pool_mb=options.pool_mb,
                     reuse=options.reuse, seed=seed + 7919 * process_context().rank)


__all__ = ["CohortOptions", "FLOAT16_MAX", "ImageStream", "NormalizedCache", "build_sampler", "fits_in_memory"]
