"""The one folder rule (io/folder.py) on real data re-laid-out in tmp_path."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile
from imc_variants import SPELLINGS, single_channel_folder, steinbock_folder, steinbock_roi

from napari_imc_vae.io import ImcReadError, folder_layout, list_acquisitions, read_imc, read_imc_all
from napari_imc_vae.io._common import split_identity
from napari_imc_vae.io.folder import shared_prefix


@pytest.fixture
def roi(imc_testdata):
    return steinbock_roi(imc_testdata)


def test_single_channel_ome_tiffs_are_one_image(roi, tmp_path):
    folder = single_channel_folder(tmp_path / "ROI1", roi, prefix="ROI1_")
    assert folder_layout(folder).kind == "channels"
    image = read_imc(folder)
    # files sorted by name: 107Ag, 141Pr, 147Sm, 153Eu, 172Yb = the ROI's channel order
    np.testing.assert_array_equal(image.data, roi.data)
    assert image.metals == roi.metals and image.labels == roi.labels
    assert image.channel_names == ["Ag107", "Pr141_Cytokeratin 5", "Sm147_Laminin", "Eu153_YBX1",
                                   "Yb172_H3K27Ac"]
    assert image.notes == [f"{folder}: removed the prefix 'ROI1_' that every file name shares "
                           "from the channel names"]
    assert list_acquisitions(folder) == ["ROI1"] and len(read_imc_all(folder)) == 1


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_metal_tag_spelling_in_file_names(roi, tmp_path, spelling):
    folder = single_channel_folder(tmp_path / "f", roi, prefix="", spelling=SPELLINGS[spelling])
    image = read_imc(folder)
    # file order may differ from the ROI's (e.g. "CD45_141Pr" sorts by marker): compare by metal
    order = [roi.metals.index(m) for m in image.metals]
    assert sorted(order) == list(range(5)), image.metals
    np.testing.assert_array_equal(image.data, roi.data[order])
    if "{label}" in SPELLINGS[spelling]:
        assert image.labels == [roi.labels[i] for i in order]
        # steinbock-style; Ag107's label is its metal
        assert image.channel_names == [roi.metals[i] if roi.labels[i] == roi.metals[i]
                                       else f"{roi.metals[i]}_{roi.labels[i]}" for i in order]
    else:
        assert image.channel_names == image.metals
    assert image.notes == []  # no prefix shared by every file


@pytest.mark.parametrize(("text", "identity"), [
    ("Pr141", ("Pr141", None)), ("141Pr", ("Pr141", None)), ("Pr(141)", ("Pr141", None)),
    ("Pr141Di", ("Pr141", None)), ("141Pr_CD45", ("Pr141", "CD45")), ("CD45_141Pr", ("Pr141", "CD45")),
    ("CD45(Pr141Di)", ("Pr141", "CD45")), ("CD45 (141Pr)", ("Pr141", "CD45")),
    ("ROI1_115In_CD45", ("In115", "CD45")), ("H3K27Ac", (None, "H3K27Ac")), ("H3", (None, "H3")),
    ("CD3_UCHT1", (None, "CD3_UCHT1")), ("Cytoker_651((3356))Pr141", ("Pr141", "Cytoker")),
])
def test_split_identity(text, identity):
    assert split_identity(text) == identity


@pytest.mark.parametrize(("stems", "prefix"), [
    (["ROI1_115In_CD45", "ROI1_141Pr_CD3"], "ROI1_"),
    (["slide2-roi_07_Pr141_CD3", "slide2-roi_07_Nd142_CD4"], "slide2-roi_07_"),
    (["Pr141_CD45_a", "Pr141_CD45_b"], ""),  # never a metal
    (["CD45", "CD3"], ""),  # "CD" is no whole token
    (["ROI1_115In_CD45"], ""),  # one file: nothing to compare with
    (["ROI1_", "ROI1_x"], ""),  # would leave a name empty
])
def test_shared_prefix(stems, prefix):
    assert shared_prefix(stems) == prefix


def test_steinbock_img_folder_is_a_set_of_images(imc_testdata, tmp_path):
    folder = steinbock_folder(imc_testdata, tmp_path / "img", n=3)
    files = sorted(folder.glob("*.ome.tiff"))
    layout = folder_layout(folder)
    assert layout.kind == "images" and layout.files == tuple(files)
    images = read_imc_all(folder)
    assert [im.source for im in images] == [str(f) for f in files]
    for image, file in zip(images, files):
        one = read_imc(file)
        np.testing.assert_array_equal(image.data, one.data)
        assert image.channel_names == one.channel_names and image.metals == one.metals
    assert list_acquisitions(folder) == [f.name[: -len(".ome.tiff")] for f in files]
    np.testing.assert_array_equal(read_imc(folder).data, images[0].data)  # default: the first
    np.testing.assert_array_equal(read_imc(folder, acquisition=2).data, images[2].data)
    second = list_acquisitions(folder)[1]
    np.testing.assert_array_equal(read_imc(folder, acquisition=second).data, images[1].data)
    with pytest.raises(ImcReadError, match=r"img: no image 'nope'; the folder holds 2021"):
        read_imc(folder, acquisition="nope")


def test_steinbock_hpf50_tiffs_with_panel(imc_testdata, tmp_path):
    folder = steinbock_folder(imc_testdata, tmp_path / "img", n=2, kind="steinbock_img_hpf50")
    images = read_imc_all(folder)
    assert len(images) == 2
    assert images[0].channel_names == ["Ag107", "Cytokeratin 5", "Laminin", "YBX1", "H3K27Ac"]


def test_mixtures_name_the_odd_files(roi, imc_testdata, tmp_path):
    folder = single_channel_folder(tmp_path / "mixed", roi)
    stack = imc_testdata / "steinbock_img" / "20210305_NE_mockData1_002.ome.tiff"
    shutil.copy(stack, folder)
    with pytest.raises(ImcReadError, match=r"mixed: mixes single-channel TIFFs \(5, read as the channels "
                                           r"of one image\) and multi-channel stacks \(1, each an image\); "
                                           r"the odd multi-channel files: 20210305_NE_mockData1_002\.ome\.tiff$"):
        read_imc(folder)
    with_mcd = tmp_path / "with_mcd"
    with_mcd.mkdir()
    shutil.copy(imc_testdata / "raw" / "20210305_NE_mockData1.mcd", with_mcd)
    shutil.copy(stack, with_mcd)
    with pytest.raises(ImcReadError, match=r"a folder of \.mcd files \(20210305_NE_mockData1\.mcd\) also "
                                           r"holds TIFFs: 20210305_NE_mockData1_002\.ome\.tiff"):
        read_imc_all(with_mcd)
    with_txt = tmp_path / "with_txt"
    with_txt.mkdir()
    shutil.copy(imc_testdata / "raw" / "20210305_NE_mockData1_ROI_001_1.txt", with_txt)
    for name in ("a", "b"):
        shutil.copy(stack, with_txt / f"{name}.ome.tiff")
    with pytest.raises(ImcReadError, match=r"mixes IMC \.txt files and TIFFs; the odd \.txt files: "
                                           r"20210305_NE_mockData1_ROI_001_1\.txt"):
        read_imc(with_txt)


def test_other_files_are_left_alone(roi, tmp_path):
    folder = single_channel_folder(tmp_path / "f", roi)
    (folder / "notes.txt").write_text("exported by hand\n")  # a .txt that is no IMC export
    (folder / "panel.csv").write_text("channel,name\n")
    (folder / ".DS_Store").write_bytes(b"\0\1")
    assert read_imc(folder).n_channels == 5


def test_folder_of_mcd_files_is_their_acquisitions(imc_testdata, tmp_path):
    pytest.importorskip("readimc", reason="the mcd extra (readimc) is not installed")
    folder = tmp_path / "raw"
    folder.mkdir()
    for name in ("20210305_NE_mockData1.mcd", "20210305_NE_mockData2.mcd", "20210305_NE_mockData1_ROI_001_1.txt"):
        shutil.copy(imc_testdata / "raw" / name, folder)
    layout = folder_layout(folder)
    assert layout.kind == "mcd" and [p.suffix for p in layout.files] == [".mcd", ".mcd"]
    assert [p.suffix for p in layout.skipped] == [".txt"]  # an export of an acquisition already there
    images = read_imc_all(folder)
    assert len(images) == 6
    assert list_acquisitions(folder)[:2] == ["20210305_NE_mockData1/ROI_001", "20210305_NE_mockData1/ROI_002"]
    second = read_imc(folder, acquisition="20210305_NE_mockData2/ROI_003")
    np.testing.assert_array_equal(second.data, images[5].data)


def test_truncated_stack_in_a_folder_is_named(imc_testdata, tmp_path):
    folder = steinbock_folder(imc_testdata, tmp_path / "img", n=2, kind="steinbock_img_hpf50")
    victim = sorted(folder.glob("*.tiff"))[1]
    with tifffile.TiffFile(victim) as tf:
        end = tf.pages[1].offset
    victim.write_bytes(victim.read_bytes()[:end])
    with pytest.raises(ImcReadError, match=rf"{victim.name}: truncated TIFF, the ImageJ metadata declares 5"):
        read_imc_all(folder)
