"""The one in-memory form every reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_imc_vae.io._suffixes import ALL as _FILE_SUFFIXES


def source_stem(source: str | Path) -> str:
    """File (or folder) name without its IMC suffix: ``a/b.ome.tiff`` -> ``b``."""
    stem = Path(source).name
    for suffix in _FILE_SUFFIXES:  # longest first
        if stem.lower().endswith(suffix):
            return stem[: -len(suffix)]
    return stem


class ImcReadError(ValueError):
    """A file could not be read as an IMC image; the message names the file and the problem."""


class NonFiniteWarning(UserWarning):
    """An image holds NaN/Inf pixel values; they are kept as read, not replaced."""


@dataclass
class ImcImage:
    """One IMC acquisition: a float32 stack plus what identifies its channels.

    Parameters
    ----------
    data : ndarray of shape (C, Y, X)
        float32 counts (not always integers). Non-finite values are kept as read.
    channel_names : list of str
        Display name of each channel: the marker/target where known, else the metal.
        Unique within an image.
    metals : list of str or None
        Metal + mass of each channel (``"Pr141"``) where the file says so.
    labels : list of str or None
        Label/target as the file spells it (``"Cytokeratin 5"``) where known.
    pixel_size_um : float
        Pixel size in micrometres (IMC: 1.0).
    source : str
        Path the image was read from.
    acquisition : str or None
        Which acquisition of a multi-acquisition file (``.mcd``) this is.
    notes : list of str
        What the reader did that the user should know (e.g. a file-name prefix it
        removed from every channel name); the command line prints them.
    """

    data: np.ndarray
    channel_names: list[str]
    metals: list[str | None] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)
    pixel_size_um: float = 1.0
    source: str = ""
    acquisition: str | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        if data.ndim != 3:
            raise ValueError(f"ImcImage data must have shape (C, Y, X), got shape {data.shape}")
        self.data = data.astype(np.float32, copy=False)
        n = data.shape[0]
        self.channel_names = [str(c) for c in self.channel_names]
        if len(self.channel_names) != n:
            raise ValueError(
                f"ImcImage has {n} channels but {len(self.channel_names)} channel names"
            )
        if len(set(self.channel_names)) != n:
            dup = sorted({c for c in self.channel_names if self.channel_names.count(c) > 1})
            raise ValueError(f"ImcImage channel names must be unique; repeated: {dup}")
        self.metals = list(self.metals) if self.metals else [None] * n
        self.labels = list(self.labels) if self.labels else [None] * n
        if len(self.metals) != n or len(self.labels) != n:
            raise ValueError("ImcImage metals and labels must have one entry per channel")

    @property
    def n_channels(self) -> int:
        return int(self.data.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def name(self) -> str:
        """Short name for layers and output files: file stem plus acquisition."""
        stem = source_stem(self.source) if self.source else "image"
        return f"{stem}_{self.acquisition}" if self.acquisition else stem

    @property
    def channel_keys(self) -> list[str]:
        """Identity used to match channels between images and models, one per channel.

        The channel's metal (``Pr141``) where known, since the same panel is labelled
        differently by different exporters; else its name (matched by label, see
        :func:`napari_imc_vae.preprocessing.match_channels`).
        """
        return [str(m) if m else n for m, n in zip(self.metals, self.channel_names)]

    @property
    def nonfinite_count(self) -> int:
        return int(self.data.size - np.count_nonzero(np.isfinite(self.data)))


#: Environment variable: the largest image a reader decodes, in GB as float32 (default: see
#: :func:`image_size_limit`).
MAX_IMAGE_ENV = "NAPARI_IMC_VAE_MAX_IMAGE_GB"
#: Never more than this (as float32), whatever the machine: a header claiming more is damaged.
MAX_IMAGE_BYTES = 1 << 36
#: Normalizing and diagnosing an image hold several float32 copies of it (measured: about 8 for
#: ``diagnose``), so an image may take at most this share of the memory available.
MEMORY_SHARE = 8


def _available_memory() -> int | None:
    """Bytes of memory available now (Linux: MemAvailable), else the physical memory; None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def image_size_limit() -> tuple[int, str]:
    """The largest image (bytes as float32) a reader decodes, and where that limit comes from."""
    import os

    text = os.environ.get(MAX_IMAGE_ENV, "").strip()
    if text:
        try:
            gb = float(text)
        except ValueError:
            gb = float("nan")
        if gb > 0:
            return int(min(gb * 1e9, MAX_IMAGE_BYTES)), f"set by {MAX_IMAGE_ENV}={text}"
        raise ImcReadError(f"{MAX_IMAGE_ENV} must be a number of GB > 0, got {text!r}")
    available = _available_memory()
    if available is None:
        return MAX_IMAGE_BYTES, "the fixed limit"
    return (min(available // MEMORY_SHARE, MAX_IMAGE_BYTES),
            f"1/{MEMORY_SHARE} of the {available / 1e9:.1f} GB of memory available; set {MAX_IMAGE_ENV} to change it")


def check_decoded_size(path, shape, dtype) -> None:
    """Refuse, before decoding, an image whose pixels would not fit: a compressed file can claim
    (and hold) far more than its size suggests.

    Raises
    ------
    ImcReadError
        Naming the shape, the size as stored and as float32, and the limit.
    """
    n = 1
    for side in shape:
        n *= int(side)
    stored, as_float = n * np.dtype(dtype).itemsize, n * 4
    limit, why = image_size_limit()
    if as_float > limit:
        raise ImcReadError(
            f"{path}: the image is {' x '.join(str(int(s)) for s in shape)} {np.dtype(dtype).name} "
            f"({stored / 1e9:.2f} GB decoded, {as_float / 1e9:.2f} GB as float32), more than the limit of "
            f"{limit / 1e9:.2f} GB ({why})"
        )
