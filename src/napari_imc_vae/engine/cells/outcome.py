"""What the cells and cohort-QC use cases announce, hand over per image, and return.

:func:`~napari_imc_vae.engine.cells.use_case.cell_tables` and
:func:`~napari_imc_vae.engine.cells.use_case.cohort_qc` read a cohort one image at a time. Each
tells ``on_progress`` its plan once every input is checked (before any work), then
:class:`ImageProgress` records while an image is applied; it gives each finished image to
``on_image`` (:class:`CellsOfImage`, :class:`ImageQC`: the caller writes it) before the next one
is read, and returns a small outcome that holds no image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["CellsOfImage", "CellsOutcome", "CellsPlan", "CohortQC", "ImageProgress", "ImageQC", "QcPlan"]


@dataclass(frozen=True)
class ImageProgress:
    """One step of applying the model to one image.

    Attributes
    ----------
    image : str
        The image's name.
    stage : str
        :func:`~napari_imc_vae.engine.apply.use_case.apply_to_image`'s stage: ``"reconstruct"``
        (``done`` of ``total`` tiles), ``"quality"``, ``"motifs"``.
    done, total : int
    """

    image: str
    stage: str
    done: int
    total: int


@dataclass(frozen=True)
class CellsPlan:
    """Every image checked against the model and paired with a mask of its size; no work done yet.

    Attributes
    ----------
    images : list of (str, (int, int))
        Name and (Y, X) of every image, in the order they are read.
    masks : dict of str to Path
        The mask file of each image.
    """

    images: list[tuple[str, tuple[int, int]]]
    masks: dict[str, Path]


@dataclass
class CellsOfImage:
    """One image done: what applying the model gave, and its cells.

    Attributes
    ----------
    application : ModelApplication
    table : CellTable
    mask : Path
    """

    application: object
    table: object
    mask: Path

    @property
    def touched(self) -> int:
        """Cells touched by an artefact: a region of high error as listed in ``<image>_regions.csv``,
        or a pixel the hot-pixel filter replaced."""
        return int(self.table.touched_by_artefact.sum())

    @property
    def with_spike(self) -> int:
        """Cells holding an isolated spike (listed apart from the regions; not counted in :attr:`touched`)."""
        if self.table.spike_fraction is None:
            return 0
        return int((self.table.spike_fraction > 0).sum())


@dataclass
class CellsOutcome:
    """Cells per image (name → (cells, cells touched by an artefact)), in the order done."""

    cells: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class QcPlan:
    """The cohort QC about to start in this process.

    Attributes
    ----------
    processes : int
        Processes sharing the images (the ``torchrun`` world size; 1 without it).
    is_main : bool
        Whether this process prints for the job and writes the cohort's files.
    motifs : int
        The model's own motifs, used on every image (0: the model holds none, none are found).
    """

    processes: int
    is_main: bool
    motifs: int


@dataclass
class ImageQC:
    """One ROI of the cohort: its rows, and what to write so that a later run keeps it.

    Attributes
    ----------
    name : str
    rows : list of dict
        :func:`~napari_imc_vae.engine.cells.qc.roi_marker_rows`.
    application : ModelApplication or None
        None when an earlier run finished this image (its files are there, kept).
    done_file : str
        File name of the image's done mark in the output folder (``<image>_qc.json``).
    done_mark : dict
        Its content: the settings it was made with and the rows. Write it last, with the
        image's other files: its presence means the image is done.
    """

    name: str
    rows: list[dict]
    application: object | None
    done_file: str
    done_mark: dict

    @property
    def kept(self) -> bool:
        return self.application is None


@dataclass
class CohortQC:
    """What the cohort QC found. Only the main process holds every process's rows and the summary.

    Attributes
    ----------
    rows : list of dict
        One per ROI × marker (:data:`~napari_imc_vae.engine.cells.qc.QC_COLUMNS`); on the main
        process every ROI's, in the order the images were given; elsewhere this process's own.
    is_main : bool
    summary : CohortSummary or None
        None outside the main process.
    error_unit : str
        The calibrated error's unit, in words.
    heatmap_top : float
        Where the heatmap's colour scale tops (see
        :data:`~napari_imc_vae.engine.cells.qc.HEATMAP_TOP`).
    """

    rows: list[dict]
    is_main: bool = True
    summary: object | None = None
    error_unit: str = ""
    heatmap_top: float = 0.0

    @property
    def matrix(self) -> np.ndarray:
        """(ROIs, markers) of the mean calibrated error, NaN where not measured."""
        return self.summary.matrix("mean_error")

    @property
    def worst(self) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """The worst ROIs and markers (name, mean calibrated error)."""
        return self.summary.worst()

    @property
    def headline(self) -> str:
        return self.summary.headline(self.error_unit)

    @property
    def sentences(self) -> list[str]:
        return self.summary.sentences(self.error_unit)
