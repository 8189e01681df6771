"""``napari-imc-vae cells`` and ``qc`` on real ROIs, with masks made here from the nuclear channel.

A bad pairing of images and masks (a missing mask, a mask of another size, one file for
several images) is one line on stderr, exit status 1, and nothing written.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage

from napari_imc_vae.cli import main
from napari_imc_vae.engine.trainer import TrainConfig
from napari_imc_vae.engine.workflow import TrainingRun
from napari_imc_vae.io import read_imc
from napari_imc_vae.io.outputs import OUTPUT_SUFFIXES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROIS = ("20210305_NE_mockData1_002", "20210305_NE_mockData3_002")


def nuclear_mask(image) -> np.ndarray:
    """Connected components of the smoothed H3K27Ac channel above 2 counts."""
    nuc = image.data[image.channel_names.index("H3K27Ac")]
    labels, _ = ndimage.label(ndimage.gaussian_filter(nuc, 1) > 2.0, structure=np.ones((3, 3)))
    return labels.astype(np.uint16)


@pytest.fixture(scope="module")
def model_file(imc_testdata, tmp_path_factory):
    torch.set_num_threads(1)
    images = [read_imc(imc_testdata / "steinbock_img" / f"{s}.ome.tiff") for s in ROIS]
    trained, _ = TrainingRun(images, model_config={"latent_dim": 4, "width": 16, "depth": 1},
                             train_config=TrainConfig(steps=20, batch_size=64, device="cpu", seed=0)).run()
    return trained.save(tmp_path_factory.mktemp("model") / "m.pt")


@pytest.fixture
def cohort(imc_testdata, tmp_path):
    """A steinbock-like folder: img/ with the two ROIs (links) and masks/ with their masks."""
    img, masks = tmp_path / "steinbock" / "img", tmp_path / "steinbock" / "masks"
    img.mkdir(parents=True)
    masks.mkdir()
    for s in ROIS:
        source = imc_testdata / "steinbock_img" / f"{s}.ome.tiff"
        (img / source.name).symlink_to(source)
        tifffile.imwrite(masks / f"{s}.tiff", nuclear_mask(read_imc(source)))
    return img, masks


def written(folder) -> list[str]:
    """The outputs in ``folder`` (hidden lock and staging entries are not outputs)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


def _error_line(capsys, command: str) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"napari-imc-vae {command}: error: "), err
    return lines[0]


def test_cells_writes_the_reconstruction_and_one_row_per_cell(model_file, cohort, tmp_path, capsys):
    img, masks = cohort
    out = tmp_path / "out"
    assert main(["cells", str(model_file), str(img), "--masks", str(masks), "-o", str(out), "--device", "cpu",
                 "--motifs", "6"]) == 0
    stdout = capsys.readouterr().out
    for s in ROIS:
        for suffix in (*OUTPUT_SUFFIXES, "_cells.csv", "_cells.h5ad"):
            assert (out / f"{s}{suffix}").is_file(), f"{s}{suffix} missing"
        with open(out / f"{s}_cells.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        labels = tifffile.imread(masks / f"{s}.tiff")
        assert [int(r["cell_id"]) for r in rows] == list(range(1, int(labels.max()) + 1))
        assert sum(int(r["area"]) for r in rows) == int((labels > 0).sum())
        assert {r["image"] for r in rows} == {s}
        assert f"{s}: {len(rows)} cells" in stdout


@pytest.mark.parametrize("fault", ["missing", "other size"])
def test_cells_with_a_mask_missing_or_of_another_size_names_both_and_writes_nothing(
        model_file, cohort, tmp_path, capsys, fault):
    img, masks = cohort
    second = masks / f"{ROIS[1]}.tiff"
    if fault == "missing":
        second.unlink()
        expected = f"the image {ROIS[1]} has no mask in {masks}"
    else:
        tifffile.imwrite(second, np.ones((20, 30), np.uint32))
        expected = f"the mask {second} is 20×30 px but the image {ROIS[1]} is 54×59 px"
    out = tmp_path / "out"
    assert main(["cells", str(model_file), str(img), "--masks", str(masks), "-o", str(out), "--device", "cpu"]) == 1
    assert expected in _error_line(capsys, "cells")
    assert written(out) == []  # the first image, which has a good mask, was not written either


def test_cells_with_one_mask_file_takes_one_image(model_file, cohort, tmp_path, capsys):
    img, masks = cohort
    one = masks / f"{ROIS[0]}.tiff"
    out = tmp_path / "out"
    assert main(["cells", str(model_file), str(img), "--masks", str(one), "-o", str(out), "--device", "cpu"]) == 1
    assert "one mask file" in _error_line(capsys, "cells") and written(out) == []
    image = img / f"{ROIS[0]}.ome.tiff"
    assert main(["cells", str(model_file), str(image), "--masks", str(one), "-o", str(out), "--device", "cpu",
                 "--no-h5ad"]) == 0
    assert (out / f"{ROIS[0]}_cells.csv").is_file() and not (out / f"{ROIS[0]}_cells.h5ad").exists()
