"""Per-cell tables (engine.cells.table, io.masks, io.cell_outputs) on real ROIs with masks made here.

Masks are connected components of the smoothed nuclear channel (H3K27Ac) above a threshold,
the kind of segmentation a user brings; independent answers come from scikit-image's
``regionprops`` and plain per-cell loops written in the tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from cell_masks import nuclear_mask

from napari_imc_vae.engine.apply.use_case import ApplySettings, apply_to_image
from napari_imc_vae.engine.cells.table import FIXED_COLUMNS, cells_from_application, measure_cells
from napari_imc_vae.engine.apply.motifs import upsample_grid
from napari_imc_vae.io import read_imc
from napari_imc_vae.io.cell_outputs import write_cell_table
from napari_imc_vae.io.masks import MaskError, match_masks, read_mask

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROIS = ("20210305_NE_mockData1_002", "20210305_NE_mockData3_002")


@pytest.fixture(scope="module")
def images(imc_testdata):
    return [read_imc(imc_testdata / "steinbock_img" / f"{s}.ome.tiff") for s in ROIS]


@pytest.fixture(scope="module")
def application(images, cells_model):
    """A tiny model (20 steps, conftest.py) applied to the first ROI, with 4 motifs fitted on it."""
    return cells_model, apply_to_image(cells_model, images[0], ApplySettings(motifs=4, quality=False))


def test_mean_intensities_equal_regionprops_to_float_precision(images):
    from skimage.measure import regionprops

    image = images[0]
    labels = nuclear_mask(image)
    assert labels.max() >= 5
    names = list(image.channel_names)
    table = measure_cells(labels, image.data, markers=names, image_name=image.name)
    props = regionprops(labels, intensity_image=np.moveaxis(image.data.astype(np.float64), 0, -1))
    assert table.cell_id.tolist() == [p.label for p in props]
    assert table.area.tolist() == [int(p.area) for p in props]
    np.testing.assert_allclose(table.intensity, [p.intensity_mean for p in props], rtol=1e-12, atol=0)
    np.testing.assert_allclose(table.centroid_px, [p.centroid for p in props], rtol=1e-12)
    # on the float32 image as read, regionprops' own float32 means agree to float32 precision
    props32 = regionprops(labels, intensity_image=np.moveaxis(image.data, 0, -1))
    np.testing.assert_allclose(table.intensity, [p.intensity_mean for p in props32], rtol=2e-6, atol=1e-6)


def test_labels_need_not_be_consecutive_and_background_is_no_cell(images):
    image = images[1]
    labels = nuclear_mask(image).astype(np.uint32)
    sparse = np.where(labels > 0, labels * 1000 + 70000, 0).astype(np.uint32)  # uint32 ids beyond uint16
    a = measure_cells(labels, image.data, markers=image.channel_names, image_name="a")
    b = measure_cells(sparse, image.data, markers=image.channel_names, image_name="b")
    assert b.cell_id.tolist() == [i * 1000 + 70000 for i in a.cell_id]
    np.testing.assert_array_equal(a.intensity, b.intensity)
    assert 0 not in b.cell_id and a.area.sum() == int((labels > 0).sum())


def test_nan_pixels_are_left_out_of_a_cells_mean(images):
    image = images[0]
    labels = nuclear_mask(image)
    data = image.data.copy()
    ys, xs = np.nonzero(labels == 1)
    data[2, ys[0], xs[0]] = np.nan
    table = measure_cells(labels, data, markers=image.channel_names, image_name="x")
    expected = np.nanmean(data[2][labels == 1].astype(np.float64))
    assert np.isfinite(table.intensity[0, 2]) and table.intensity[0, 2] == pytest.approx(expected, rel=1e-12)


def test_latent_and_motifs_take_the_nearest_tile_and_fractions_sum_to_one(application):
    _, app = application
    image = app.image
    labels = nuclear_mask(image)
    table = cells_from_application(app, labels)
    rec = app.reconstruction
    latent_px = upsample_grid(rec.latent, rec.stride, image.shape[1:])  # (D, Y, X)
    motif_px = upsample_grid(app.motifs, rec.stride, image.shape[1:])
    for row, cell in enumerate(table.cell_id):  # a plain loop: the independent answer
        inside = labels == cell
        np.testing.assert_allclose(table.latent[row], latent_px[:, inside].mean(axis=1), rtol=1e-6, atol=1e-7)
        expected = [(motif_px[inside] == j).mean() for j in range(1, 5)]
        np.testing.assert_allclose(table.motif_fraction[row], expected, rtol=1e-12)
    np.testing.assert_allclose(table.motif_fraction.sum(axis=1), 1.0)
    assert table.latent.shape == (len(table), 4) and table.uns["n_motifs"] == 4


def watershed_mask(image) -> np.ndarray:
    """Watershed of the smoothed H3K27Ac channel from its local maxima of 1 count or more: cells
    that cover the tissue, as a user's segmentation does (more of the image than nuclear_mask)."""
    from skimage.segmentation import watershed

    nuc = ndimage.gaussian_filter(image.data[image.channel_names.index("H3K27Ac")], 1)
    seeds, _ = ndimage.label((ndimage.maximum_filter(nuc, 5) == nuc) & (nuc >= 1.0))
    return watershed(-nuc, seeds, mask=nuc > 0.5).astype(np.uint16)


