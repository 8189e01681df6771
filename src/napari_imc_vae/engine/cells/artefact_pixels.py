"""Which pixels the cell table counts as artefacts: those of the places ``reconstruct`` lists.

:func:`~napari_imc_vae.engine.apply.use_case.apply_to_image` lists *regions* of high error
(areas of at least :data:`~napari_imc_vae.engine.apply.regions.MIN_REGION_AREA` 8-connected
pixels above the threshold, the rows of ``<image>_regions.csv``) and, apart, *isolated spikes*
(smaller components, mostly single salt pixels). A cell touched by an artefact must be a cell
overlapping a listed region, not any pixel above the threshold: the application keeps the
regions' boxes and areas and the spikes' positions, not a label image, so the components are
labelled again here with the rule of :mod:`~napari_imc_vae.engine.apply.regions` (error as
float32, finite and above the threshold, 8-connected) and those the application listed are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["listed_pixels"]


def listed_pixels(error: np.ndarray, threshold: float, regions: Sequence[dict],
                  spikes: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of the listed regions, and those of the listed isolated spikes.

    Parameters
    ----------
    error : ndarray of shape (Y, X)
        The map the regions were found on (``ModelApplication.region_map``).
    threshold : float
        ``ModelApplication.region_threshold``; not finite: nothing was searched.
    regions : sequence of dict
        ``ModelApplication.regions`` (each with ``bbox`` (y0, x0, y1, x1) and ``area``).
    spikes : sequence of dict
        ``ModelApplication.spikes`` (each with ``y``, ``x``: its highest pixel).

    Returns
    -------
    in_region, in_spike : ndarray of shape (Y, X), bool
        A component is a listed region when its box and area are those of a row of ``regions``
        (only the :data:`~napari_imc_vae.engine.apply.regions.MAX_REGIONS` highest ranked are
        listed), a listed spike when it holds a spike's pixel.
    """
    from napari_imc_vae.engine.apply.regions import high_components

    shape = np.shape(error)
    in_region, in_spike = np.zeros(shape, bool), np.zeros(shape, bool)
    if not np.isfinite(threshold) or not (regions or spikes):
        return in_region, in_spike
    with np.errstate(invalid="ignore"):
        _, labels, excess, slices = high_components(error, threshold)
    n = len(excess)
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    boxes = {(int(r["bbox"][0]), int(r["bbox"][1]), int(r["bbox"][2]), int(r["bbox"][3]), int(r["area"]))
             for r in regions}
    listed = np.zeros(n + 1, bool)
    for j, sl in enumerate(slices, start=1):
        listed[j] = (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop, int(areas[j])) in boxes
    spiked = np.zeros(n + 1, bool)
    spiked[[int(labels[int(s["y"]), int(s["x"])]) for s in spikes]] = True
    spiked[0] = listed[0] = False  # label 0: below the threshold
    return listed[labels], spiked[labels]
