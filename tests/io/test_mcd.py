"""Vendor .mcd/.txt files through readimc (io/mcd.py)."""

from __future__ import annotations

import shutil
import sys
from importlib.util import find_spec
from types import SimpleNamespace

import numpy as np
import pytest

from napari_imc_vae.io import ImcReadError, list_acquisitions, read_imc, read_imc_all
from napari_imc_vae.io.mcd import _identifiers

needs_readimc = pytest.mark.skipif(
    find_spec("readimc") is None, reason="the 'mcd' extra (readimc) is not installed"
)

ROIS = ["ROI_001", "ROI_002", "ROI_003"]
NAMES = ["Ag107", "Cytokeratin 5", "Laminin", "YBX1", "H3K27Ac"]


@needs_readimc
def test_list_and_read_every_mcd(imc_testdata):
    files = sorted((imc_testdata / "raw").glob("*.mcd"))
    assert len(files) == 5
    for path in files:
        assert list_acquisitions(path) == ROIS
        images = read_imc_all(path)
        assert [im.acquisition for im in images] == ROIS
        for image in images:
            assert image.data.dtype == np.float32 and image.data.ndim == 3
            assert image.metals == ["Ag107", "Pr141", "Sm147", "Eu153", "Yb172"]
            assert image.labels[1] == "Cytoker_651((3356))Pr141"
            assert image.channel_names == NAMES  # targets from raw/panel.csv
            assert image.pixel_size_um == 1.0


@needs_readimc
@pytest.mark.parametrize("mock", range(1, 6))
@pytest.mark.parametrize("roi", range(1, 4))
def test_txt_and_mcd_of_the_same_roi_agree(imc_testdata, mock, roi):
    raw = imc_testdata / "raw"
    txt = read_imc(raw / f"20210305_NE_mockData{mock}_ROI_00{roi}_{roi}.txt")
    mcd = read_imc(raw / f"20210305_NE_mockData{mock}.mcd", acquisition=f"ROI_00{roi}")
    assert txt.metals == mcd.metals and txt.channel_names == mcd.channel_names
    assert txt.shape == mcd.shape
    np.testing.assert_allclose(txt.data, mcd.data, atol=1e-3, rtol=0)


@needs_readimc
def test_mcd_matches_imctools_ome_tiff(imc_testdata):
    for k in (1, 2, 3):
        mcd = read_imc(imc_testdata / "raw" / "20210305_NE_mockData2.mcd", acquisition=k - 1)
        ome = read_imc(
            imc_testdata / "ometiff_imctools" / f"20210305_NE_mockData2_s0_a{k}_ac.ome.tiff"
        )
        assert mcd.metals == ome.metals
        np.testing.assert_allclose(mcd.data, ome.data, atol=1e-3, rtol=0)


@needs_readimc
def test_acquisition_selection(imc_testdata):
    path = imc_testdata / "raw" / "20210305_NE_mockData3.mcd"
    first = read_imc(path)
    assert first.acquisition == "ROI_001"
    assert first.name == "20210305_NE_mockData3_ROI_001"
    by_index = read_imc(path, acquisition=2)
    by_ident = read_imc(path, acquisition="ROI_003")
    assert by_index.acquisition == by_ident.acquisition == "ROI_003"
    np.testing.assert_array_equal(by_index.data, by_ident.data)
    with pytest.raises(ImcReadError, match=r"mockData3\.mcd: no acquisition 'ROI_009'.*ROI_001"):
        read_imc(path, acquisition="ROI_009")
    with pytest.raises(ImcReadError, match=r"acquisition index 3 out of range.*3 acquisitions"):
        read_imc(path, acquisition=3)
    with pytest.raises(TypeError, match="acquisition must be"):
        read_imc(path, acquisition=1.0)  # type: ignore[arg-type]


@needs_readimc
def test_txt_is_one_acquisition(imc_testdata):
    path = imc_testdata / "raw" / "20210305_NE_mockData1_ROI_002_2.txt"
    assert list_acquisitions(path) == ["20210305_NE_mockData1_ROI_002_2"]
    assert read_imc(path, acquisition=0).acquisition is None
    with pytest.raises(ImcReadError, match=r"ROI_002_2\.txt: holds one acquisition"):
        read_imc(path, acquisition=1)


def test_repeated_descriptions_get_the_id():
    pairs = [(1, "ROI"), (2, "ROI"), (3, ""), (4, "x")]
    acqs = [SimpleNamespace(id=i, description=d) for i, d in pairs]
    assert _identifiers(acqs) == ["ROI_1", "ROI_2", "acquisition_3", "x"]


@needs_readimc
def test_labels_without_panel(imc_testdata, tmp_path):
    shutil.copy(imc_testdata / "raw" / "20210305_NE_mockData1_ROI_002_2.txt", tmp_path)
    image = read_imc(tmp_path / "20210305_NE_mockData1_ROI_002_2.txt")
    assert image.channel_names == ["Ag107", "Cytoker", "Laminin", "YBX1", "H3K27Ac"]


def test_missing_readimc_names_the_extra(imc_testdata, monkeypatch):
    monkeypatch.setitem(sys.modules, "readimc", None)  # makes `import readimc` fail
    for name in ("20210305_NE_mockData1.mcd", "20210305_NE_mockData1_ROI_001_1.txt"):
        hint = r"needs readimc.*pip install \"napari-imc-vae\[mcd\]\""
        with pytest.raises(ImcReadError, match=hint):
            read_imc(imc_testdata / "raw" / name)


@needs_readimc
@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_mcd_and_txt(imc_testdata, tmp_path, cut):
    for name, match in [
        ("20210305_NE_mockData1.mcd", r"x\.mcd: not a readable MCD file"),
        ("20210305_NE_mockData1_ROI_002_2.txt", r"x\.txt: truncated IMC \.txt file"),
    ]:
        raw = (imc_testdata / "raw" / name).read_bytes()
        path = tmp_path / ("x" + name[-4:])
        path.write_bytes(raw[: int(len(raw) * cut)])
        with pytest.raises(ImcReadError, match=match):
            read_imc(path)


@needs_readimc
def test_txt_cut_at_a_line_end(imc_testdata, tmp_path):
    raw = (imc_testdata / "raw" / "20210305_NE_mockData1_ROI_002_2.txt").read_bytes()
    path = tmp_path / "x.txt"
    path.write_bytes(raw[: raw.index(b"\n", len(raw) // 2) + 1])
    with pytest.raises(ImcReadError, match=r"x\.txt: truncated IMC \.txt file, the last image row has \d+ of 64 pixels"):
        read_imc(path)


@needs_readimc
def test_corrupt_mcd_and_txt(tmp_path, rng):
    for suffix in (".mcd", ".txt"):
        path = tmp_path / f"junk{suffix}"
        path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes() + b"\n")
        with pytest.raises(ImcReadError, match=rf"junk\{suffix}: not a readable"):
            read_imc(path)
