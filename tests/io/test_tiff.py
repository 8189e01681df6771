"""TIFF stacks with panels, plain 2-D/multi-page TIFFs, folders of TIFFs (io/tiff.py)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile

from napari_imc_vae.io import ImcReadError, NonFiniteWarning, read_imc

STEINBOCK_PANEL = "channel,name,keep\nAg107,Ag107,1\nPr141,Cytokeratin 5,1\nSm147,Laminin,1\n"


@pytest.fixture
def real_stack(imc_testdata):
    """(5, 51, 64) float32 pixels of a real acquisition."""
    return tifffile.imread(imc_testdata / "steinbock_img_hpf50" / "20210305_NE_mockData1_002.tiff")


def test_hpf50_tiff_with_panel_matches_ome_tiff(imc_testdata):
    files = sorted((imc_testdata / "steinbock_img_hpf50").glob("*.tiff"))
    assert len(files) == 15
    for path in files:
        plain = read_imc(path)
        ome = read_imc(imc_testdata / "steinbock_img" / path.name.replace(".tiff", ".ome.tiff"))
        assert plain.channel_names == ome.channel_names
        assert plain.metals == ome.metals
        assert plain.shape == ome.shape
        assert plain.data.dtype == np.float32


def test_panel_keeps_only_rows_with_keep_1(tmp_path, real_stack):
    tifffile.imwrite(tmp_path / "a.tiff", real_stack[:3])
    (tmp_path / "panel.csv").write_text(
        "channel,name,keep\nAg107,Ag107,1\nNd142,Dropped,0\nPr141,Cytokeratin 5,1\n"
        "Gd155,Dropped too,\nSm147,Laminin,1\n"
    )
    image = read_imc(tmp_path / "a.tiff")
    assert image.channel_names == ["Ag107", "Cytokeratin 5", "Laminin"]
    assert image.metals == ["Ag107", "Pr141", "Sm147"]
    np.testing.assert_array_equal(image.data, real_stack[:3])


def test_panel_without_keep_column_uses_every_row(tmp_path, real_stack):
    tifffile.imwrite(tmp_path / "a.tif", real_stack[:2])
    (tmp_path / "panel.csv").write_text("channel,name\nAg107,Ag107\nPr141,Cytokeratin 5\n")
    assert read_imc(tmp_path / "a.tif").channel_names == ["Ag107", "Cytokeratin 5"]


def test_panel_row_count_mismatch(tmp_path, real_stack):
    tifffile.imwrite(tmp_path / "a.tiff", real_stack)  # 5 channels, panel keeps 3
    (tmp_path / "panel.csv").write_text(STEINBOCK_PANEL)
    with pytest.raises(ImcReadError, match=r"panel\.csv: lists 3 rows with keep=1 .*a\.tiff has 5"):
        read_imc(tmp_path / "a.tiff")


def test_same_stem_csv_with_header(imc_testdata, tmp_path):
    # The imctools stack as a plain TIFF with its same-stem channel list beside it.
    src = imc_testdata / "ometiff_imctools" / "20210305_NE_mockData2_s0_a1_ac"
    ome = read_imc(src.with_name(src.name + ".ome.tiff"))
    tifffile.imwrite(tmp_path / "stack_full.tiff", ome.data)
    shutil.copy(src.with_suffix(".csv"), tmp_path / "stack_full.csv")
    image = read_imc(tmp_path / "stack_full.tiff")
    assert image.metals == ome.metals
    assert image.channel_names == ome.channel_names


def test_same_stem_csv_one_channel_per_line_wins_over_panel(tmp_path, real_stack):
    tifffile.imwrite(tmp_path / "stack_full.tiff", real_stack[:3])
    (tmp_path / "stack_full.csv").write_text("Ag107\nPr141\nCD45\n")
    (tmp_path / "panel.csv").write_text(STEINBOCK_PANEL.replace("Laminin", "Other"))
    image = read_imc(tmp_path / "stack_full.tiff")
    assert image.metals == ["Ag107", "Pr141", None]
    assert image.channel_names == ["Ag107", "Pr141", "CD45"]


def test_same_stem_csv_count_mismatch(tmp_path, real_stack):
    tifffile.imwrite(tmp_path / "s.tiff", real_stack)
    (tmp_path / "s.csv").write_text("Ag107\nPr141\n")
    with pytest.raises(ImcReadError, match=r"s\.csv: lists 2 channels .*has 5"):
        read_imc(tmp_path / "s.tiff")


def test_plain_multipage_tiff(tmp_path, real_stack):
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tw:
        for plane in real_stack.astype(np.uint16):
            tw.write(plane, contiguous=False)
    image = read_imc(path)
    assert image.channel_names == [f"ch{i}" for i in range(5)]
    assert image.metals == [None] * 5
    assert image.data.dtype == np.float32
    np.testing.assert_array_equal(image.data, real_stack.astype(np.uint16))


def test_plain_2d_tiff_is_one_channel(tmp_path, real_stack):
    tifffile.imwrite(tmp_path / "one.tiff", real_stack[4])
    image = read_imc(tmp_path / "one.tiff")
    assert image.shape == (1, *real_stack.shape[1:])
    assert image.channel_names == ["ch0"]


def test_folder_of_single_channel_tiffs(tmp_path, real_stack):
    folder = tmp_path / "histocat"
    folder.mkdir()
    # file stem -> (display name, metal); files are taken in name order
    expected = {
        "Ag107": ("Ag107", "Ag107"),
        "H3K27Ac": ("H3K27Ac", None),
        "Laminin_Sm147": ("Sm147_Laminin", "Sm147"),  # steinbock-style names
        "Pr141_Cytokeratin 5": ("Pr141_Cytokeratin 5", "Pr141"),
        "YBX1": ("YBX1", None),
    }
    for plane, stem in zip(real_stack, expected):
        tifffile.imwrite(folder / f"{stem}.tiff", plane)
    (folder / "notes.txt").write_text("not an image")
    image = read_imc(folder)
    assert image.channel_names == [name for name, _ in expected.values()]
    assert image.metals == [metal for _, metal in expected.values()]
    assert image.name == "histocat"
    np.testing.assert_array_equal(image.data, real_stack)


def test_three_plane_stack_tagged_rgb_by_tifffile_is_channels(tmp_path, real_stack):
    # tifffile tags any (3, Y, X) stack as planar RGB by default; those are channels.
    path = tmp_path / "three.tiff"
    tifffile.imwrite(path, real_stack[:3].astype(np.uint16))
    with tifffile.TiffFile(path) as tf:
        assert tf.pages[0].photometric == tifffile.PHOTOMETRIC.RGB
    assert read_imc(path).shape == (3, *real_stack.shape[1:])


def test_pages_of_different_shapes(tmp_path, real_stack):
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(real_stack[0], contiguous=False)
        tw.write(real_stack[1, :10], contiguous=False)
    with pytest.raises(ImcReadError, match=r"pages\.tif: pages have different shapes"):
        read_imc(path)


def test_folder_errors(tmp_path, real_stack):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImcReadError, match=r"empty: folder holds no IMC image files \(\.ome\.tiff"):
        read_imc(empty)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    tifffile.imwrite(mixed / "a.tiff", real_stack[0])
    tifffile.imwrite(mixed / "b.tiff", real_stack[0, :10])
    with pytest.raises(ImcReadError, match=r"b\.tiff: shape \(10, 64\) differs from a\.tiff"):
        read_imc(mixed)


@pytest.mark.parametrize("suffix", [".tiff", ".ome.tiff"])
def test_rgb_is_refused(tmp_path, rng, suffix):
    path = tmp_path / f"rgb{suffix}"
    tifffile.imwrite(path, rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), photometric="rgb")
    with pytest.raises(ImcReadError, match=rf"rgb{suffix}: RGB/colour image"):
        read_imc(path)


def test_rgba_is_refused(tmp_path, rng):
    path = tmp_path / "rgba.tif"
    tifffile.imwrite(path, rng.integers(0, 255, (8, 8, 4), dtype=np.uint8), photometric="rgb")
    with pytest.raises(ImcReadError, match=r"rgba\.tif: RGB/colour image .*4 samples"):
        read_imc(path)


def test_4d_data_is_refused(tmp_path, rng):
    path = tmp_path / "zstack.tiff"
    tifffile.imwrite(path, rng.random((2, 3, 8, 8), dtype=np.float32))
    match = r"zstack\.tiff: expected a 2-D .*got shape \(2, 3, 8, 8\)"
    with pytest.raises(ImcReadError, match=match):
        read_imc(path)


def test_nonfinite_values_are_kept_and_reported(tmp_path, real_stack):
    data = real_stack.copy()
    data[0, 0, :3] = np.nan
    data[2, 5, 5] = np.inf
    data[3, 1, 1] = -np.inf
    path = tmp_path / "bad.tiff"
    tifffile.imwrite(path, data)
    with pytest.warns(NonFiniteWarning, match=r"bad\.tiff.*: 5 non-finite"):
        image = read_imc(path)
    assert image.nonfinite_count == 5
    assert np.isnan(image.data[0, 0, :3]).all() and image.data[2, 5, 5] == np.inf
    np.testing.assert_array_equal(image.data, data)


def test_truncated_tiff_is_refused_not_zero_filled(imc_testdata, tmp_path):
    raw = (imc_testdata / "steinbock_img" / "20210305_NE_mockData1_002.ome.tiff").read_bytes()
    path = tmp_path / "cut.ome.tiff"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImcReadError, match=r"cut\.ome\.tiff: truncated TIFF"):
        read_imc(path)
    path.write_bytes(raw[:-100])
    with pytest.raises(ImcReadError, match=r"cut\.ome\.tiff: .*truncated"):
        read_imc(path)
