"""io.atomic: outputs checked before the work, written whole or not at all, with the umask's mode."""

from __future__ import annotations

import errno
import os

import pytest
from output_places import read_only_place

from napari_imc_vae.io.atomic import OutputError, atomic_write, check_output_dir, check_output_file


def _full_disk(f) -> None:
    f.write(b"half of it")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "report.json"
    path.write_bytes(b"the good old report")
    with pytest.raises(OutputError, match=rf"cannot write {path}: No space left on device"):
        atomic_write(path, _full_disk)
    assert path.read_bytes() == b"the good old report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_an_interrupt_while_writing_leaves_no_temp_file(tmp_path):
    def interrupted(f):
        f.write(b"x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "m.pt", interrupted)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        path = atomic_write(tmp_path / "out.tiff", lambda f: f.write(b"data"))
    finally:
        os.umask(previous)
    assert path.read_bytes() == b"data" and path.stat().st_mode & 0o777 == mode


def test_check_output_file_refuses_at_once_naming_the_path(tmp_path):
    with pytest.raises(OutputError, match=rf"cannot write model file {tmp_path}: it is a directory"):
        check_output_file(tmp_path, "model file")
    note = tmp_path / "note.txt"
    note.write_text("x")
    with pytest.raises(OutputError, match=rf"cannot write model file {note}/m\.pt: {note} is a file, not a folder"):
        check_output_file(note / "m.pt", "model file")
    target = tmp_path / "new" / "deeper" / "m.pt"
    assert check_output_file(target, "model file") == target and target.parent.is_dir()
    assert list(target.parent.iterdir()) == []  # the write test leaves nothing behind


def test_check_output_dir_refuses_a_read_only_place(tmp_path):
    place = read_only_place(tmp_path)
    with pytest.raises(OutputError, match=rf"cannot write output folder {place}: the folder {place} is not writable"):
        check_output_dir(place)
