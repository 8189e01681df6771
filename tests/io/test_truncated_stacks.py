"""Stacks cut short: fewer pages than the OME-XML, ImageJ metadata or panel declares are an
ImcReadError naming both counts, and tifffile's log lines never reach stderr as raw text."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_imc_vae.io import ImcReadError, read_imc


def _cut_before_page(src, dst, page: int) -> None:
    """Copy ``src`` up to where page ``page`` starts: earlier pages complete, the chain broken."""
    with tifffile.TiffFile(src) as tf:
        end = tf.pages[page].offset
    dst.write_bytes(src.read_bytes()[:end])


@pytest.mark.parametrize(("relpath", "page", "declares"), [
    ("steinbock_img_hpf50/20210305_NE_mockData1_001.tiff", 1, "the ImageJ metadata"),
    ("steinbock_img/20210305_NE_mockData1_001.ome.tiff", 3, "the OME-XML"),
])
def test_stack_cut_short_names_declared_and_found_planes(imc_testdata, tmp_path, relpath, page, declares):
    src = imc_testdata / relpath
    shutil.copy(src.parent / "panel.csv", tmp_path)  # a panel beside it is not blamed
    path = tmp_path / f"cut{''.join(src.suffixes)}"
    _cut_before_page(src, path, page)
    with pytest.raises(ImcReadError, match=rf"{path.name}: truncated TIFF, {declares} declares "
                                           rf"5 planes but the file holds {page}"):
        read_imc(path)


def test_plain_stack_cut_short_beside_a_panel_blames_the_file(imc_testdata, tmp_path):
    stack = read_imc(imc_testdata / "steinbock_img_hpf50" / "20210305_NE_mockData1_001.tiff").data
    full = tmp_path / "full.tiff"
    with tifffile.TiffWriter(full) as tw:  # no metadata at all: only the panel says 5
        for plane in stack:
            tw.write(plane, contiguous=False, metadata=None)
    folder = tmp_path / "img"
    folder.mkdir()
    shutil.copy(imc_testdata / "steinbock_img_hpf50" / "panel.csv", folder)
    path = folder / "cut.tiff"
    _cut_before_page(full, path, 2)
    with pytest.raises(ImcReadError, match=r"cut\.tiff: truncated TIFF, the panel declares 5 channels "
                                           r"but the file holds 2 \(tifffile: invalid page offset"):
        read_imc(path)


def test_complete_plain_stack_with_a_wrong_panel_still_blames_the_panel(imc_testdata, tmp_path):
    stack = read_imc(imc_testdata / "steinbock_img_hpf50" / "20210305_NE_mockData1_001.tiff").data
    tifffile.imwrite(tmp_path / "two.tiff", np.ascontiguousarray(stack[:2]))
    shutil.copy(imc_testdata / "steinbock_img_hpf50" / "panel.csv", tmp_path)
    with pytest.raises(ImcReadError, match=r"panel\.csv: lists 5 rows with keep=1 but .*two\.tiff has 2"):
        read_imc(tmp_path / "two.tiff")


def test_tifffile_log_lines_do_not_reach_the_user(imc_testdata, tmp_path):
    src = imc_testdata / "steinbock_img" / "20210305_NE_mockData1_001.ome.tiff"
    path = tmp_path / "cut.ome.tiff"
    _cut_before_page(src, path, 2)
    out = subprocess.run([sys.executable, "-m", "napari_imc_vae", "diagnose", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr  # no raw "<tifffile.TiffPages @8> invalid page offset"
    assert lines[0].startswith("napari-imc-vae diagnose: error:") and "declares 5 planes" in lines[0]
    assert "ERROR" not in out.stderr and "<tifffile." not in out.stderr
