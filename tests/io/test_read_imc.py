"""The entry points over every reader (io/_registry.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import napari_imc_vae.io as io
from napari_imc_vae.io import ImcImage, ImcReadError, list_acquisitions, read_imc, read_imc_all

SUFFIXES = [".mcd", ".txt", ".ome.tiff", ".ome.tif", ".tiff", ".tif"]


def test_public_api():
    assert set(io.__all__) >= {
        "ImcImage", "ImcReadError", "read_imc", "read_imc_all", "list_acquisitions",
        "SUPPORTED_FORMATS",
    }
    text = " ".join(io.SUPPORTED_FORMATS)
    for suffix in SUFFIXES:
        assert suffix in text
    assert "folder" in text and "'mcd' extra" in text
    assert issubclass(ImcReadError, ValueError)


def test_unknown_suffix_lists_supported_formats(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG....")
    match = r"image\.png: unknown file format '\.png'; supported: .*\.mcd"
    with pytest.raises(ImcReadError, match=match):
        read_imc(path)
    with pytest.raises(ImcReadError, match="unknown file format"):
        list_acquisitions(path)


@pytest.mark.parametrize("suffix", [*SUFFIXES, ".png"])
def test_missing_file(tmp_path, suffix):
    with pytest.raises(ImcReadError, match=rf"nothere{suffix}: file does not exist"):
        read_imc(tmp_path / f"nothere{suffix}")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_empty_file(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.touch()
    with pytest.raises(ImcReadError, match=rf"empty{suffix}: file is empty"):
        read_imc(path)
    with pytest.raises(ImcReadError, match="file is empty"):
        read_imc_all(path)


def test_suffix_is_case_insensitive_and_paths_may_be_str(tmp_path, rng):
    data = rng.random((2, 8, 8), dtype=np.float32)
    tifffile.imwrite(tmp_path / "UPPER.TIFF", data, photometric="minisblack")
    image = read_imc(str(tmp_path / "UPPER.TIFF"))
    assert isinstance(image, ImcImage) and image.name == "UPPER"
    np.testing.assert_array_equal(image.data, data)


def test_single_acquisition_formats(tmp_path, rng):
    path = tmp_path / "stack.ome.tiff"
    tifffile.imwrite(path, rng.random((2, 8, 8), dtype=np.float32), metadata={"axes": "CYX"})
    assert list_acquisitions(path) == ["stack"]
    for acquisition in (None, 0, "stack"):
        assert read_imc(path, acquisition=acquisition).acquisition is None
    assert len(read_imc_all(path)) == 1
    with pytest.raises(ImcReadError, match=r"stack\.ome\.tiff: holds one acquisition"):
        read_imc(path, acquisition="ROI_002")
    with pytest.raises(TypeError, match="acquisition must be"):
        read_imc(path, acquisition=True)  # type: ignore[arg-type]


def test_every_test_file_reads(imc_testdata):
    """Every file in the test data reads (all acquisitions), with finite pixels."""
    paths = [p for p in imc_testdata.glob("*/*") if p.suffix in (".mcd", ".txt", ".tiff")]
    assert len(paths) == 5 + 15 + 15 + 15 + 3
    if not any(p.suffix == ".mcd" for p in paths):
        pytest.fail("no .mcd in the test data")
    pytest.importorskip("readimc", reason="the 'mcd' extra (readimc) is not installed")
    for path in paths:
        for image in read_imc_all(path):
            assert image.nonfinite_count == 0
            assert image.n_channels == 5
