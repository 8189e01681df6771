"""No silent misreads: files that tifffile/readimc would read as something else are refused,
naming the file and what is wrong (variants of the shared IMC data made in tmp_path)."""

from __future__ import annotations

import os
import re
import struct

import numpy as np
import pytest
import tifffile

from napari_imc_vae.cli import main
from napari_imc_vae.io import ImcReadError, read_imc
from napari_imc_vae.io.image import MAX_IMAGE_ENV

HPF = "steinbock_img_hpf50/20210305_NE_mockData1_001.tiff"
OME = "steinbock_img/20210305_NE_mockData1_001.ome.tiff"
TXT = "raw/20210305_NE_mockData1_ROI_002_2.txt"


@pytest.fixture
def plain_stack(imc_testdata, tmp_path):
    """The ROI's 5 channels as a TIFF of 5 pages without any metadata (and no panel beside it)."""
    stack = read_imc(imc_testdata / HPF).data
    path = tmp_path / "plain.tiff"
    with tifffile.TiffWriter(path) as tw:
        for plane in stack:
            tw.write(plane, contiguous=False, metadata=None)
    return path, stack


def _page_offsets(path) -> list[int]:
    with tifffile.TiffFile(path) as tf:
        return [page.offset for page in tf.pages]


def test_cut_tiff_without_metadata_is_not_read_as_fewer_channels(plain_stack, tmp_path):
    path, stack = plain_stack
    raw = path.read_bytes()
    for n, offset in enumerate(_page_offsets(path)[1:], start=1):
        cut = tmp_path / f"cut{n}.tiff"
        cut.write_bytes(raw[:offset])  # pages before complete, the chain broken: read as n channels before
        with pytest.raises(ImcReadError, match=rf"cut{n}\.tiff: truncated or damaged TIFF, its chain of pages "
                                               rf"breaks after page {n} .*invalid page offset {offset}"):
            read_imc(cut)


