"""Plain messages for model files that are no model, and for a model of another panel: one line,
exit 1, naming the file(s), without the loader's advice text (a walk-through on the shared data)."""

from __future__ import annotations

import re
import shutil

import pytest
import tifffile

from napari_imc_vae.cli import main
from napari_imc_vae.io import read_imc

RESUME = ["--steps", "2", "--device", "cpu"]
ROI = "20210305_NE_mockData1_001.ome.tiff"
#: torch's own text on a file it cannot read (it goes on for 400 characters): never in our line
TORCH_TEXT = re.compile(r"PytorchStreamReader|miniz|checkpoint file|KeyError|EOFError|weights_only", re.I)


@pytest.fixture(scope="module")
def image(imc_testdata):
    return imc_testdata / "steinbock_img" / ROI


@pytest.fixture(scope="module")
def model(image, tiny_cli_model, tmp_path_factory):
    """The session's 5-step model (tests/cli/conftest.py), copied beside its exported package."""
    folder = tmp_path_factory.mktemp("model")
    shutil.copyfile(tiny_cli_model, folder / "m.pt")
    assert main(["export", str(folder / "m.pt"), "-o", str(folder / "m.zip"), "--sample", str(image)]) == 0
    return folder / "m.pt"


def _one_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"napari-imc-vae {command}: error: "), err
    assert not TORCH_TEXT.search(lines[0]), lines[0]
    return lines[0].split(": error: ", 1)[1]


def _damaged(model) -> dict:
    """name -> (bytes, the message that must follow 'model file <path> ')."""
    pt, package = model.read_bytes(), model.with_suffix(".zip").read_bytes()
    half_pt, half_zip = len(pt) // 2, len(package) // 2
    return {
        "half.pt": (pt[:half_pt], f"is cut short: {half_pt:,} bytes, the end of a saved model is missing"),
        "half.zip": (package[:half_zip], f"is cut short: {half_zip:,} bytes, the end of a saved model is missing"),
        "text.pt": (b"channel,marker\nPr141,CD45\n" * 20,
                    "is not a napari-imc-vae model file: it holds text, not the zip archive every saved model is"),
        "empty.pt": (b"", "is empty (0 bytes): nothing was saved in it"),
    }


@pytest.mark.parametrize("command", ["reconstruct", "quality", "train --resume"])
def test_damaged_model_files_are_named_in_plain_words(model, image, tmp_path, capsys, command):
    for name, (content, message) in _damaged(model).items():
        bad = tmp_path / name
        bad.write_bytes(content)
        out = tmp_path / "out"
        argv = {"reconstruct": ["reconstruct", str(bad), str(image), "-o", str(out)],
                "quality": ["quality", str(bad), str(image)],
                "train --resume": ["train", str(image), "--resume", str(bad), "-o", str(out / "r.pt"),
                                   *RESUME]}[command]
        assert main(argv) == 1
        assert _one_line(capsys, argv[0]) == f"model file {bad} {message}"
        assert not out.exists() or not any(out.iterdir())  # refused before any work


def test_a_zip_of_something_else_is_no_model_file(model, image, tmp_path, capsys):
    import zipfile

    other = tmp_path / "notes.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("notes.txt", "not a model")
    assert main(["quality", str(other), str(image)]) == 1
    assert _one_line(capsys, "quality") == (f"model file {other} is not a napari-imc-vae model file: a zip archive "
                                            f"with no model record (it holds notes.txt)")


def _three_channels(image, path):
    """The real ROI with 3 of its 5 channels (Sm147 and Eu153 left out), as an OME-TIFF."""
    roi = read_imc(image)
    keep = [0, 1, 4]
    names = [n if n == m else f"{m}_{n}" for n, m in zip(roi.channel_names, roi.metals)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, roi.data[keep], photometric="minisblack",
                     metadata={"axes": "CYX", "Channel": {"Name": [names[i] for i in keep]}})
    return path


@pytest.mark.parametrize("command", ["reconstruct", "quality", "qc", "train --resume"])
def test_a_model_of_another_panel_names_the_image_and_the_model(model, image, tmp_path, capsys, command):
    folder = tmp_path / "F"
    lacking = _three_channels(image, folder / "b_three.ome.tiff")
    shutil.copy(image, folder / "a_full.ome.tiff")  # qc over the folder: the good one first
    out = tmp_path / "out"
    argv = {"reconstruct": ["reconstruct", str(model), str(lacking), "-o", str(out)],
            "quality": ["quality", str(model), str(lacking)],
            "qc": ["qc", str(model), str(folder), "-o", str(out)],
            "train --resume": ["train", str(lacking), "--resume", str(model), "-o", str(out / "r.pt"),
                               *RESUME]}[command]
    assert main(argv) == 1
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert line == (f"napari-imc-vae {argv[0]}: error: the channels of image {lacking} do not match model file "
                    f"{model}: missing Sm147, Eu153; extra none (expected 5 channels: Ag107, Pr141, Sm147, Eu153, "
                    f"Yb172; the image has 3: Ag107, Pr141, Yb172)"), err
    assert "Traceback" not in err and "[" not in line
