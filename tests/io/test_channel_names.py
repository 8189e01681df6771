"""Channel identity helpers shared by every reader (io/_common.py)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_imc_vae.io import ImcReadError
from napari_imc_vae.io._common import as_stack, clean_label, display_names, parse_metal


@pytest.mark.parametrize(
    ("text", "metal"),
    [
        ("Pr141", "Pr141"),
        ("Pr141Di", "Pr141"),
        ("141Pr", "Pr141"),
        ("107Ag", "Ag107"),
        ("Y89", "Y89"),
        (" Ir191 ", "Ir191"),
        ("Ki67", None),  # "Ki" is no element
        ("CD45", None),
        ("H3K27Ac", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_metal(text, metal):
    assert parse_metal(text) == metal


@pytest.mark.parametrize(
    ("label", "clean"),
    [
        ("Cytoker_651((3356))Pr141", "Cytoker"),
        ("H3K27Ac_1977((2242))Yb172", "H3K27Ac"),
        ("Cytokeratin 5", "Cytokeratin 5"),
        ("CD3_UCHT1", "CD3_UCHT1"),  # only Fluidigm labels lose a trailing number
        ("Histone_3", "Histone_3"),
        (None, ""),
    ],
)
def test_clean_label(label, clean):
    assert clean_label(label) == clean


def test_display_names_prefer_target_then_metal():
    names = display_names(
        ["Ag107", "Pr141", None, None], ["107Ag", "Cytokeratin 5", "CD45", None]
    )
    assert names == ["Ag107", "Cytokeratin 5", "CD45", "ch3"]


def test_display_names_are_unique():
    names = display_names(["Pr141", "Nd142", None, None], ["CD3", "CD3", "x", "x"])
    assert names == ["CD3 (Pr141)", "CD3 (Nd142)", "x [2]", "x [3]"]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4, 5), (1, 2, 3, 4, 5)])
def test_as_stack_rejects_other_dimensions(tmp_path, shape):
    with pytest.raises(ImcReadError, match=r"expected a 2-D .* or 3-D .*got shape"):
        as_stack(np.zeros(shape), tmp_path / "x.tiff")


def test_as_stack_drops_leading_singletons_and_casts(tmp_path):
    out = as_stack(np.ones((1, 1, 3, 4, 5), dtype=np.uint16), tmp_path / "x.tiff")
    assert out.shape == (3, 4, 5) and out.dtype == np.float32
    assert as_stack(np.ones((4, 5)), tmp_path / "x.tiff").shape == (1, 4, 5)


def test_as_stack_rejects_complex(tmp_path):
    with pytest.raises(ImcReadError, match="not real-valued"):
        as_stack(np.zeros((2, 3, 3), dtype=np.complex64), tmp_path / "x.tiff")
