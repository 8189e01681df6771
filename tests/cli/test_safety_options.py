"""Every option checked before any work, and the unclear messages of #18 (item 6) rewritten to name
the path, what was expected and what came."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from imc_variants import steinbock_roi

from napari_imc_vae.cli import main
from napari_imc_vae.cli._arguments import MAX_SEED, seed_arg

TINY = ["--patch", "4", "--latent", "4", "--width", "16", "--depth", "1", "--batch", "16", "--device", "cpu",
        "--steps", "5"]
ROI = "20210305_NE_mockData1_001.ome.tiff"


@pytest.fixture
def image(imc_testdata):
    return str(imc_testdata / "steinbock_img" / ROI)


@pytest.fixture(scope="module")
def model(imc_testdata, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.pt"
    assert main(["train", str(imc_testdata / "steinbock_img" / ROI), "-o", str(path), *TINY]) == 0
    return path


def _usage_error(capsys, argv: list[str], needle: str) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert needle in err, err


@pytest.mark.parametrize(("flag", "value", "needle"), [
    ("--seed", "-1", "expected a whole number from 0 to 4294967295 (2**32 - 1), got -1"),
    ("--seed", str(2**32), f"got {2**32}"),
    ("--budget", "1e308", "at most 1440 (one day), got 1e308"),
    ("--budget", "nan", "expected quick, standard, thorough or a number of minutes, got 'nan'"),
    ("--budget", "0", "> 0 and at most 1440"),
    ("--lr", "nan", "expected a finite number > 0, got 'nan'"),
    ("--lr", "0", "expected a finite number > 0, got 0"),
    ("--lr", "inf", "got 'inf'"),
    ("--steps", "0", "expected a whole number >= 1, got 0"),
    ("--batch", "-3", "expected a whole number >= 1, got -3"),
    ("--width", "1.5", "expected a whole number >= 1, got '1.5'"),
    ("--kld-scale", "-1", "expected a finite number >= 0, got -1"),
])
def test_train_options_are_refused_before_any_work(image, tmp_path, capsys, flag, value, needle):
    argv = ["train", image, "-o", str(tmp_path / "m.pt"), flag, value]
    if flag == "--budget":
        argv.append("--estimate")  # 1e308 --estimate was an OverflowError traceback
    _usage_error(capsys, argv, f"argument {flag}: expected ")
    _usage_error(capsys, argv, needle)
    assert list(tmp_path.iterdir()) == []


def test_the_largest_seed_is_accepted():
    assert seed_arg(str(MAX_SEED)) == 2**32 - 1 and seed_arg("0") == 0


@pytest.mark.parametrize("command", ["quality", "reconstruct"])
def test_a_stride_outside_one_to_the_patch_size_is_refused(model, image, tmp_path, capsys, command):
    out = ["-o", str(tmp_path / "out")] if command == "reconstruct" else []
    _usage_error(capsys, [command, str(model), image, "--stride", "0", *out],
                 "argument --stride: expected a whole number >= 1, got 0")  # it silently used 4
    assert main([command, str(model), image, "--stride", "5", *out]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"napari-imc-vae {command}: error: --stride must be from 1 to the model's patch size 4, got 5"


def test_a_directory_or_a_fifo_given_as_model(image, tmp_path, capsys):
    assert main(["quality", str(tmp_path), image]) == 1
    assert capsys.readouterr().err.strip() == (f"napari-imc-vae quality: error: model file {tmp_path} is a directory; "
                                               f"give the model file (.pt) written by 'train'")
    fifo = tmp_path / "m.pt"
    os.mkfifo(fifo)
    assert main(["quality", str(fifo), image]) == 1  # it did not block on the pipe
    assert "is not a regular file (a pipe, device or socket)" in capsys.readouterr().err


def _stack_with_panel(folder, data, panel_rows: list[str]) -> str:
    folder.mkdir()
    tifffile.imwrite(folder / "roi.tiff", np.ascontiguousarray(data))
    (folder / "panel.csv").write_text("channel,name,keep\n" + "".join(f"{r},1\n" for r in panel_rows))
    return str(folder / "roi.tiff")


PANEL = ["Ag107,Ag107", "Pr141,Cytokeratin 5", "Sm147,Laminin", "Eu153,YBX1", "Yb172,H3K27Ac"]


def test_an_image_one_pixel_wide_is_too_small_for_any_model(imc_testdata, tmp_path, capsys):
    thin = _stack_with_panel(tmp_path / "thin", steinbock_roi(imc_testdata).data[:, :, :1], PANEL)
    assert main(["train", thin, "-o", str(tmp_path / "m.pt"), *TINY]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("napari-imc-vae train: error: every image is too small for any model (60×1 px): a model needs "
                   "images of at least 2×2 px (the smallest patch size, 2)")


def test_the_same_metal_twice(imc_testdata, tmp_path, capsys):
    data = steinbock_roi(imc_testdata).data
    twice = ["Ag107,Ag107", "Pr141,Cytokeratin 5", "Pr141,Laminin", "Eu153,YBX1", "Yb172,H3K27Ac"]
    dup = _stack_with_panel(tmp_path / "dup", data, twice)
    model = tmp_path / "dup.pt"
    # it said "missing ['Pr141'], extra ['Pr141']" for the very image it was given
    assert main(["train", dup, "-o", str(model), *TINY]) == 0
    assert main(["quality", str(model), dup]) == 0
    capsys.readouterr()
    right = _stack_with_panel(tmp_path / "right", data, PANEL)
    assert main(["quality", str(model), right]) == 1
    err = capsys.readouterr().err
    assert "missing Pr141; extra Sm147 " in err
    assert f"model file {model} lists Pr141 2 times, the image 1 (a duplicate row in a panel?)" in err


def _limit_file_size(size: int):
    def limit() -> None:  # a disk that is full after `size` bytes of any one file
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return limit


def test_a_full_disk_during_the_model_save(image, tmp_path):
    model = tmp_path / "m.pt"
    done = subprocess.run([sys.executable, "-m", "napari_imc_vae", "train", image, "-o", str(model), *TINY],
                          capture_output=True, text=True, preexec_fn=_limit_file_size(50_000), timeout=300)
    assert done.returncode == 1
    line = done.stderr.strip().splitlines()[-1]
    # torch's "unexpected pos" or the OSError, whichever came first: the file, the cause, the free space
    assert line.startswith(f"napari-imc-vae train: error: cannot write {model}: ")
    assert "disk full? " in line and f"free in {tmp_path}" in line and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # no temporary model, no lock


def test_a_full_disk_for_the_cohort_cache(image, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    env = {**os.environ, "NAPARI_IMC_VAE_IN_MEMORY_MB": "0", "NAPARI_IMC_VAE_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-m", "napari_imc_vae", "train", image, "-o", str(tmp_path / "m.pt"),
                           *TINY], capture_output=True, text=True, env=env, preexec_fn=_limit_file_size(20_000),
                          timeout=300)
    assert done.returncode == 1
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(f"napari-imc-vae train: error: cannot write the training cache {cache}/napari-imc-vae-cache-")
    # numpy's words ("N requested and M written"), now with the file, its size and the free space
    assert "00000.npy (35.2 KB for one image): 18000 requested and " in line, line
    assert f"disk full? " in line and f"free in {cache};" in line and "NAPARI_IMC_VAE_CACHE_DIR" in line
    assert list(cache.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
