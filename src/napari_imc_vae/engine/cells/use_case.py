"""Per-cell tables and cohort QC of many images: the one home of the CLI's ``cells`` and ``qc``.

Both apply one model to every image with
:func:`~napari_imc_vae.engine.apply.use_case.apply_to_image` (the Reconstruct widget's and
``reconstruct``'s function), one image at a time: an image is read, applied, handed to the
caller's ``on_image`` (which writes it) and dropped before the next is read, so memory is that
of one image whatever the cohort. Records for the caller: :mod:`.outcome`.

- :func:`cell_tables`: every image is checked against the model and its mask (present, same
  height and width) before any work, so a bad pairing gives an error and nothing else; then
  each image gets its table of :func:`~napari_imc_vae.engine.cells.table.cells_from_application`.
- :func:`cohort_qc`: each ROI gets its rows of
  :func:`~napari_imc_vae.engine.cells.qc.roi_marker_rows` with the model's own motifs; an image
  an earlier run finished is kept (:mod:`.cohort_run`); under ``torchrun`` the processes share
  the input files and the main one gathers every row, in the order the images were given,
  and sums the cohort up (:class:`~napari_imc_vae.engine.cells.qc.CohortSummary`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from napari_imc_vae.engine.apply.use_case import ApplySettings, apply_to_image, check_cancel
from napari_imc_vae.engine.cells.cohort_run import (
    barrier,
    done_file,
    done_stamp,
    finished_rows,
    gather_rows,
    my_share,
)
from napari_imc_vae.engine.cells.outcome import (
    CellsOfImage,
    CellsOutcome,
    CellsPlan,
    CohortQC,
    ImageProgress,
    ImageQC,
    QcPlan,
)
from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
from napari_imc_vae.io import ImcImage

__all__ = ["cell_tables", "cohort_qc", "qc_motifs"]


def cell_tables(trained: TrainedModel, images: Iterable[ImcImage], masks: str | Path | Mapping[str, Path],
                settings: ApplySettings | None = None, *, source: str = "the images",
                on_progress: Callable[[CellsPlan | ImageProgress], None] | None = None,
                on_image: Callable[[CellsOfImage], None] | None = None,
                cancel: Callable[[], bool] | None = None) -> CellsOutcome:
    """One table of cells per image: what applying ``trained`` found, cell by cell.

    Parameters
    ----------
    trained : TrainedModel
    images : sequence of ImcImage or ImageStream
        Iterated twice (checks, then work), so not a one-shot iterator such as a generator: an
        :class:`~napari_imc_vae.engine.data.cohort.ImageStream` reads each file when needed.
    masks : path or mapping
        A mask file (one image) or a folder of masks named like the images
        (:func:`~napari_imc_vae.io.masks.match_masks`), or the mask file of each image's name.
    settings : ApplySettings, optional
    source : str
        Where the images come from, for the message when there is none.
    on_progress : callable, optional
        Called with the :class:`CellsPlan` once every check passed, then with
        :class:`ImageProgress` records.
    on_image : callable, optional
        Called with each image's :class:`CellsOfImage` before the next image is read.
    cancel : callable, optional
        Polled between images and tile batches; when it returns True, ``ApplyCancelled`` is raised.

    Raises
    ------
    TypeError
        ``images`` is a one-shot iterator (a generator): the checks would use it up.
    ValueError
        No image in ``images``.
    ChannelMismatchError
        An image lacks channels of the model (names the missing and extra ones).
    MaskError
        An image without a mask, or whose mask is not its height and width (names both).
    """
    from napari_imc_vae.engine.cells.table import cells_from_application
    from napari_imc_vae.io.masks import check_mask_shape, mask_shape, match_masks, read_mask

    if iter(images) is images:  # read by the checks, it would leave no image for the work
        raise TypeError("images must be a sequence of ImcImage or an ImageStream (read twice: checks, then "
                        f"work), got the one-shot iterator {type(images).__name__}")
    settings = settings or ApplySettings()
    # every check before any work: an image without the model's channels, a missing mask or one
    # of another size ends the run with nothing written
    shapes = []
    for image in images:
        trained.match_channels(image)  # names the missing and extra channels
        shapes.append((image.name, tuple(image.shape[1:])))
        del image  # one image's memory at a time
    if not shapes:
        raise ValueError(f"no images found in {source}")
    names = [name for name, _ in shapes]
    files = _given_masks(names, masks) if isinstance(masks, Mapping) else match_masks(names, masks)
    for name, shape in shapes:
        check_mask_shape(mask_shape(files[name]), shape, mask_name=str(files[name]), image_name=name)
    if on_progress is not None:
        on_progress(CellsPlan(shapes, files))
    outcome = CellsOutcome()
    for image in images:
        check_cancel(cancel, f"cancelled before applying the model to {image.name}")
        app = apply_to_image(trained, image, settings, on_progress=_progress_of(image.name, on_progress),
                             cancel=cancel)
        mask = files[image.name]
        done = CellsOfImage(app, cells_from_application(app, read_mask(mask), mask_name=str(mask)), mask)
        if on_image is not None:
            on_image(done)
        outcome.cells[image.name] = (len(done.table), done.touched)
        del app, done, image  # before the next image is read: one image's memory at a time
    return outcome


def qc_motifs(trained: TrainedModel) -> int:
    """The motifs cohort QC finds: the model's own (the same on every image), 0 when it holds none."""
    return trained.motif_model.k if trained.motif_model is not None else 0


