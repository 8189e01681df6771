"""One writer per output, all files of a run or none, safe and distinct output names (#18 item 2)."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest

from napari_imc_vae.cli import main
from napari_imc_vae.io import atomic
from napari_imc_vae.io.atomic import OutputError, StagedFolder
from napari_imc_vae.io.output_guard import OutputLock, OutputLockedError, safe_stem

TINY = ["--patch", "4", "--latent", "4", "--width", "16", "--depth", "1", "--batch", "16", "--device", "cpu"]
ROI = "20210305_NE_mockData1_001.ome.tiff"
CLI = [sys.executable, "-m", "napari_imc_vae"]


@pytest.fixture(scope="module")
def model(imc_testdata, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.pt"
    assert main(["train", str(imc_testdata / "steinbock_img" / ROI), "-o", str(path), "--steps", "5", *TINY]) == 0
    return path


def _wait_for(predicate, timeout_s: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _read_until(stream, text: str, timeout_s: float = 120.0) -> str:
    """Read a child's pipe until ``text`` appears (the progress bar has no newline)."""
    seen, deadline = "", time.monotonic() + timeout_s
    while text not in seen:
        assert time.monotonic() < deadline, f"timed out waiting for {text!r}; got {seen!r}"
        ready, _, _ = select.select([stream], [], [], 0.5)
        if ready:
            chunk = os.read(stream.fileno(), 4096).decode(errors="replace")
            assert chunk, f"the process ended before {text!r}; got {seen!r}"
            seen += chunk
    return seen


def test_two_trainings_to_one_model_file_the_second_fails_at_once_naming_the_first(imc_testdata, tmp_path):
    image = str(imc_testdata / "steinbock_img" / ROI)
    target = tmp_path / "m.pt"
    lock = tmp_path / ".m.pt.lock"
    first = subprocess.Popen([*CLI, "train", image, "-o", str(target), "--steps", "100000", "--time-limit", "300",
                              *TINY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: lock.is_file() and f"pid {first.pid}" in lock.read_text(), what="the first run's lock")
        start = time.monotonic()
        second = subprocess.run([*CLI, "train", image, "-o", str(target), "--steps", "5", *TINY],
                                capture_output=True, text=True, timeout=120)
        elapsed = time.monotonic() - start
        assert second.returncode == 1
        assert "training on" not in second.stdout
        line = second.stderr.strip().splitlines()[-1]
        assert line.startswith(f"napari-imc-vae train: error: {target} is being written by another run (pid {first.pid}, since ")
        assert f"train {image} -o {target} --steps 100000" in line
        assert elapsed < 30, f"the second run took {elapsed:.1f} s to refuse"
        # the first run is unharmed: SIGTERM stops it as Ctrl-C does, after a step, saving its model
        _read_until(first.stderr, "train [")  # its progress bar: the steps run
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert "stopped after" in out and target.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no lock, no temporary file


def test_a_reconstruction_to_a_folder_another_run_writes_fails_naming_it(model, imc_testdata, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from napari_imc_vae.io.output_guard import OutputLock; "
        f"lock = OutputLock({str(out)!r}, command='napari-imc-vae reconstruct a.pt b.tiff').acquire(); "
        "print('held', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code = main(["reconstruct", str(model), str(imc_testdata / "steinbock_img" / ROI), "-o", str(out)])
        err = capsys.readouterr().err
        assert code == 1
        assert f"{out} is being written by another run (pid {holder.pid}, since " in err
        assert "napari-imc-vae reconstruct a.pt b.tiff" in err
    finally:
        holder.kill()
        holder.wait()
    # the holder was killed outright: the lock went with it, the next run takes it
    assert main(["reconstruct", str(model), str(imc_testdata / "steinbock_img" / ROI), "-o", str(out),
                 "--motifs", "0"]) == 0
    assert not any(p.name.startswith(".") for p in out.iterdir())


def test_the_lock_is_exclusive_within_one_process_too(tmp_path):
    with OutputLock(tmp_path / "m.pt", command="first"):
        with pytest.raises(OutputLockedError, match=rf"pid {os.getpid()}, since .*: first"):
            OutputLock(tmp_path / "m.pt").acquire()
    assert list(tmp_path.iterdir()) == []
    with OutputLock(tmp_path / "m.pt"):  # free again
        pass


def test_a_failure_after_the_first_file_leaves_the_old_set(model, imc_testdata, tmp_path, monkeypatch, capsys):
    image = imc_testdata / "steinbock_img" / ROI
    out = tmp_path / "out"
    assert main(["reconstruct", str(model), str(image), "-o", str(out), "--motifs", "0"]) == 0
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(old) >= 6

    def full_disk(path, obj):  # the last file of the set (quality.json) fails
        raise atomic.OutputError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr("napari_imc_vae.io.outputs.write_json", full_disk)
    assert main(["reconstruct", str(model), str(image), "-o", str(out), "--motifs", "3"]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old  # no new maps beside old ones, no staging


def test_a_move_that_fails_half_way_puts_the_folder_back(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.tiff").write_bytes(b"old a")
    (out / "b.tiff").write_bytes(b"old b")
    real_replace, moves = os.replace, []

    def failing_replace(src, dst):
        moves.append(dst)
        if len(moves) == 4:  # a.tiff (backup, move in), b.tiff (backup), then its move fails
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    with StagedFolder(out) as staged:
        (staged.path / "a.tiff").write_bytes(b"new a")
        (staged.path / "b.tiff").write_bytes(b"new b")
        monkeypatch.setattr(atomic.os, "replace", failing_replace)
        with pytest.raises(OutputError, match=rf"cannot move the outputs into {out}: .*the folder is as it was"):
            staged.commit()
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {"a.tiff": b"old a", "b.tiff": b"old b"}


def test_two_images_of_one_name_are_refused_before_the_work(model, imc_testdata, tmp_path, capsys):
    a, b = tmp_path / "A", tmp_path / "B"
    for folder in (a, b):
        folder.mkdir()
        shutil.copy(imc_testdata / "steinbock_img" / ROI, folder / "roi.ome.tiff")
    out = tmp_path / "out"
    assert main(["motifs", str(model), str(a / "roi.ome.tiff"), str(b / "roi.ome.tiff"), "-o", str(out)]) == 1
    captured = capsys.readouterr()
    assert "latent map" not in captured.out  # refused before any image was read
    assert (f"{a / 'roi.ome.tiff'} and {b / 'roi.ome.tiff'} would both write outputs named 'roi'"
            in captured.err)
    assert not out.exists()  # the folder it made for the outputs is removed again


def test_an_mcd_acquisition_named_with_slashes_gives_files_in_the_output_folder(model, imc_testdata, tmp_path):
    pytest.importorskip("readimc")
    raw = (imc_testdata / "raw" / "20210305_NE_mockData1.mcd").read_bytes()
    mcd = tmp_path / "slash.mcd"  # the acquisition software lets users type any description
    mcd.write_bytes(raw.replace("<Description>ROI_001".encode("utf-16-le"), "<Description>R/../01".encode("utf-16-le")))
    out = tmp_path / "out"
    assert main(["reconstruct", str(model), str(mcd), "--acquisition", "0", "-o", str(out), "--motifs", "0"]) == 0
    assert (out / "slash_R_.._01_recon.ome.tiff").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "slash.mcd"]  # nothing written outside out
    assert main(["motifs", str(model), str(mcd), "-o", str(tmp_path / "motifs")]) == 0
    assert (tmp_path / "motifs" / "slash_R_.._01_motifs.tiff").is_file()
    assert safe_stem("..") == "image.." and safe_stem("a\\b:c") == "a_b_c"
