"""The cells and cohort-QC use cases (engine.cells.use_case) on real ROIs, with masks made here.

The use cases must give what their pieces give (``apply_to_image`` then
``cells_from_application`` / ``roi_marker_rows``: the Reconstruct widget's path), check every
input before any work, keep images an earlier run finished, and put the cohort's rows in the
order the images were given.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cell_masks import nuclear_mask

from napari_imc_vae.engine.apply.use_case import ApplyCancelled, ApplySettings, apply_to_image
from napari_imc_vae.engine.cells.cohort_run import done_stamp, finished_rows
from napari_imc_vae.engine.cells.outcome import CellsPlan, ImageProgress, QcPlan
from napari_imc_vae.engine.cells.qc import HEATMAP_TOP, roi_marker_rows
from napari_imc_vae.engine.cells.table import cells_from_application
from napari_imc_vae.engine.cells.use_case import cell_tables, cohort_qc
from napari_imc_vae.engine.data.cohort import ImageStream
from napari_imc_vae.io import read_imc
from napari_imc_vae.io.masks import MaskError, read_mask
from napari_imc_vae.io.outputs import write_json

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROIS = ("20210305_NE_mockData1_002", "20210305_NE_mockData3_002", "20210305_NE_mockData4_001")
SETTINGS = ApplySettings(motifs=3, outputs=("raw", "error", "residual", "latent", "hot_pixels"),
                         max_quality_patches=256)


@pytest.fixture(scope="module")
def images(imc_testdata):
    return [read_imc(imc_testdata / "steinbock_img" / f"{s}.ome.tiff") for s in ROIS]


@pytest.fixture
def masks(images, tmp_path):
    """Each ROI's nuclei (connected components of the smoothed H3K27Ac channel above 2 counts)."""
    files = {}
    for im in images:
        files[im.name] = tmp_path / f"{im.name}.tiff"
        tifffile.imwrite(files[im.name], nuclear_mask(im))
    return files


def test_cell_tables_give_what_applying_and_measuring_give(cells_model, images, masks):
    events, done = [], []
    outcome = cell_tables(cells_model, images, masks, SETTINGS, on_progress=events.append,
                          on_image=lambda d: done.append((d.table, d.mask)))
    assert isinstance(events[0], CellsPlan) and [n for n, _ in events[0].images] == list(ROIS)
    assert events[0].images[0][1] == images[0].shape[1:] and events[0].masks == masks
    tiles = [e for e in events[1:] if e.stage == "reconstruct"]
    assert all(isinstance(e, ImageProgress) for e in events[1:])
    assert [e.image for e in tiles if e.done == e.total] == list(ROIS)  # each image's tiles, in order
    for im, (table, mask) in zip(images, done):
        expected = cells_from_application(apply_to_image(cells_model, im, SETTINGS), read_mask(masks[im.name]),
                                          mask_name=str(masks[im.name]))
        assert mask == masks[im.name] and table.image == im.name
        np.testing.assert_equal(table.rows(), expected.rows())  # every column of every cell (NaN = NaN)
        np.testing.assert_array_equal(table.latent, expected.latent)
        assert outcome.cells[im.name] == (len(expected), int(expected.touched_by_artefact.sum()))
    assert all(n > 0 for n, _ in outcome.cells.values())


def test_cell_tables_check_every_mask_before_any_work(cells_model, images, masks):
    tifffile.imwrite(masks[ROIS[2]], np.ones((20, 30), np.uint16))
    done = []
    with pytest.raises(MaskError, match=rf"the mask {masks[ROIS[2]]} is 20×30 px but the image {ROIS[2]} is "):
        cell_tables(cells_model, images, masks, SETTINGS, on_image=done.append)
    assert done == []  # the first two, with good masks, were not applied either
    with pytest.raises(MaskError, match=rf"no mask given for the image\(s\) {ROIS[1]}, {ROIS[2]}"):
        cell_tables(cells_model, images, {ROIS[0]: masks[ROIS[0]]}, SETTINGS, on_image=done.append)
    with pytest.raises(ValueError, match="no images found in an empty folder"):
        cell_tables(cells_model, [], masks, SETTINGS, source="an empty folder")
    with pytest.raises(ApplyCancelled, match=f"cancelled before applying the model to {ROIS[0]}"):
        cell_tables(cells_model, images[:2], masks, SETTINGS, on_image=done.append, cancel=lambda: True)
    assert done == []


