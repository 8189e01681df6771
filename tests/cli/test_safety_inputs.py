"""Outputs never touch inputs (#18 item 1): every -o that is, or resolves to, an input, a file
reading an input depends on, or an input folder is refused before any work, naming the input."""

from __future__ import annotations

import os
import shutil

import pytest
from imc_variants import single_channel_folder, steinbock_folder, steinbock_roi

from napari_imc_vae.cli import main
from napari_imc_vae.io.atomic import OutputError
from napari_imc_vae.io.output_guard import check_output_apart

TINY = ["--patch", "4", "--latent", "4", "--width", "16", "--depth", "1", "--batch", "16", "--device", "cpu",
        "--steps", "5"]
ROI = "20210305_NE_mockData1_001.ome.tiff"


@pytest.fixture
def roi(imc_testdata, tmp_path):
    """A copy of one steinbock OME-TIFF in its own folder (the bytes are checked after each refusal)."""
    folder = tmp_path / "F"
    folder.mkdir()
    return shutil.copy(imc_testdata / "steinbock_img" / ROI, folder / "x.ome.tiff")


@pytest.fixture(scope="module")
def model(imc_testdata, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.pt"
    assert main(["train", str(imc_testdata / "steinbock_img" / ROI), "-o", str(path), *TINY]) == 0
    return path


def _refused(capsys, command: str, *needles: str) -> str:
    out, err = capsys.readouterr()
    assert "training on" not in out and "reconstructing" not in out  # refused before any work
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"napari-imc-vae {command}: error: refusing to write"), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_train_onto_its_own_image_is_refused_and_the_image_kept(roi, capsys):
    before = roi.read_bytes()
    assert main(["train", str(roi), "-o", str(roi), *TINY]) == 1
    _refused(capsys, "train", f"it is the input {roi}")
    assert roi.read_bytes() == before


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_link_to_the_image_is_the_image(roi, tmp_path, link, capsys):
    alias = tmp_path / "alias.pt"
    os.symlink(roi, alias) if link == "symlink" else os.link(roi, alias)
    before = roi.read_bytes()
    assert main(["train", str(roi), "-o", str(alias), *TINY]) == 1
    _refused(capsys, "train", f"it is the input {roi}")
    assert roi.read_bytes() == before


def test_the_panel_of_a_steinbock_folder_is_refused(imc_testdata, tmp_path, capsys):
    folder = steinbock_folder(imc_testdata, tmp_path / "img", n=2)
    panel = (folder / "panel.csv").read_bytes()
    stack = next(folder.glob("*.ome.tiff"))
    assert main(["train", str(stack), "-o", str(folder / "panel.csv"), *TINY]) == 1
    _refused(capsys, "train", "panel.csv", f"reading the input {stack} depends on it")
    assert main(["train", str(folder), "-o", str(folder / "images.csv"), *TINY]) == 1
    _refused(capsys, "train", f"inside the input folder {folder}")
    assert (folder / "panel.csv").read_bytes() == panel


def test_a_channel_file_of_a_single_channel_folder_is_refused(imc_testdata, tmp_path, capsys):
    folder = single_channel_folder(tmp_path / "roi1", steinbock_roi(imc_testdata))
    channel = sorted(folder.iterdir())[0]
    assert main(["train", str(folder), "-o", str(channel), *TINY]) == 1
    _refused(capsys, "train", f"inside the input folder {folder}")
    via_link = tmp_path / "same_folder"
    os.symlink(folder, via_link)
    assert main(["train", str(via_link), "-o", str(folder / "model.pt"), *TINY]) == 1
    _refused(capsys, "train", f"inside the input folder {via_link}")


def test_reconstruct_into_the_folder_of_its_image_is_refused(model, roi, capsys):
    folder = roi.parent
    assert main(["reconstruct", str(model), str(roi), "-o", str(folder)]) == 1
    _refused(capsys, "reconstruct", f"it is the folder of the input {roi}")
    assert sorted(p.name for p in folder.iterdir()) == ["x.ome.tiff"]  # nothing written beside it


def test_motifs_into_a_folder_inside_the_input_folder_is_refused(model, imc_testdata, tmp_path, capsys):
    folder = steinbock_folder(imc_testdata, tmp_path / "img", n=2)
    names = sorted(p.name for p in folder.iterdir())
    assert main(["motifs", str(model), str(folder), "-o", str(folder / "motifs")]) == 1
    _refused(capsys, "motifs", f"inside the input folder {folder}")
    assert sorted(p.name for p in folder.iterdir()) == names


def test_reconstruct_into_a_subfolder_beside_its_image_works(model, roi, capsys):
    out = roi.parent / "results"
    assert main(["reconstruct", str(model), str(roi), "-o", str(out), "--motifs", "0"]) == 0
    assert (out / "x_recon.ome.tiff").is_file()
    assert sorted(p.name for p in roi.parent.iterdir()) == ["results", "x.ome.tiff"]


def test_the_guard_compares_real_places(tmp_path):
    image = tmp_path / "a" / "roi.tiff"
    image.parent.mkdir()
    image.write_bytes(b"stack")
    check_output_apart(tmp_path / "elsewhere" / "m.pt", [image])  # unrelated: fine
    check_output_apart(tmp_path / "a" / "m.pt", [image])  # a model file beside its image: fine
    with pytest.raises(OutputError, match=r"roi\.csv, its channel list: reading the input .*roi\.tiff"):
        check_output_apart(tmp_path / "a" / "roi.csv", [image])  # not there yet, but it would be read
    with pytest.raises(OutputError, match=r"it is the input .*roi\.tiff"):
        check_output_apart(tmp_path / "a" / ".." / "a" / "roi.tiff", [image])
    with pytest.raises(OutputError, match=r"output folder .*: it holds the input folder"):
        check_output_apart(tmp_path, [image.parent], what="output folder", is_folder=True)


def test_the_napari_writer_refuses_the_file_a_layer_came_from(roi):
    import numpy as np

    from napari_imc_vae._napari.layer_data import IMC_KEY
    from napari_imc_vae._napari.writer import write_ome_tiff

    before = roi.read_bytes()
    meta = {"name": "x", "metadata": {IMC_KEY: {"source": str(roi), "channel_names": ["a", "b"]}}}
    with pytest.raises(OutputError, match=rf"refusing to write OME-TIFF {roi}: it is the input {roi}"):
        write_ome_tiff(str(roi), [(np.zeros((2, 4, 4), np.float32), meta, "image")])
    assert roi.read_bytes() == before
