"""Files ``train`` writes: -o checked before any work, --time-limit > 0, umask-following model files;
and Ctrl-C at any moment of ``train`` is a clean "interrupted"."""

import os
import signal
import subprocess
import sys
import time

import pytest
from output_places import read_only_place

from napari_imc_vae.cli import main

TINY = ["--patch", "4", "--latent", "4", "--width", "32", "--depth", "1", "--batch", "16", "--device", "cpu"]


@pytest.fixture
def ome_file(imc_testdata):
    return imc_testdata / "steinbock_img" / "20210305_NE_mockData1_001.ome.tiff"


def _one_line_error(capsys) -> str:
    out, err = capsys.readouterr()
    assert "training on" not in out, "the bad output was found only after training started"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-imc-vae train: error: "), err
    assert ".tmp" not in lines[0] and ".write-test" not in lines[0]  # names the path, not a temp file
    return lines[0]


def test_output_that_is_a_directory_fails_before_training(ome_file, tmp_path, capsys):
    assert main(["train", str(ome_file), "-o", str(tmp_path), "--steps", "2", *TINY]) == 1
    line = _one_line_error(capsys)
    assert str(tmp_path) in line and "is a directory" in line


def test_output_under_a_file_fails_before_training(ome_file, tmp_path, capsys):
    parent = tmp_path / "notes.txt"
    parent.write_text("a file, not a folder")
    target = parent / "m.pt"
    assert main(["train", str(ome_file), "-o", str(target), "--steps", "2", *TINY]) == 1
    line = _one_line_error(capsys)
    assert str(target) in line and "is a file, not a folder" in line


def test_output_in_a_read_only_place_fails_before_training(ome_file, tmp_path, capsys):
    place = read_only_place(tmp_path)
    target = os.path.join(str(place), "m.pt")
    assert main(["train", str(ome_file), "-o", target, "--steps", "2", *TINY]) == 1
    line = _one_line_error(capsys)
    assert target in line and "not writable" in line


@pytest.mark.parametrize("limit", ["0", "-5", "nan", "inf"])
def test_time_limit_must_be_positive(ome_file, tmp_path, limit, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", str(ome_file), "-o", str(tmp_path / "m.pt"), "--time-limit", limit])
    assert e.value.code == 2
    assert "time limit must be > 0" in capsys.readouterr().err


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_model_file_follows_the_umask(ome_file, tmp_path, umask, mode, one_torch_thread):
    path = tmp_path / "m.pt"
    previous = os.umask(umask)
    try:
        assert main(["train", str(ome_file), "-o", str(path), "--steps", "2", *TINY]) == 0
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == mode
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left


def _wait_for_library(pid: int, name: str, timeout_s: float = 60.0) -> None:
    """Until the process has mapped a shared library whose path contains ``name``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/maps") as f:
            if name in f.read():
                return
        time.sleep(0.005)
    raise AssertionError(f"{name} never loaded")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc to see what the process loaded")
@pytest.mark.parametrize(("library", "then_s"), [("_multiarray_umath", 0.0), ("libtorch_cpu", 0.0),
                                                  ("libtorch_cpu", 0.3)])
def test_ctrl_c_early_in_train_is_a_clean_interrupt(ome_file, tmp_path, library, then_s):
    """SIGINT while ``train`` imports numpy, torch, or reads its input: "interrupted", status 130.

    The moment is found by what the process has loaded (numpy is imported after the command line
    installed its handling, torch later), not by guessing how long Python takes to start. Should
    training have begun already, the first Ctrl-C stops it and saves: status 0. Either way no
    traceback and no input called corrupt.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "napari_imc_vae", "train", str(ome_file), "-o", str(tmp_path / "m.pt"),
         "--steps", "100000", *TINY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for_library(proc.pid, library)
        time.sleep(then_s)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in err and "corrupt" not in err and "twice" not in err, err
    if proc.returncode == 130:
        assert err.strip().splitlines()[-1] == "napari-imc-vae train: interrupted", err
        assert not (tmp_path / "m.pt").exists()
    else:
        assert proc.returncode == 0 and "stopped after" in out, (proc.returncode, out, err)
