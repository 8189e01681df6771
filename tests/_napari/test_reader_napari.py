"""The napari reader contribution on real files of every format, and on junk."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_imc_vae._napari.layer_data import IMC_KEY, contrast_limits
from napari_imc_vae._napari.reader import napari_get_reader
from napari_imc_vae.io import read_imc, read_imc_all

STEINBOCK = "steinbock_img/20210305_NE_mockData1_002.ome.tiff"
IMCTOOLS = "ometiff_imctools/20210305_NE_mockData2_s0_a1_ac.ome.tiff"
HPF50 = "steinbock_img_hpf50/20210305_NE_mockData1_002.tiff"
TXT = "raw/20210305_NE_mockData1_ROI_002_2.txt"
MCD = "raw/20210305_NE_mockData5.mcd"
PANEL = ["Ag107", "Cytokeratin 5", "Laminin", "YBX1", "H3K27Ac"]


def _read(path):
    reader = napari_get_reader(str(path))
    assert callable(reader), f"no reader for {path}"
    return reader(str(path))


@pytest.mark.parametrize("relpath", [STEINBOCK, IMCTOOLS, HPF50, TXT])
def test_single_image_files(imc_testdata, relpath):
    path = imc_testdata / relpath
    expected = read_imc(path)
    (layer_data,) = _read(path)
    data, kwargs, layer_type = layer_data
    assert layer_type == "image" and kwargs["channel_axis"] == 0
    np.testing.assert_array_equal(data, expected.data)
    assert kwargs["name"] == expected.channel_names  # marker names, no acquisition suffix
    assert kwargs["blending"] == "additive"
    assert kwargs["scale"] == (expected.pixel_size_um,) * 2
    assert len(kwargs["colormap"]) == len(kwargs["contrast_limits"]) == expected.n_channels
    for channel, (lo, hi) in zip(data, kwargs["contrast_limits"]):
        assert lo < hi and (lo, hi) == contrast_limits(channel)
    infos = [m[IMC_KEY] for m in kwargs["metadata"]]
    assert [i["channel_index"] for i in infos] == list(range(expected.n_channels))
    assert {i["source"] for i in infos} == {str(path)}
    assert infos[0]["metal"] == expected.metals[0]


def test_steinbock_names_and_contrast(imc_testdata):
    (layer_data,) = _read(imc_testdata / STEINBOCK)
    data, kwargs, _ = layer_data
    assert kwargs["name"] == PANEL
    # Percentile limits, below the hot-pixel-inflated max.
    assert any(hi < channel.max() for channel, (_, hi) in zip(data, kwargs["contrast_limits"]))


def test_mcd_opens_every_acquisition_side_by_side(imc_testdata):
    path = imc_testdata / MCD
    images = read_imc_all(path)
    out = _read(path)
    assert len(out) == len(images) == 3
    right_edges = []
    for (data, kwargs, _), image in zip(out, images):
        assert data.shape == image.data.shape
        assert kwargs["name"] == [f"{c} [{image.acquisition}]" for c in image.channel_names]
        assert {m[IMC_KEY]["acquisition"] for m in kwargs["metadata"]} == {image.acquisition}
        ty, tx = kwargs["translate"]
        assert ty == 0 and all(tx > edge for edge in right_edges)  # no overlap
        right_edges.append(tx + data.shape[-1] * image.pixel_size_um)


def test_folder_of_single_channel_tiffs(tmp_path, rng):
    for name in ("Pr141_CD45", "Yb172_H3K27Ac", "Ir191_DNA1"):
        tifffile.imwrite(tmp_path / f"{name}.tiff", rng.poisson(2.0, (20, 30)).astype(np.float32))
    (layer_data,) = _read(tmp_path)
    data, kwargs, _ = layer_data
    assert data.shape == (3, 20, 30)
    assert kwargs["name"] == read_imc(tmp_path).channel_names


def test_returns_none_for_what_it_cannot_read(tmp_path, rng):
    (tmp_path / "notes.txt").write_text("just some notes\n")
    (tmp_path / "data.xyz").write_bytes(rng.bytes(100))
    (tmp_path / "empty.tiff").write_bytes(b"")
    (tmp_path / "emptydir").mkdir()
    for name in ("notes.txt", "data.xyz", "empty.tiff", "emptydir", "missing.mcd"):
        assert napari_get_reader(str(tmp_path / name)) is None, name
    assert napari_get_reader([]) is None


def test_reader_returns_none_and_warns_for_corrupt_files(tmp_path, rng):
    from napari.utils.notifications import notification_manager

    for name in ("junk.tiff", "junk.ome.tiff", "junk.mcd"):
        path = tmp_path / name
        path.write_bytes(rng.bytes(2000))
        reader = napari_get_reader(str(path))  # the suffix fits: the reader is offered
        n = len(notification_manager.records)
        assert reader(str(path)) is None
        messages = [str(r.message) for r in notification_manager.records[n:]]
        assert any(name in m for m in messages), messages


def test_viewer_open_with_plugin(make_napari_viewer, imc_testdata):
    viewer = make_napari_viewer()
    layers = viewer.open(str(imc_testdata / STEINBOCK), plugin="napari-imc-vae")
    assert [layer.name for layer in layers] == PANEL
    assert all(layer.blending == "additive" for layer in layers)
    assert all(tuple(layer.scale) == (1.0, 1.0) for layer in layers)
    assert all(layer.data.shape == (51, 64) for layer in layers)

    layers = viewer.open(str(imc_testdata / MCD), plugin="napari-imc-vae")
    assert len(layers) == 15
    assert layers[0].name == "Ag107 [ROI_001]"


def test_steinbock_folder_opens_one_group_of_layers_per_image(imc_testdata, tmp_path):
    from imc_variants import steinbock_folder

    folder = steinbock_folder(imc_testdata, tmp_path / "img", n=3)
    images = read_imc_all(folder)
    out = _read(folder)
    assert len(out) == len(images) == 3
    right_edges = []
    for (data, kwargs, _), image in zip(out, images):
        np.testing.assert_array_equal(data, image.data)
        assert kwargs["name"] == [f"{c} [{image.name}]" for c in PANEL]  # names carry the image
        assert {m[IMC_KEY]["source"] for m in kwargs["metadata"]} == {image.source}
        ty, tx = kwargs["translate"]
        assert ty == 0 and all(tx > edge for edge in right_edges)
        right_edges.append(tx + data.shape[-1] * image.pixel_size_um)
    names = [n for _, kwargs, _ in out for n in kwargs["name"]]
    assert len(set(names)) == len(names)


def test_single_channel_roi_folder_opens_as_one_image(imc_testdata, tmp_path):
    from imc_variants import single_channel_folder, steinbock_roi

    roi = steinbock_roi(imc_testdata)
    folder = single_channel_folder(tmp_path / "ROI7", roi, prefix="ROI7_")
    (layer_data,) = _read(folder)
    data, kwargs, _ = layer_data
    np.testing.assert_array_equal(data, roi.data)
    assert kwargs["name"] == ["Ag107", "Pr141_Cytokeratin 5", "Sm147_Laminin", "Eu153_YBX1", "Yb172_H3K27Ac"]


def test_mixed_folder_warns_naming_the_odd_file(imc_testdata, tmp_path):
    import shutil

    from imc_variants import single_channel_folder, steinbock_roi
    from napari.utils.notifications import notification_manager

    folder = single_channel_folder(tmp_path / "mixed", steinbock_roi(imc_testdata))
    shutil.copy(imc_testdata / STEINBOCK, folder)
    reader = napari_get_reader(str(folder))
    n = len(notification_manager.records)
    assert reader(str(folder)) is None
    messages = [str(r.message) for r in notification_manager.records[n:]]
    assert any("odd multi-channel files: 20210305_NE_mockData1_002.ome.tiff" in m for m in messages), messages


def test_folder_without_imc_files_is_not_offered(tmp_path):
    (tmp_path / "notes.txt").write_text("just some notes\n")
    (tmp_path / "panel.csv").write_text("channel,name\nPr141,CD45\n")
    assert napari_get_reader(str(tmp_path)) is None
