"""What running QC over a cohort takes besides the measures: the processes of a ``torchrun``
job, and the done marks a run started again skips finished images by.

Under ``torchrun`` each process takes every world-size-th input file (:func:`my_share`) and
the main process gathers every process's rows (:func:`gather_rows`). Each finished image
leaves a done mark, ``<image>_qc.json`` (:func:`done_file`), holding the settings it was made
with (:func:`done_stamp`) and its rows: a later run with the same model file and settings
reads the rows back (:func:`finished_rows`) instead of applying the model again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

__all__ = ["DONE_SUFFIX", "done_file", "done_stamp", "finished_rows", "gather_rows", "my_share"]

#: A done mark's file name is the image's safe stem and this.
DONE_SUFFIX = "_qc.json"


def barrier(dist) -> None:
    """Wait for every process of the job (nothing without ``torchrun``)."""
    if dist.active:
        import torch.distributed

        torch.distributed.barrier()


def my_share(images, dist):
    """This process's images: every world-size-th one, starting at its rank.

    Of an :class:`~napari_imc_vae.engine.data.cohort.ImageStream`, every world-size-th input
    file (or single-image folder); of a sequence of images, every world-size-th image.

    Raises
    ------
    TypeError
        ``images`` is neither (e.g. a generator: it cannot be shared out by position).
    """
    from napari_imc_vae.engine.data.cohort import ImageStream

    if isinstance(images, ImageStream):
        return ImageStream(images.loaders[dist.rank::dist.world_size])
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        return images[dist.rank::dist.world_size]
    raise TypeError(f"images must be an ImageStream or a sequence of ImcImage, got {type(images).__name__}")


def gather_rows(rows: list[dict], dist) -> list[dict]:
    """Every process's rows on the main process, in rank order (the others get their own back)."""
    if not dist.active:
        return rows
    import torch.distributed

    gathered = [None] * dist.world_size if dist.is_main else None
    torch.distributed.gather_object(rows, gathered, dst=0)
    return [r for part in gathered for r in part] if dist.is_main else rows


def done_stamp(trained, settings) -> dict:
    """What a done mark must match to be kept: the model file's content, stride, motifs and quality patches."""
    return {"model_sha256": trained.file_sha256, "stride": settings.stride, "motifs": settings.motifs,
            "quality_patches": settings.max_quality_patches}


def done_file(image_name: str) -> str:
    """File name of an image's done mark in the output folder."""
    from napari_imc_vae.io.output_guard import safe_stem

    return f"{safe_stem(image_name)}{DONE_SUFFIX}"


def finished_rows(path: Path, stamp: dict) -> list[dict] | None:
    """The rows of an image finished by an earlier run with the same model and settings, else None."""
    try:
        done = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if any(done.get(k) != v for k, v in stamp.items()):
        return None  # another model or stride: do it again
    return done.get("rows")
