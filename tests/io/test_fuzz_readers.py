"""Truncated and random-byte files: every reader raises ImcReadError or returns an ImcImage."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_imc_vae.io import ImcImage, ImcReadError, read_imc

# A real file per suffix, relative to the test data, to cut short.
SOURCES = {
    ".mcd": "raw/20210305_NE_mockData1.mcd",
    ".txt": "raw/20210305_NE_mockData1_ROI_002_2.txt",
    ".ome.tiff": "steinbock_img/20210305_NE_mockData1_002.ome.tiff",
    ".ome.tif": "ometiff_imctools/20210305_NE_mockData2_s0_a2_ac.ome.tiff",
    ".tiff": "steinbock_img_hpf50/20210305_NE_mockData1_002.tiff",
    ".tif": "steinbock_img/20210305_NE_mockData4_001.ome.tiff",
}
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read_or_refuse(content: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(content)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # NaN from half-read text rows is fine here
                result = read_imc(path)
        except ImcReadError as e:
            assert str(path) in str(e)
        else:
            assert isinstance(result, ImcImage)


def _needs_extra(suffix: str) -> None:
    if suffix in (".mcd", ".txt"):
        pytest.importorskip("readimc", reason="the 'mcd' extra (readimc) is not installed")


@pytest.mark.parametrize("suffix", list(SOURCES))
def test_truncated_files(imc_testdata, suffix):
    _needs_extra(suffix)
    raw = (imc_testdata / SOURCES[suffix]).read_bytes()

    @FUZZ
    @given(cut=st.integers(min_value=0, max_value=len(raw) - 1))
    def check(cut: int) -> None:
        _read_or_refuse(raw[:cut], suffix)

    check()


@pytest.mark.parametrize("suffix", list(SOURCES))
def test_random_bytes(imc_testdata, suffix):
    _needs_extra(suffix)
    header = (imc_testdata / SOURCES[suffix]).read_bytes()[:64]

    @FUZZ
    @given(
        body=st.binary(min_size=1, max_size=4096),
        keep_header=st.booleans(),  # a valid magic number takes the parser further in
    )
    def check(body: bytes, keep_header: bool) -> None:
        _read_or_refuse((header if keep_header else b"") + body, suffix)

    check()


@pytest.mark.parametrize("suffix", list(SOURCES))
def test_flipped_bytes(imc_testdata, suffix):
    _needs_extra(suffix)
    raw = (imc_testdata / SOURCES[suffix]).read_bytes()

    @FUZZ
    @given(
        st.lists(
            st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), min_size=1, max_size=8
        )
    )
    def check(edits: list[tuple[int, int]]) -> None:
        content = bytearray(raw)
        for position, value in edits:
            content[position] = value
        _read_or_refuse(bytes(content), suffix)

    check()
