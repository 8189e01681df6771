"""OME-TIFF: channel identity from the OME-XML (io/ometiff.py, read through io/tiff.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_imc_vae.io import read_imc
from napari_imc_vae.io.ometiff import parse_ome_channels, split_channel

PANEL_METALS = ["Ag107", "Pr141", "Sm147", "Eu153", "Yb172"]


def test_steinbock_ome_tiff(imc_testdata):
    files = sorted((imc_testdata / "steinbock_img").glob("*.ome.tiff"))
    assert len(files) == 15
    for path in files:
        image = read_imc(path)
        assert image.data.dtype == np.float32 and image.data.ndim == 3
        assert image.metals == PANEL_METALS
        assert image.channel_names == ["Ag107", "Cytokeratin 5", "Laminin", "YBX1", "H3K27Ac"]
        assert image.labels[1] == "Cytokeratin 5"
        assert image.pixel_size_um == 1.0
        assert image.source == str(path)
        assert image.acquisition is None


def test_imctools_ome_tiff_metals_from_fluor(imc_testdata):
    image = read_imc(imc_testdata / "ometiff_imctools" / "20210305_NE_mockData2_s0_a1_ac.ome.tiff")
    assert image.metals == PANEL_METALS
    assert image.labels[1] == "Cytoker_651((3356))Pr141"  # as the file spells it
    assert image.channel_names == ["Ag107", "Cytoker", "Laminin", "YBX1", "H3K27Ac"]


def test_steinbock_and_imctools_agree(imc_testdata):
    # Both exports of ROI_00k of mockData2 identify the channels alike. (Pixels differ in a
    # few hot pixels: steinbock's images are filtered; see test_mcd for the raw comparison.)
    for k in (1, 2, 3):
        a = read_imc(imc_testdata / "steinbock_img" / f"20210305_NE_mockData2_00{k}.ome.tiff")
        b = read_imc(
            imc_testdata / "ometiff_imctools" / f"20210305_NE_mockData2_s0_a{k}_ac.ome.tiff"
        )
        assert a.metals == b.metals == PANEL_METALS
        assert a.channel_keys == b.channel_keys
        assert a.shape == b.shape


@pytest.mark.parametrize(
    ("name", "fluor", "metal", "label"),
    [
        ("Pr141_Cytokeratin 5", None, "Pr141", "Cytokeratin 5"),
        ("Ag107_Ag107", None, "Ag107", "Ag107"),
        ("Cytoker_651((3356))Pr141", "Pr141", "Pr141", "Cytoker_651((3356))Pr141"),
        ("Cytoker_651((3356))Pr141", None, "Pr141", "Cytoker_651((3356))Pr141"),
        ("107Ag", "Ag107", "Ag107", "107Ag"),
        ("CD45", None, None, "CD45"),
        (None, "Pr141", "Pr141", None),
        ("Ki67_x", None, None, "Ki67_x"),
    ],
)
def test_split_channel(name, fluor, metal, label):
    assert split_channel(name, fluor) == (metal, label)


def _ome(channels: str, pixels_attrs: str = "") -> str:
    return (
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0">'
        f'<Pixels ID="Pixels:0" SizeC="2" {pixels_attrs}>{channels}</Pixels></Image></OME>'
    )


def test_parse_pixel_size_units():
    ch = '<Channel Name="Pr141_A"/><Channel Name="Nd142_B"/>'
    assert parse_ome_channels(_ome(ch, 'PhysicalSizeX="0.5"'), 2).pixel_size_um == 0.5
    nm = _ome(ch, 'PhysicalSizeX="500" PhysicalSizeXUnit="nm"')
    assert parse_ome_channels(nm, 2).pixel_size_um == pytest.approx(0.5)
    assert parse_ome_channels(_ome(ch), 2).pixel_size_um is None


def test_parse_returns_none_when_xml_does_not_describe_the_channels():
    ch = '<Channel Name="Pr141_A"/><Channel Name="Nd142_B"/>'
    assert parse_ome_channels(_ome(ch), 3) is None  # other channel count
    assert parse_ome_channels(_ome("<Channel/><Channel/>"), 2) is None  # no names
    assert parse_ome_channels("<not xml", 2) is None


def test_written_ome_tiff_round_trip(tmp_path, rng):
    data = rng.random((3, 16, 20), dtype=np.float32)
    path = tmp_path / "roi.ome.tif"
    tifffile.imwrite(
        path,
        data,
        metadata={
            "axes": "CYX",
            "Channel": {"Name": ["Pr141_CK5", "Nd142_CD3", "Ir191_DNA1"]},
            "PhysicalSizeX": 0.5,
            "PhysicalSizeXUnit": "µm",
        },
    )
    image = read_imc(path)
    np.testing.assert_array_equal(image.data, data)
    assert image.channel_names == ["CK5", "CD3", "DNA1"]
    assert image.metals == ["Pr141", "Nd142", "Ir191"]
    assert image.pixel_size_um == 0.5


def test_ome_tiff_without_channel_names_falls_back(tmp_path, rng):
    path = tmp_path / "roi.ome.tiff"
    tifffile.imwrite(path, rng.random((2, 8, 8), dtype=np.float32), metadata={"axes": "CYX"})
    assert read_imc(path).channel_names == ["ch0", "ch1"]
