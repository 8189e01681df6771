"""The same tissue motifs on every image of a cohort: the one home of the CLI's ``motifs``.

:func:`cohort_motifs` applies the model to each image with
:func:`~napari_imc_vae.engine.apply.use_case.apply_to_image` (the latent map only: no
reconstruction, error or quality report), one image at a time, keeping only the latent maps
(one float per latent dimension per grid cell: small beside the images). The motifs are the
model's own, fitted on its training patches and stored in the model file, so motif 3 means the
same kind of tissue in every ROI; a model file without motifs (an older format) gets motifs
fitted once on latent vectors pooled from all the images. Then every latent map is labelled,
its motifs' pixels counted, and each image handed to the caller's ``on_image``. Records for
the caller: :mod:`.motifs_outcome`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from napari_imc_vae.engine.apply.motifs import MOTIF_FIT_POINTS, MotifModel, motif_abundance
from napari_imc_vae.engine.apply.motifs_outcome import (
    CohortMotifs,
    ImageStarted,
    LatentMapDone,
    MotifsOfImage,
    MotifsPlan,
    PooledMotifsFitted,
)
from napari_imc_vae.engine.apply.use_case import ApplySettings, apply_to_image, check_cancel
from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
from napari_imc_vae.engine.model_file.schema.fields import MAX_SEED  # also scikit-learn's random_state limit
from napari_imc_vae.engine.defaults import DEFAULT_MOTIFS, TILE_BATCH
from napari_imc_vae.io import ImcImage

__all__ = ["MotifsSettings", "cohort_motifs"]


@dataclass(frozen=True)
class MotifsSettings:
    """How to find a cohort's motifs; the ``motifs`` command's flags.

    Attributes
    ----------
    stride : int, optional
        Tile step, 1 … patch; default half the patch. The latent grid's spacing.
    batch_size : int
        Tiles per model call.
    device : str, optional
        ``auto``, ``cpu``, ``cuda[:K]``, ``mps``; default where the model is.
    precision : {"auto", "fp32", "bf16"}
        Of the model's forward pass.
    pooled_motifs : int
        Motifs fitted on the pooled latent vectors when the model file holds none (its own
        are used whatever their number).
    seed : int
        Of that fit, 0 … 2**32 - 1.
    """

    stride: int | None = None
    batch_size: int = TILE_BATCH
    device: str | None = None
    precision: str = "auto"
    pooled_motifs: int = DEFAULT_MOTIFS
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low, high in (("stride", 1, None), ("batch_size", 1, None), ("pooled_motifs", 1, None),
                                ("seed", 0, MAX_SEED)):
            value = getattr(self, name)
            if value is None and name == "stride":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (
                    high is not None and value > high):
                bounds = f">= {low}" if high is None else f"from {low} to {high}"
                raise ValueError(f"{name} must be a whole number {bounds}, got {value!r}")

    def apply_settings(self) -> ApplySettings:
        """What :func:`apply_to_image` computes for motifs: the latent map, nothing else."""
        return ApplySettings(stride=self.stride, batch_size=self.batch_size, device=self.device, motifs=0,
                             regions=False, quality=False, outputs=("latent",), precision=self.precision)


@dataclass
class _LatentOfImage:
    stem: str
    latent: np.ndarray
    stride: int
    pixel_size_um: float
    shape: tuple[int, int]


def cohort_motifs(trained: TrainedModel, images: Iterable[ImcImage], settings: MotifsSettings | None = None, *,
                  source: str = "the images",
                  on_progress: Callable[[object], None] | None = None,
                  on_image: Callable[[MotifsOfImage], None] | None = None,
                  cancel: Callable[[], bool] | None = None) -> CohortMotifs:
    """Label every image with the same motifs and count each motif's pixels per image.

    Parameters
    ----------
    trained : TrainedModel
    images : iterable of ImcImage
        Iterated once; an :class:`~napari_imc_vae.engine.data.cohort.ImageStream` reads each
        file when needed.
    settings : MotifsSettings, optional
    source : str
        Where the images come from, for the message when there is none.
    on_progress : callable, optional
        Called with the :class:`MotifsPlan` first, then per image :class:`ImageStarted` and
        :class:`LatentMapDone`, and :class:`PooledMotifsFitted` when motifs were fitted here.
    on_image : callable, optional
        Called with each image's :class:`MotifsOfImage`, in the order read, once every image is
        applied and the motifs are known: an error or a cancel before then hands over nothing.
    cancel : callable, optional
        Polled between images, between tile batches and before the first image is handed
        over; when it returns True, ``ApplyCancelled`` is raised.

    Raises
    ------
    ValueError
        No image in ``images``, or two images of one output name (their maps would overwrite
        each other).
    ChannelMismatchError
        An image lacks channels of the model (names the missing and extra ones).
    ImageContentError
        The model's channels of an image hold no finite pixel, or a single value.
    ApplyCancelled
    """
    from napari_imc_vae.io.output_guard import safe_stem

    settings = settings or MotifsSettings()
    tell = on_progress or (lambda event: None)
    stored = trained.motif_model
    tell(MotifsPlan(stored=0 if stored is None else stored.k, pooled=settings.pooled_motifs, seed=settings.seed))
    apply = settings.apply_settings()
    maps: list[_LatentOfImage] = []
    stems: set[str] = set()  # lower case: maps differing only in case overwrite each other on some disks
    for image in images:
        check_cancel(cancel, f"cancelled before applying the model to {image.name}")
        stem = safe_stem(image.name)
        if stem.lower() in stems:  # a name the caller's plan did not foresee
            raise ValueError(f"two images are named {stem!r} (the second from {image.source}); their "
                             f"motif maps would overwrite each other: give them to separate runs")
        match = trained.match_channels(image)  # names the missing and extra channels
        tell(ImageStarted(image.name, match.note() if match.ignored else None))
        rec = apply_to_image(trained, image, apply, cancel=cancel).reconstruction
        stems.add(stem.lower())
        maps.append(_LatentOfImage(stem, rec.latent, rec.stride, float(image.pixel_size_um), image.shape[1:]))
        tell(LatentMapDone(image.name, (int(rec.latent.shape[1]), int(rec.latent.shape[2]))))
        del image, rec  # latents are small, images are not: one image's memory at a time
    if not maps:
        raise ValueError(f"no images found in {source}")
    motifs, where = stored, f"the model's {stored.k} motifs, fitted on its training images" if stored else ""
    if motifs is None:
        vectors = np.concatenate([m.latent.reshape(m.latent.shape[0], -1).T for m in maps])
        motifs = MotifModel.fit(vectors, settings.pooled_motifs, seed=settings.seed, max_fit=MOTIF_FIT_POINTS)
        where = f"{motifs.k} motifs fitted once on latent vectors of all {len(maps)} image(s)"
        tell(PooledMotifsFitted(motifs.k, len(maps)))
    check_cancel(cancel, "cancelled before the images were labelled with the motifs")
    rows = []
    for m in maps:
        labels = motifs.assign(m.latent)
        done = MotifsOfImage(m.stem, labels, m.stride, m.pixel_size_um,
                             motif_abundance(m.stem, labels, m.stride, m.shape, motifs.k))
        if on_image is not None:
            on_image(done)
        rows += done.abundance
    return CohortMotifs(motifs, where, stored is None, [m.stem for m in maps], rows)