def test_cell_tables_refuse_a_one_shot_iterator_before_announcing_any_work(cells_model, images, masks):
    events = []
    with pytest.raises(TypeError, match="images must be a sequence of ImcImage or an ImageStream "
                                        r"\(read twice: checks, then work\), got the one-shot iterator generator"):
        cell_tables(cells_model, (im for im in images), masks, SETTINGS, on_progress=events.append)
    assert events == []  # no plan announced for work that would not be done


def test_cohort_qc_takes_a_list_of_images_and_refuses_a_generator(cells_model, images, tmp_path):
    outcome = cohort_qc(cells_model, list(images[:2]), SETTINGS, output=tmp_path, order=ROIS)
    assert [r["roi"] for r in outcome.rows][::5] == list(ROIS[:2])  # five markers per ROI
    with pytest.raises(TypeError, match="images must be an ImageStream or a sequence of ImcImage, got generator"):
        cohort_qc(cells_model, (im for im in images), SETTINGS, output=tmp_path, order=ROIS)


def _stream(images) -> ImageStream:
    return ImageStream([lambda im=im: im for im in images])


def test_cohort_qc_rows_follow_the_given_order_and_name_the_worst(cells_model, images, tmp_path):
    events, done = [], []
    order = [ROIS[2], ROIS[0], ROIS[1]]
    outcome = cohort_qc(cells_model, _stream(images), SETTINGS, output=tmp_path, order=order,
                        on_progress=events.append, on_image=done.append)
    assert events[0] == QcPlan(processes=1, is_main=True, motifs=cells_model.motif_model.k)
    assert [d.name for d in done] == list(ROIS) and not any(d.kept for d in done)
    motifs_used = {d.application.motif_model.k for d in done}
    assert motifs_used == {cells_model.motif_model.k}  # the model's own, not SETTINGS' 3
    by_image = {im.name: roi_marker_rows(apply_to_image(cells_model, im, _qc_settings(cells_model))) for im in images}
    assert outcome.rows == [r for name in order for r in by_image[name]]
    assert done[0].done_mark == {**done_stamp(cells_model, _qc_settings(cells_model)), "rows": done[0].rows}
    errors = {name: np.mean([r["mean_error"] for r in rows]) for name, rows in by_image.items()}
    assert outcome.worst[0][0] == (max(errors, key=errors.get), pytest.approx(max(errors.values())))
    assert outcome.heatmap_top == max(HEATMAP_TOP, float(np.nanmax(outcome.matrix)))
    assert outcome.headline.startswith(f"Worst ROIs: {max(errors, key=errors.get)}")


def _qc_settings(cells_model) -> ApplySettings:
    from dataclasses import replace

    return replace(SETTINGS, motifs=cells_model.motif_model.k)


def test_cohort_qc_keeps_images_an_earlier_run_finished_with_the_same_settings(cells_model, images, tmp_path):
    first = []
    cohort_qc(cells_model, _stream(images), SETTINGS, output=tmp_path, order=ROIS, on_image=first.append)
    for d in first[:2]:  # as if stopped during the last image: only the first two left their mark
        write_json(tmp_path / d.done_file, d.done_mark)
    again = []
    outcome = cohort_qc(cells_model, _stream(images), SETTINGS, output=tmp_path, order=ROIS, on_image=again.append)
    assert [d.kept for d in again] == [True, True, False]
    assert outcome.rows == [r for d in first for r in d.rows]  # the same rows as the uninterrupted run
    stamp = done_stamp(cells_model, _qc_settings(cells_model))
    assert finished_rows(tmp_path / first[0].done_file, stamp) == first[0].rows
    other = {**stamp, "quality_patches": 512}  # another setting: done again
    assert finished_rows(tmp_path / first[0].done_file, other) is None
    assert finished_rows(tmp_path / "absent_qc.json", stamp) is None