def cohort_qc(trained: TrainedModel, images, settings: ApplySettings, *, output: str | Path, order: Sequence[str],
              on_progress: Callable[[QcPlan | ImageProgress], None] | None = None,
              on_image: Callable[[ImageQC], None] | None = None,
              cancel: Callable[[], bool] | None = None) -> CohortQC:
    """Quality control of a cohort: one row per ROI × marker, and which are worst.

    Under ``torchrun`` this joins the job's process group (and leaves it at the end, unless the
    caller had joined it already): each process takes every world-size-th input file, and only
    the main process gets every row and the summary. Call it in every process, after the main
    one has made the output folder.

    Parameters
    ----------
    trained : TrainedModel
    images : ImageStream or sequence of ImcImage
        The cohort, one loader per input file (:func:`~napari_imc_vae.engine.cells.cohort_run.my_share`
        shares the files, or the images of a sequence, out among the processes).
    settings : ApplySettings
        Its ``motifs`` is ignored: the model's own are used (:func:`qc_motifs`).
    output : path
        The folder the caller writes each image into: done marks found there (same model file,
        stride, motifs and quality patches) are kept instead of applying the model again.
    order : sequence of str
        The images' output stems in the order given: the rows' order.
    on_progress : callable, optional
        Called with the :class:`QcPlan`, then with :class:`ImageProgress` records.
    on_image : callable, optional
        Called with each image's :class:`ImageQC` (also a kept one) before the next image is read.
    cancel : callable, optional
        Polled between images and tile batches; when it returns True, ``ApplyCancelled`` is raised.

    Raises
    ------
    TypeError
        ``images`` is neither an ImageStream nor a sequence (e.g. a generator).
    ChannelMismatchError
        An image lacks channels of the model (before its work; images before it are done).
    """
    from napari_imc_vae.engine.device import process_group, resolve_device

    settings = replace(settings, motifs=qc_motifs(trained))
    with process_group(resolve_device(settings.device or "auto")) as dist:
        barrier(dist)  # the main process has claimed the output folder: every process may write
        rows = _qc_rows(trained, my_share(images, dist), settings, dist, Path(output), on_progress, on_image, cancel)
        everyone = gather_rows(rows, dist)
        barrier(dist)  # a process leaving the group while the main one still gathers would abort it
    return summarize_cohort(everyone, order) if dist.is_main else CohortQC(rows, is_main=False)


def _qc_rows(trained, mine, settings, dist, out: Path, on_progress, on_image, cancel) -> list[dict]:
    from napari_imc_vae.engine.cells.qc import roi_marker_rows

    stamp = done_stamp(trained, settings)
    if on_progress is not None:
        on_progress(QcPlan(processes=dist.world_size, is_main=dist.is_main, motifs=settings.motifs))
    rows = []
    for image in mine:
        name = done_file(image.name)
        done = finished_rows(out / name, stamp)
        if done is not None:
            if on_image is not None:
                on_image(ImageQC(image.name, done, None, name, {**stamp, "rows": done}))
            rows += done
            del image
            continue
        check_cancel(cancel, f"cancelled before applying the model to {image.name}")
        app = apply_to_image(trained, image, settings, on_progress=_progress_of(image.name, on_progress),
                             cancel=cancel)
        image_rows = roi_marker_rows(app)
        result = ImageQC(image.name, image_rows, app, name, {**stamp, "rows": image_rows})
        if on_image is not None:
            on_image(result)
        rows += image_rows
        # drop this image's arrays now: the loop reads the next image before rebinding `image`,
        # and `app` would live until the next one is applied (three images' worth of memory)
        del app, image, result
    return rows


def summarize_cohort(rows: list[dict], order: Sequence[str]) -> CohortQC:
    """The main process's outcome: every row in the order the images were given, and the summary."""
    from napari_imc_vae.engine.apply.error_unit import ERROR_UNIT_NAME
    from napari_imc_vae.engine.cells.qc import CohortSummary, heatmap_top
    from napari_imc_vae.io.output_guard import safe_stem

    given = {stem: i for i, stem in enumerate(order)}
    rows = sorted(rows, key=lambda r: given.get(safe_stem(r["roi"]), len(given)))
    summary = CohortSummary(rows)
    return CohortQC(rows, True, summary, ERROR_UNIT_NAME, heatmap_top(summary.matrix("mean_error")))


def _given_masks(names: list[str], masks: Mapping) -> dict[str, Path]:
    from napari_imc_vae.io.masks import MaskError

    missing = [name for name in names if name not in masks]
    if missing:
        raise MaskError(f"no mask given for the image(s) {', '.join(missing)}")
    return {name: Path(masks[name]) for name in names}


def _progress_of(name: str, on_progress) -> Callable[[str, int, int], None] | None:
    """``apply_to_image``'s progress as :class:`ImageProgress` records of the image ``name``."""
    if on_progress is None:
        return None
    return lambda stage, done, total: on_progress(ImageProgress(name, stage, done, total))
