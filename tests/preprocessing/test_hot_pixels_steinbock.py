"""Peer check: our hot-pixel filter at T=50 reproduces steinbock's output on real ROIs."""

import csv

import numpy as np
import pytest

from napari_imc_vae.preprocessing import filter_hot_pixels


def _steinbock_rows(imc_testdata):
    with open(imc_testdata / "steinbock_img_hpf50" / "images.csv", newline="") as f:
        return sorted(csv.DictReader(f), key=lambda r: r["image"])


def _kept_metals(imc_testdata):
    with open(imc_testdata / "steinbock_img_hpf50" / "panel.csv", newline="") as f:
        return [r["channel"] for r in csv.DictReader(f) if r["keep"] == "1"]


def test_hot_pixel_filter_matches_steinbock_on_all_rois(imc_testdata):
    readimc = pytest.importorskip("readimc", reason="the mcd extra (readimc) is not installed")
    tifffile = pytest.importorskip("tifffile")
    rows = _steinbock_rows(imc_testdata)
    metals = _kept_metals(imc_testdata)
    assert len(rows) == 15
    changed = 0
    for row in rows:
        with readimc.MCDFile(imc_testdata / "raw" / row["source_file"]) as f:
            acq = next(a for s in f.slides for a in s.acquisitions
                       if a.id == int(row["acquisition_id"]))
            raw = f.read_acquisition(acq)
            # steinbock keeps the panel's channels in the panel's order
            raw = raw[[acq.channel_names.index(m) for m in metals]]
        expected = tifffile.imread(imc_testdata / "steinbock_img_hpf50" / row["image"])
        ours = filter_hot_pixels(raw, 50)
        assert ours.shape == expected.shape, row["image"]
        assert np.abs(ours - expected).max() <= 1e-3, row["image"]
        changed += int(np.abs(raw - expected).max() > 1e-3)
    assert changed > 0  # the filter had real hot pixels to remove