def test_damaged_header_bytes_never_give_other_channels(plain_stack, tmp_path):
    """8 damaged bytes anywhere in the first two pages' headers (and then cut): refused or read right."""
    path, stack = plain_stack
    raw = path.read_bytes()
    offsets = _page_offsets(path)
    rng = np.random.default_rng(8)
    bad = tmp_path / "damaged.tiff"
    header = list(range(0, 224, 8)) + list(range(offsets[1], offsets[1] + 208, 8))  # IFDs, not pixels
    refused = 0
    for start in header:
        for content in (raw, raw[: offsets[2]]):
            damaged = bytearray(content)
            damaged[start:start + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
            bad.write_bytes(bytes(damaged))
            try:
                image = read_imc(bad)
            except ImcReadError as e:
                assert str(bad) in str(e)
                refused += 1
            else:  # what is read is the whole stack, unchanged
                assert image.data.shape == stack.shape, start
                np.testing.assert_array_equal(image.data, stack)
    assert refused > len(header)  # every cut variant at least


def _with_ome_sizec(imc_testdata, path, size_c: int) -> None:
    with tifffile.TiffFile(imc_testdata / OME) as tf:
        xml, data = tf.ome_metadata, tf.asarray()
    xml = re.sub(r'SizeC="\d+"', f'SizeC="{size_c}"', xml)
    tifffile.imwrite(path, data, description=xml, metadata=None)


@pytest.mark.parametrize("size_c", [4, 6])
def test_ome_xml_size_c_that_disagrees_with_the_planes_is_refused(imc_testdata, tmp_path, size_c):
    path = tmp_path / f"sizec{size_c}.ome.tiff"
    _with_ome_sizec(imc_testdata, path, size_c)
    with pytest.raises(ImcReadError, match=rf"sizec{size_c}\.ome\.tiff: .*OME-XML declares {size_c} planes .*"
                                           r"the file holds 5"):
        read_imc(path)


def test_ome_xml_size_c_through_the_cli_is_one_line(imc_testdata, tmp_path, capsys):
    path = tmp_path / "sizec4.ome.tiff"
    _with_ome_sizec(imc_testdata, path, 4)
    assert main(["diagnose", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "declares 4 planes" in err[0] and str(path) in err[0]


def _patch_tag(path, page_index: int, code: int, value: int) -> None:
    """Overwrite the (first) value of a LONG/SHORT tag of a classic little-endian TIFF in place."""
    with tifffile.TiffFile(path) as tf:
        tag = tf.pages[page_index].tags[code]
        offset, dtype, count = tag.valueoffset, tag.dtype, tag.count
    raw = bytearray(path.read_bytes())
    fmt = "<I" if dtype == 4 else "<H"
    if count > 1 and dtype == 4 and count * 4 > 4:
        offset = struct.unpack("<I", raw[tag.offset + 8:tag.offset + 12])[0]
    raw[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.write_bytes(bytes(raw))


def test_a_strip_pointing_past_the_end_is_refused(plain_stack):
    path, _ = plain_stack
    size = path.stat().st_size
    _patch_tag(path, 2, 273, size + 1000)  # StripOffsets of page 2
    with pytest.raises(ImcReadError, match=rf"plain\.tiff: truncated TIFF, page 2 needs \d+ bytes, file has {size}"):
        read_imc(path)


def test_a_tile_pointing_past_the_end_is_refused(imc_testdata, tmp_path):
    stack = read_imc(imc_testdata / HPF).data
    path = tmp_path / "tiled.tiff"
    tifffile.imwrite(path, stack, tile=(16, 16), metadata=None)
    size = path.stat().st_size
    _patch_tag(path, 0, 324, size + 10)  # the first TileOffsets entry
    with pytest.raises(ImcReadError, match=rf"tiled\.tiff: truncated TIFF, page 0 needs \d+ bytes, file has {size}"):
        read_imc(path)


def test_an_empty_strip_is_refused_not_read_as_zeros(plain_stack):
    path, _ = plain_stack
    _patch_tag(path, 1, 279, 0)  # StripByteCounts of page 1
    with pytest.raises(ImcReadError, match=r"plain\.tiff: damaged TIFF, page 1 has an empty strip or tile"):
        read_imc(path)


def test_decoded_size_is_checked_before_decoding(imc_testdata, tmp_path, monkeypatch, capsys):
    """A ~1 MB compressed TIFF that decodes to 900 MB (3.6 GB as float32); `diagnose` ran out of memory."""
    path = tmp_path / "bomb.tiff"
    tile = np.zeros((4096, 4096), np.uint8)
    shape = (30000, 30000)
    n_tiles = -(-shape[0] // 4096) * -(-shape[1] // 4096)
    tifffile.imwrite(path, (tile for _ in range(n_tiles)), shape=shape, dtype=np.uint8, tile=(4096, 4096),
                     compression="zlib", metadata=None)
    assert path.stat().st_size < 2_000_000
    monkeypatch.setenv(MAX_IMAGE_ENV, "2")
    assert main(["diagnose", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert re.search(r"bomb\.tiff: the image is 30000 x 30000 uint8 \(0\.90 GB decoded, 3\.60 GB as float32\), "
                     rf"more than the limit of 2\.00 GB \(set by {MAX_IMAGE_ENV}=2\)", err[0]), err[0]
    # the default limit follows the memory available, and says so
    monkeypatch.setenv(MAX_IMAGE_ENV, "0.00001")
    with pytest.raises(ImcReadError, match=r"the image is 5 x 60 x 60 float32 .* more than the limit"):
        read_imc(imc_testdata / HPF)
    monkeypatch.delenv(MAX_IMAGE_ENV)
    from napari_imc_vae.io.image import image_size_limit

    limit, why = image_size_limit()
    assert 0 < limit and ("memory available" in why or why == "the fixed limit")


# -- IMC .txt exports --------------------------------------------------------------------------------


@pytest.fixture
def txt_lines(imc_testdata):
    pytest.importorskip("readimc", reason="the 'mcd' extra (readimc) is not installed")
    return (imc_testdata / TXT).read_bytes().splitlines(keepends=True)


def test_txt_cut_at_an_image_row_end_is_refused_by_the_mcd_beside_it(imc_testdata, txt_lines, tmp_path):
    """64 pixels a row: a cut after 40 complete rows looked like a complete 64 x 40 image."""
    (tmp_path / "20210305_NE_mockData1.mcd").symlink_to(imc_testdata / "raw" / "20210305_NE_mockData1.mcd")
    path = tmp_path / "20210305_NE_mockData1_ROI_002_2.txt"
    path.write_bytes(b"".join(txt_lines[: 1 + 40 * 64]))
    with pytest.raises(ImcReadError, match=r"ROI_002_2\.txt: holds a 64 x 40 image but 20210305_NE_mockData1\.mcd "
                                           r"records acquisition 2 as 64 x 51"):
        read_imc(path)
    path.write_bytes(b"".join(txt_lines))  # the whole file beside the same .mcd reads
    assert read_imc(path).shape == (5, 51, 64)


def test_txt_last_image_row_incomplete(txt_lines, tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"".join(txt_lines[: 1 + 40 * 64 + 17]))
    with pytest.raises(ImcReadError, match=r"x\.txt: truncated IMC \.txt file, the last image row has 17 of 64"):
        read_imc(path)


def test_txt_rows_that_disagree_with_the_header(txt_lines, tmp_path):
    path = tmp_path / "x.txt"
    short = txt_lines[:]
    short[10] = b"\t".join(short[10].split(b"\t")[:-1]) + b"\n"  # one value missing: was NaN-filled
    path.write_bytes(b"".join(short))
    with pytest.raises(ImcReadError, match=r"x\.txt: line 11 has 10 values, the header 11 columns"):
        read_imc(path)
    long = txt_lines[:]
    long[1] = long[1].rstrip(b"\n") + b"\t7.000\n"  # one value too many on the first row
    path.write_bytes(b"".join(long))
    with pytest.raises(ImcReadError, match=r"x\.txt: line 2 has 12 values, the header 11 columns: the rows "
                                           r"disagree with the header"):
        read_imc(path)
    swapped = txt_lines[:]
    swapped[5], swapped[6] = swapped[6], swapped[5]  # pixels out of raster order
    path.write_bytes(b"".join(swapped))
    with pytest.raises(ImcReadError, match=r"x\.txt: the pixel rows are not one 64 x 51 image in raster order "
                                           r"\(line 6\)"):
        read_imc(path)


# -- channel folders ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["broken", "loop", "fifo", "folder"])
def test_unreadable_entries_in_a_channel_folder_are_named(imc_testdata, tmp_path, kind):
    from imc_variants import single_channel_folder, steinbock_roi

    folder = single_channel_folder(tmp_path / "roi", steinbock_roi(imc_testdata))
    assert read_imc(folder).n_channels == 5
    odd = folder / "ROI1_153Eu_YBX1.ome.tiff"
    odd.unlink()
    if kind == "broken":
        odd.symlink_to(tmp_path / "gone.ome.tiff")
        match = r"cannot read ROI1_153Eu_YBX1\.ome\.tiff -> .*gone\.ome\.tiff: No such file.*broken or looping"
    elif kind == "loop":
        odd.symlink_to(odd)
        match = r"cannot read ROI1_153Eu_YBX1\.ome\.tiff -> .*: Too many levels of symbolic links"
    elif kind == "fifo":
        os.mkfifo(odd)
        match = r"ROI1_153Eu_YBX1\.ome\.tiff is not a regular file \(a FIFO"
    else:
        odd.mkdir()
        match = r"ROI1_153Eu_YBX1\.ome\.tiff is a folder named like an image file"
    with pytest.raises(ImcReadError, match=rf"{re.escape(str(folder))}: {match}"):
        read_imc(folder)
