"""SIGTERM and SIGHUP stop a command as Ctrl-C does, and what a killed run leaves is removed by the
next run (#18 item 5): during the model save, while the cohort cache is written, while a
reconstruction's files are staged."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

TINY = ["--patch", "4", "--latent", "4", "--width", "16", "--depth", "1", "--batch", "16", "--device", "cpu",
        "--steps", "5"]
ROIS = ["20210305_NE_mockData1_001.ome.tiff", "20210305_NE_mockData1_002.ome.tiff"]

#: Runs the command line with one step made slow, so that a signal lands inside it: after the
#: step has begun writing it creates MARKER, then waits (interruptibly) before finishing.
DRIVER = '''
import sys, time
from pathlib import Path

mode, marker, argv = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]

def pause():
    marker.write_text("inside")
    for _ in range(40):  # 2 s, in slices a signal can cut
        time.sleep(0.05)

if mode == "save":
    import torch
    real_save = torch.save
    def slow_save(obj, f, *a, **k):
        f.write(b"half a model")
        f.flush()
        pause()
        f.seek(0)
        f.truncate()
        real_save(obj, f, *a, **k)
    torch.save = slow_save
elif mode == "cache":
    from napari_imc_vae.engine.data.cohort import NormalizedCache
    real_cache_save = NormalizedCache._save
    def slow_cache_save(self, file, stored):
        real_cache_save(self, file, stored)
        pause()
    NormalizedCache._save = slow_cache_save
elif mode == "outputs":
    import napari_imc_vae.io.outputs as outputs
    real_json = outputs.write_json
    def slow_json(path, obj):
        pause()
        return real_json(path, obj)
    outputs.write_json = slow_json

from napari_imc_vae.cli import main
sys.exit(main(argv))
'''


@pytest.fixture
def driver(tmp_path):
    path = tmp_path / "driver.py"
    path.write_text(DRIVER)
    return path


def _start(driver, mode: str, marker, argv: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(driver), mode, str(marker), *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def _wait_for_marker(process: subprocess.Popen, marker, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not marker.exists():
        if process.poll() is not None:
            raise AssertionError(f"ended before the slow step: {process.communicate()}")
        assert time.monotonic() < deadline, "timed out waiting for the slow step"
        time.sleep(0.05)


def _signal_inside(driver, mode, marker, argv, signals, env=None) -> tuple[int, str, str]:
    process = _start(driver, mode, marker, argv, env)
    try:
        _wait_for_marker(process, marker)
        for number in signals:
            process.send_signal(number)
            time.sleep(0.2)
        out, err = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    marker.unlink(missing_ok=True)
    return process.returncode, out, err


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_sigterm_during_the_model_save(driver, imc_testdata, tmp_path):
    image = str(imc_testdata / "steinbock_img" / ROIS[0])
    out = tmp_path / "models"
    out.mkdir()
    marker, model = tmp_path / "marker", out / "m.pt"
    argv = ["train", image, "-o", str(model), *TINY]
    # one SIGTERM, as one Ctrl-C: the save in progress is finished, a whole model file and nothing else
    code, stdout, err = _signal_inside(driver, "save", marker, argv, [signal.SIGTERM])
    assert code == 0, err
    assert "model written to" in stdout and _names(out) == ["m.pt"]
    saved = model.read_bytes()
    # a second signal (the scheduler insists) stops the save: the old model stays, nothing else
    code, _, err = _signal_inside(driver, "save", marker, argv, [signal.SIGTERM, signal.SIGHUP])
    assert code == 130 and err.strip().splitlines()[-1] == "napari-imc-vae train: interrupted"
    assert _names(out) == ["m.pt"] and model.read_bytes() == saved
    # kill -9 leaves the temporary model (named by its process) and the lock file ...
    code, _, _ = _signal_inside(driver, "save", marker, argv, [signal.SIGKILL])
    assert code == -signal.SIGKILL
    left = [n for n in _names(out) if n != "m.pt"]
    assert ".m.pt.lock" in left
    assert any(re.fullmatch(r"\.m\.pt\.[A-Za-z0-9-]+-p\d+\.\w+\.tmp", n) for n in left), left
    assert model.read_bytes() == saved
    # ... which the next run removes
    from napari_imc_vae.cli import main

    assert main(["train", image, "-o", str(out / "other.pt"), *TINY]) == 0
    assert _names(out) == ["m.pt", "other.pt"]


def test_sigterm_while_the_cohort_cache_is_written(driver, imc_testdata, tmp_path):
    images = [str(imc_testdata / "steinbock_img" / name) for name in ROIS]
    cache = tmp_path / "cache"
    cache.mkdir()
    env = {"NAPARI_IMC_VAE_IN_MEMORY_MB": "0", "NAPARI_IMC_VAE_CACHE_DIR": str(cache)}  # always the disk cache
    marker, model = tmp_path / "marker", tmp_path / "m.pt"
    argv = ["train", *images, "-o", str(model), *TINY]
    code, stdout, err = _signal_inside(driver, "cache", marker, argv, [signal.SIGTERM], env)
    assert code == 130 and err.strip().splitlines()[-1] == "napari-imc-vae train: interrupted", err
    assert _names(cache) == [] and not model.exists()
    # kill -9: the cache folder stays, named by its process ...
    code, _, _ = _signal_inside(driver, "cache", marker, argv, [signal.SIGKILL], env)
    assert code == -signal.SIGKILL
    (left,) = _names(cache)
    assert re.fullmatch(r"napari-imc-vae-cache-[A-Za-z0-9-]+-p\d+-\w+", left)
    # ... and the next run removes it (and its own)
    done = subprocess.run([sys.executable, "-m", "napari_imc_vae", *argv], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _names(cache) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "driver.py", "m.pt"]


def test_sigterm_while_a_reconstruction_is_written(driver, imc_testdata, tmp_path):
    from napari_imc_vae.cli import main

    image = str(imc_testdata / "steinbock_img" / ROIS[0])
    model = tmp_path / "m.pt"
    assert main(["train", image, "-o", str(model), *TINY]) == 0
    out, marker = tmp_path / "out", tmp_path / "marker"
    argv = ["reconstruct", str(model), image, "-o", str(out), "--motifs", "0"]
    code, _, err = _signal_inside(driver, "outputs", marker, argv, [signal.SIGTERM])
    assert code == 130 and err.strip().splitlines()[-1] == "napari-imc-vae reconstruct: interrupted", err
    assert not out.exists()  # the folder it made is gone: no file already staged, no staging folder, no lock
    code, _, _ = _signal_inside(driver, "outputs", marker, argv, [signal.SIGKILL])
    assert code == -signal.SIGKILL
    assert any(n.endswith(".staging") for n in _names(out)) and all(n.startswith(".") for n in _names(out))
    assert main(argv) == 0
    assert all(not n.startswith(".") for n in _names(out)) and "m_recon.ome.tiff" not in _names(out)
    assert "20210305_NE_mockData1_001_recon.ome.tiff" in _names(out)
