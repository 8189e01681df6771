"""Channel lists beside TIFF stacks (io/panel.py)."""

from __future__ import annotations

import pytest

from napari_imc_vae.io import ImcReadError
from napari_imc_vae.io.panel import labels_by_metal, read_table, same_stem_csv


def test_steinbock_panel(imc_testdata):
    panel = read_table(imc_testdata / "steinbock_img" / "panel.csv")
    assert panel.metals == ["Ag107", "Pr141", "Sm147", "Eu153", "Yb172"]
    assert panel.labels == ["Ag107", "Cytokeratin 5", "Laminin", "YBX1", "H3K27Ac"]


def test_imctools_channel_csv_with_header(imc_testdata):
    panel = read_table(imc_testdata / "ometiff_imctools" / "20210305_NE_mockData2_s0_a1_ac.csv")
    assert panel.metals == ["Ag107", "Pr141", "Sm147", "Eu153", "Yb172"]
    assert panel.labels[1] == "Cytoker_651((3356))Pr141"


@pytest.mark.parametrize(
    ("text", "metals", "labels"),
    [
        ("Pr141\nNd142\n\n", ["Pr141", "Nd142"], [None, None]),
        ("CD45\nDNA1\n", [None, None], ["CD45", "DNA1"]),
        (
            "Pr141,CK5\nCytoker_651((3356))Pr141\n",
            ["Pr141", "Pr141"],
            ["CK5", "Cytoker_651((3356))Pr141"],
        ),
        ("\ufeffchannel,name\nPr141,CK5\n", ["Pr141"], ["CK5"]),  # BOM from Excel
        ("Metal Tag,Target\nSm147,Laminin\n", ["Sm147"], ["Laminin"]),
    ],
)
def test_read_table_variants(tmp_path, text, metals, labels):
    path = tmp_path / "c.csv"
    path.write_text(text, encoding="utf-8")
    panel = read_table(path)
    assert panel.metals == metals
    assert panel.labels == labels


@pytest.mark.parametrize(("value", "kept"), [("1", True), ("1.0", True), ("True", True),
                                             ("0", False), ("", False), ("no", False)])
def test_keep_values(tmp_path, value, kept):
    path = tmp_path / "panel.csv"
    path.write_text(f"channel,name,keep\nPr141,CK5,{value}\n")
    assert read_table(path).metals == (["Pr141"] if kept else [])


def test_panel_with_keep_but_no_channel_column(tmp_path):
    path = tmp_path / "panel.csv"
    path.write_text("foo,keep\na,1\n")
    match = r"panel\.csv: panel has neither a 'channel' nor a 'name'"
    with pytest.raises(ImcReadError, match=match):
        read_table(path)


def test_empty_and_undecodable_lists(tmp_path):
    empty = tmp_path / "e.csv"
    empty.write_text("\n\n")
    with pytest.raises(ImcReadError, match=r"e\.csv: channel list is empty"):
        read_table(empty)
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81\x82")
    with pytest.raises(ImcReadError, match=r"b\.csv: cannot read the channel list"):
        read_table(binary)


def test_same_stem_csv(tmp_path):
    assert same_stem_csv(tmp_path / "a_full.ome.tiff") == tmp_path / "a_full.csv"
    assert same_stem_csv(tmp_path / "a.TIF") == tmp_path / "a.csv"


def test_labels_by_metal_reads_raw_panel(imc_testdata, tmp_path):
    assert labels_by_metal(imc_testdata / "raw")["Pr141"] == "Cytokeratin 5"
    assert labels_by_metal(tmp_path) == {}
    (tmp_path / "panel.csv").write_text("nonsense\n1\n")
    assert labels_by_metal(tmp_path) == {}