def pixels_of_listed(app, regions=None) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of the regions and of the isolated spikes ``app`` lists, found independently:
    scikit-image's 8-connected components of the pixels above the threshold, a component kept
    when its box and area are those of a listed region, or when it holds a listed spike."""
    from skimage.measure import label, regionprops

    regions = app.regions if regions is None else regions
    e = np.asarray(app.region_map, np.float32)
    components = label(np.isfinite(e) & (e > app.region_threshold), connectivity=2)
    boxes = {(tuple(r["bbox"]), r["area"]) for r in regions}
    in_region = np.isin(components, [p.label for p in regionprops(components) if (p.bbox, p.area) in boxes])
    in_spike = np.isin(components, [components[s["y"], s["x"]] for s in app.spikes])
    return in_region, in_spike


@pytest.fixture(scope="module")
def roi_with_spikes(cells_model, imc_testdata):
    """The tiny model applied to mockData5_003 (an image it was not trained on), and a watershed mask."""
    image = read_imc(imc_testdata / "steinbock_img" / "20210305_NE_mockData5_003.ome.tiff")
    return apply_to_image(cells_model, image, ApplySettings(quality=False)), watershed_mask(image)


def test_error_and_artefact_fractions_follow_the_maps(application):
    _, app = application
    labels = nuclear_mask(app.image)
    table = cells_from_application(app, labels)
    rec = app.reconstruction
    high, spike = pixels_of_listed(app)
    hot = rec.hot_pixels > 0
    for row, cell in enumerate(table.cell_id):
        inside = labels == cell
        assert table.error[row] == pytest.approx(float(np.nanmean(rec.error[inside].astype(np.float64))), rel=1e-9)
        assert table.high_error_fraction[row] == pytest.approx(high[inside].mean())
        assert table.hot_pixel_fraction[row] == pytest.approx(hot[inside].mean())
        assert table.artefact_fraction[row] == pytest.approx((high | hot)[inside].mean())
        assert table.spike_fraction[row] == pytest.approx(spike[inside].mean())
    assert table.touched_by_artefact.tolist() == [bool((high | hot)[labels == c].any()) for c in table.cell_id]


def test_cells_touched_by_an_artefact_are_those_over_the_regions_reconstruct_lists(roi_with_spikes):
    app, labels = roi_with_spikes
    table = cells_from_application(app, labels)
    in_region, in_spike = pixels_of_listed(app)
    assert in_region.sum() == sum(r["area"] for r in app.regions) and in_spike.sum() == len(app.spikes)
    assert not (app.reconstruction.hot_pixels > 0).any()  # so only the regions touch a cell here
    over_region = {int(c) for c in np.unique(labels[in_region]) if c}
    assert set(table.cell_id[table.touched_by_artefact].tolist()) == over_region
    # a cell holding only an isolated spike is not touched, but its spike is counted apart
    spike_only = [int(c) for c in np.unique(labels[in_spike]) if c and c not in over_region]
    assert spike_only, "this ROI has cells with a spike and no region: the case the table must tell apart"
    rows = dict(zip(table.cell_id.tolist(), range(len(table))))
    for c in spike_only:
        assert table.spike_fraction[rows[c]] > 0 and not table.touched_by_artefact[rows[c]]
    assert len(over_region) < len(table)  # not every cell is touched


def test_no_listed_region_touches_no_cell_and_only_the_listed_count(roi_with_spikes):
    from dataclasses import replace

    app, labels = roi_with_spikes
    assert (np.asarray(app.region_map) > app.region_threshold).any()  # high pixels remain on the map
    none = cells_from_application(replace(app, regions=[]), labels)
    assert not none.touched_by_artefact.any() and not none.high_error_fraction.any()
    top = app.regions[:3]  # as when MAX_REGIONS cuts the list: only the listed ones count
    table = cells_from_application(replace(app, regions=top), labels)
    in_region, _ = pixels_of_listed(app, top)
    assert in_region.sum() == sum(r["area"] for r in top)
    assert set(table.cell_id[table.touched_by_artefact].tolist()) == {int(c) for c in np.unique(labels[in_region]) if c}


def test_a_cell_inside_a_hot_pixel_and_a_region_is_flagged_and_one_outside_is_not():
    raw = np.full((2, 10, 10), 4.0, np.float32)
    labels = np.zeros((10, 10), np.uint16)
    labels[1:4, 1:4], labels[6:9, 6:9] = 1, 2
    hot = np.zeros((10, 10), np.uint8)
    hot[2, 2] = 1
    high = np.zeros((10, 10), bool)
    high[1, 1:4] = True
    spikes = np.zeros((10, 10), bool)
    spikes[7, 7] = True
    table = measure_cells(labels, raw, markers=["A", "B"], image_name="t", hot_pixels=hot, high_error=high,
                          spikes=spikes)
    assert table.spike_fraction.tolist() == pytest.approx([0, 1 / 9])
    assert table.hot_pixel_fraction.tolist() == pytest.approx([1 / 9, 0])
    assert table.high_error_fraction.tolist() == pytest.approx([3 / 9, 0])
    assert table.artefact_fraction.tolist() == pytest.approx([4 / 9, 0])
    assert table.touched_by_artefact.tolist() == [True, False]


def test_explained_is_one_for_a_perfect_reconstruction_zero_for_none_and_nan_without_signal():
    raw = np.zeros((3, 6, 6), np.float32)
    raw[0] = 5.0
    raw[1] = 8.0
    labels = np.zeros((6, 6), np.uint16)
    labels[:3], labels[3:] = 1, 2
    recon = raw.copy()
    recon[1, 3:] = 0.0  # the model misses marker B in cell 2
    recon[2, :3] = 1.0  # and invents marker C in cell 1, which holds none
    table = measure_cells(labels, raw, markers=["A", "B", "C"], image_name="t", reconstructed=recon)
    assert table.explained[:, 0].tolist() == [1.0, 1.0]
    assert table.explained[:, 1].tolist() == [1.0, 0.0]
    assert np.isnan(table.explained[:, 2]).all()  # no counts of C: nothing to explain
    assert table.reconstructed[0, 2] == 1.0  # what the model invented stays visible


@pytest.mark.parametrize("bad, match", [
    (np.zeros((50, 64), np.uint16), r"the mask m.tiff is 50×64 px but the image img is 51×64 px"),
    (np.zeros((51, 64), np.float32), r"m.tiff: a mask must hold integer cell labels .* got dtype float32"),
    (np.zeros((51, 64), bool), r"got dtype bool"),
    (np.full((51, 64), -1, np.int32), r"cell labels must be >= 0"),
    (np.zeros((2, 51, 64), np.uint16), r"must be a 2-D label image \(Y, X\), got shape \(2, 51, 64\)"),
])
def test_a_mask_that_does_not_fit_is_refused_naming_it(images, bad, match):
    with pytest.raises(MaskError, match=match):
        measure_cells(bad, images[0].data, markers=images[0].channel_names, image_name="img", mask_name="m.tiff")


def test_masks_are_matched_to_images_by_file_name(tmp_path, images):
    steinbock = tmp_path / "steinbock"
    (steinbock / "masks").mkdir(parents=True)
    for im in images:
        tifffile.imwrite(steinbock / "masks" / f"{im.name}.tiff", nuclear_mask(im))
    names = [im.name for im in images]
    found = match_masks(names, steinbock / "masks")
    assert {k: v.name for k, v in found.items()} == {n: f"{n}.tiff" for n in names}
    assert match_masks(names, steinbock) == found  # the steinbock folder stands for its masks/
    np.testing.assert_array_equal(read_mask(found[names[0]]), nuclear_mask(images[0]))
    with pytest.raises(MaskError, match=rf"the image other has no mask in {steinbock / 'masks'} "
                                        r"\(looked for other.tiff, other.tif\)"):
        match_masks([*names, "other"], steinbock / "masks")
    with pytest.raises(MaskError, match=r"one mask file .* for 2 images"):
        match_masks(names, found[names[0]])
    assert match_masks(names[:1], found[names[0]]) == {names[0]: found[names[0]]}
    with pytest.raises(MaskError, match="does not exist"):
        match_masks(names, tmp_path / "nowhere")


def test_csv_and_h5ad_hold_the_table_field_by_field(application, tmp_path):
    anndata = pytest.importorskip("anndata", reason="the cells extra (anndata) is not installed")
    import csv

    _, app = application
    labels = nuclear_mask(app.image)
    table = cells_from_application(app, labels, mask_name="nuclei.tiff")
    written = write_cell_table(tmp_path, table, h5ad=True)
    assert [p.name for p in written] == [f"{app.image.name}_cells.csv", f"{app.image.name}_cells.h5ad"]

    with open(written[0], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(table) == labels.max()
    assert list(rows[0])[:len(FIXED_COLUMNS)] == list(FIXED_COLUMNS)
    assert [float(r["spike_fraction"]) for r in rows] == pytest.approx(table.spike_fraction.tolist(), rel=1e-5)
    assert [int(r["cell_id"]) for r in rows] == table.cell_id.tolist()
    marker = app.channel_names[4]
    assert [float(r[marker]) for r in rows] == pytest.approx(table.intensity[:, 4].tolist(), rel=1e-5)
    assert {"explained_" + marker, "latent_3", "motif_4_fraction"} <= set(rows[0])

    adata = anndata.read_h5ad(written[1])
    assert adata.shape == (len(table), len(app.channel_names))
    assert list(adata.var_names) == app.channel_names and adata.var["target"].iloc[4] == "H3K27Ac"
    np.testing.assert_allclose(adata.X, table.intensity.astype(np.float32))
    assert list(adata.obs["cell_id"]) == table.cell_id.tolist()
    assert list(adata.obs["region"].astype(str)) == [app.image.name] * len(table)
    assert adata.obs["region"].dtype.name == "category"
    assert list(adata.obs["area"]) == table.area.tolist()
    assert adata.obs["touched_by_artefact"].tolist() == table.touched_by_artefact.tolist()
    np.testing.assert_allclose(adata.obs["error"], table.error)
    spatial = adata.obsm["spatial"]  # x, y in µm
    np.testing.assert_allclose(spatial[:, 0], table.centroid_px[:, 1] * app.image.pixel_size_um)
    np.testing.assert_allclose(spatial[:, 1], table.centroid_px[:, 0] * app.image.pixel_size_um)
    np.testing.assert_allclose(adata.obsm["X_vae"], table.latent, rtol=1e-6)
    np.testing.assert_allclose(adata.obsm["motif_fraction"], table.motif_fraction, rtol=1e-6)
    np.testing.assert_allclose(adata.layers["reconstructed"], table.reconstructed.astype(np.float32))
    assert adata.uns["model_sha256"] == app.provenance["model_sha256"]
    assert adata.uns["n_motifs"] == 4 and adata.uns["stride"] == app.stride
    assert '"arcsinh_cofactor"' in adata.uns["normalization"] or "arcsinh" in adata.uns["normalization"]
    assert dict(adata.uns["spatialdata_attrs"]) == {"region": app.image.name, "region_key": "region",
                                                    "instance_key": "cell_id"}
