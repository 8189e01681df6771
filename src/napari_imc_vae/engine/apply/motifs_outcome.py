"""What the cohort-motifs use case announces, hands over per image, and returns.

:func:`~napari_imc_vae.engine.apply.motifs_use_case.cohort_motifs` tells ``on_progress`` its
:class:`MotifsPlan` before the first image is read, then per image :class:`ImageStarted` (before
the model is applied) and :class:`LatentMapDone` (after), and :class:`PooledMotifsFitted` when
the model file holds no motifs and they were fitted on the pooled latent vectors. Once every
image is labelled it gives each one to ``on_image`` (:class:`MotifsOfImage`: the caller writes
it), and returns :class:`CohortMotifs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CohortMotifs", "ImageStarted", "LatentMapDone", "MotifsOfImage", "MotifsPlan", "PooledMotifsFitted"]


@dataclass(frozen=True)
class MotifsPlan:
    """Where the motifs will come from; no image read yet.

    Attributes
    ----------
    stored : int
        The model's own motifs (fitted on its training images), used on every image; 0 when the
        model file holds none.
    pooled : int
        Motifs to fit on the latent vectors of all images when ``stored`` is 0 (fewer when the
        vectors hold fewer distinct ones).
    seed : int
        Of that fit.
    """

    stored: int
    pooled: int
    seed: int


@dataclass(frozen=True)
class ImageStarted:
    """An image read and matched to the model's channels; the model is applied next.

    Attributes
    ----------
    image : str
        The image's name.
    ignored_note : str or None
        ``"ignoring channels not in the model: …"`` when the image has channels the model does
        not know (left out), else None.
    """

    image: str
    ignored_note: str | None


@dataclass(frozen=True)
class LatentMapDone:
    """An image's latent map computed (the image itself is not kept).

    Attributes
    ----------
    image : str
    grid : (int, int)
        The latent map's (ny, nx): the image's pixels every ``stride``.
    """

    image: str
    grid: tuple[int, int]


@dataclass(frozen=True)
class PooledMotifsFitted:
    """The model file holds no motifs: ``motifs`` were fitted once on latent vectors of all ``images``."""

    motifs: int
    images: int


@dataclass
class MotifsOfImage:
    """One image labelled with the cohort's motifs.

    Attributes
    ----------
    image : str
        The image's output stem (its name as a safe file name), also the ``image`` of its rows.
    labels : ndarray of shape (ny, nx), int32
        Motif labels 1 … k on the latent grid.
    stride : int
        Image pixels between grid cells.
    pixel_size_um : float
        Of the image.
    abundance : list of dict
        :func:`~napari_imc_vae.engine.apply.motifs.motif_abundance`: pixels and fraction per motif.
    """

    image: str
    labels: np.ndarray
    stride: int
    pixel_size_um: float
    abundance: list[dict]

    @property
    def grid_pixel_size_um(self) -> float:
        """Pixel size of the labels' grid (the image's × stride)."""
        return self.pixel_size_um * self.stride


@dataclass
class CohortMotifs:
    """The motifs used on every image, and how much of each image each motif covers.

    Attributes
    ----------
    motifs : MotifModel
    source : str
        Where they come from, in words.
    pooled : bool
        True when fitted here on the images' latent vectors (the model file holds none).
    images : list of str
        Output stems, in the order read.
    abundance : list of dict
        Every image's :attr:`MotifsOfImage.abundance` rows, in that order.
    """

    motifs: object
    source: str
    pooled: bool
    images: list[str]
    abundance: list[dict]
