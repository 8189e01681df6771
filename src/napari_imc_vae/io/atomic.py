"""Files the tool writes: checked before the work starts, written atomically, leftovers removed.

Every output (model files, reconstructions, maps, tables, reports) goes through
:func:`atomic_write`: the bytes go to a temporary file in the target's folder, which
replaces the target only once complete, so a full disk or an interrupt never leaves a
half-written file where a good one was. The result gets the permissions an ordinary
``open(path, "w")`` would (``0666 & ~umask``), not ``mkstemp``'s private 0600.

A command that writes a set of files (a reconstruction's maps, a cohort's motifs) writes them
into a :class:`StagedFolder` and moves them in at the end: all files of one run or none.

Temporary files and folders carry their owner in their names (:func:`owner_tag`: host and
process id). A run killed before it could clean up (``kill -9``, a power cut) leaves them; the
next run that writes in the same folder removes those whose owner process is gone
(:func:`remove_leftovers`).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["OutputError", "StagedFolder", "atomic_write", "check_output_file", "check_output_dir",
           "owner_gone", "owner_tag", "remove_leftovers"]


class OutputError(OSError):
    """An output cannot be written; the message names the path and the cause."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- owners of temporary files ------------------------------------------------------------------

#: ``<host>-p<pid>`` inside a temporary name.
OWNER_PATTERN = r"(?P<host>[A-Za-z0-9-]+)-p(?P<pid>\d+)"
#: Temporary files and staging folders made here: ``.<name>.<owner>.<random>.tmp|staging``.
_LEFTOVER = re.compile(rf"^\..+\.{OWNER_PATTERN}\.[A-Za-z0-9_]+\.(tmp|staging)$")


def host_name() -> str:
    """This machine's name as it appears in temporary names and lock files."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def owner_tag() -> str:
    """``<host>-p<pid>`` of this process, for the names of its temporary files.

    The host is part of it because a shared folder (NFS on a cluster) is seen by processes
    of other machines, whose process ids mean nothing here.
    """
    return f"{host_name()}-p{os.getpid()}"


def owner_gone(host: str, pid: int) -> bool:
    """Whether the process that made a temporary file has ended (only knowable on its host).

    A process id reused by another process keeps its leftovers for a while: never delete
    what a live process may still be writing.
    """
    if host != host_name() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. EPERM: it exists, under another user
        return False
    return False


def remove_leftovers(folder: str | os.PathLike, pattern: re.Pattern | None = None) -> list[Path]:
    """Delete temporary files and folders in ``folder`` whose owner process is gone.

    Parameters
    ----------
    folder : path-like
    pattern : compiled regex, optional
        Names to consider; must have the groups ``host`` and ``pid`` (:data:`OWNER_PATTERN`).
        Default: this module's temporary files and staging folders.

    Returns
    -------
    list of Path
        What was removed. Never raises: a leftover that cannot be removed stays.
    """
    locks = pattern is None  # lock files sit where the temporary files do
    pattern = pattern or _LEFTOVER
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if locks and _LOCK_FILE.match(entry.name) and _remove_free_lock(entry.path):
            removed.append(Path(entry.path))
            continue
        match = pattern.match(entry.name)
        if not match or not owner_gone(match["host"], int(match["pid"])):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


#: Lock files of :class:`~napari_imc_vae.io.output_guard.OutputLock` (they start with ``pid``).
_LOCK_FILE = re.compile(r"^\..+\.lock$")


def _remove_free_lock(path: str) -> bool:
    """Delete a lock file of ours that no process holds (its run was killed); True if deleted."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        if not os.read(fd, 64).startswith(b"pid "):  # not one of ours, or its run is starting
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # held: that run is alive
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            return False
        os.unlink(path)  # while we hold it, so no run holds it too
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


# --- writing ---------------------------------------------------------------------------------

def size_text(n: float) -> str:
    """Bytes in words: ``"35.2 KB"``."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def free_space(folder: str | os.PathLike) -> str:
    """``"123.4 MB free in <folder>"``, or a note that it could not be measured."""
    try:
        return f"{size_text(shutil.disk_usage(folder).free)} free in {folder}"
    except OSError:
        return f"free space in {folder} unknown"


_DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def write_failure(path: Path, error: BaseException) -> OutputError | None:
    """The one-line error for a write of ``path`` that failed with ``error``; None to re-raise it.

    OSError: its cause, and for a full disk or quota the free space. RuntimeError from a
    writer that got fewer bytes written than it asked for (torch's ``unexpected pos``,
    numpy's ``N requested and M written``): the same, as "disk full?".
    """
    folder = path.parent if str(path.parent) else Path(".")
    if isinstance(error, OutputError):
        return None
    if isinstance(error, OSError):
        cause = error.strerror or str(error)
        if error.errno in _DISK_ERRNOS or "requested and" in str(error):
            return OutputError(f"cannot write {path}: {cause} (disk full? {free_space(folder)})")
        return OutputError(f"cannot write {path}: {cause}")
    text = str(error)
    if isinstance(error, RuntimeError) and any(k in text for k in ("unexpected pos", "write", "PytorchStreamWriter")):
        first = text.strip().splitlines()[-1].strip() if text.strip() else type(error).__name__
        return OutputError(f"cannot write {path}: writing stopped short ({first}); disk full? {free_space(folder)}")
    return None


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, then move it onto ``path``.

    The temporary file is ``.<name>.<owner>.<random>.tmp`` (:func:`owner_tag`); leftovers
    of ended processes in the same folder are removed first.

    Parameters
    ----------
    path : path-like
        The file to (re)place; its folder must exist.
    write : callable
        Writes the whole content to the binary file object it is given.

    Returns
    -------
    Path

    Raises
    ------
    OutputError
        When the folder is not writable or writing fails (e.g. a full disk); the
        message names ``path`` and the cause, and no temporary file is left behind.
    """
    path = Path(path)
    remove_leftovers(path.parent if str(path.parent) else ".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{owner_tag()}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
    os.close(fd)  # reopened by name: writers such as tifffile want a file object with a name
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        failure = write_failure(path, e)
        if failure is not None:
            raise failure from e
        raise
    return path


class StagedFolder:
    """A set of output files written aside and moved into ``target`` together at the end.

    Files are written into a hidden staging folder inside ``target``
    (``.<name>.<owner>.<random>.staging``: dot-named, so readers of the folder skip it);
    :meth:`commit` moves them in, putting back the files they replaced if a move fails, so
    ``target`` holds all files of the run or none of them. Leaving the ``with`` block
    without committing (an error, Ctrl-C, SIGTERM) deletes the staging folder.

    Parameters
    ----------
    target : path-like
        The output folder (it must exist: :func:`check_output_dir`).
    """

    def __init__(self, target: str | os.PathLike) -> None:
        self.target = Path(target)
        self.path: Path | None = None

    def __enter__(self) -> "StagedFolder":
        remove_leftovers(self.target)
        try:
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.target.name or 'out'}.{owner_tag()}.",
                                              suffix=".staging", dir=self.target))
        except OSError as e:
            raise OutputError(f"cannot write in {self.target}: {e.strerror or e}") from e
        return self

    def final(self, staged: str | os.PathLike) -> Path:
        """Where a file written in the staging folder ends up."""
        return self.target / Path(staged).name

    def commit(self) -> list[Path]:
        """Move every staged file into ``target`` (replacing same-named ones); all or none.

        Returns
        -------
        list of Path
            The files now in ``target``, by name.
        """
        if self.path is None:
            raise RuntimeError("StagedFolder.commit outside its with-block")
        staged = sorted(p for p in self.path.iterdir() if p.is_file() and not p.name.startswith("."))
        backup = self.path / ".replaced"
        backup.mkdir()
        moved: list[tuple[Path, Path | None]] = []  # (final path, backup of what it replaced)
        try:
            for p in staged:
                final = self.final(p)
                old = None
                if final.exists() or final.is_symlink():
                    old = backup / p.name
                    os.replace(final, old)
                moved.append((final, old))
                os.replace(p, final)
        except BaseException as e:
            for final, old in reversed(moved):  # put the folder back as it was
                try:
                    if old is not None:
                        os.replace(old, final)
                    else:
                        final.unlink(missing_ok=True)
                except OSError:
                    pass
            if isinstance(e, OSError) and not isinstance(e, OutputError):
                raise OutputError(f"cannot move the outputs into {self.target}: {e.strerror or e}; "
                                  f"the folder is as it was") from e
            raise
        finally:
            self._remove()
        return [final for final, _ in moved]

    def _remove(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None

    def __exit__(self, *exc) -> None:
        self._remove()


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """Fail now, naming ``path``, if a file cannot be written there later.

    Its folder is created when missing. A path that is a directory, a folder that cannot
    be created or written in (a read-only place), or an existing file that is not
    writable raises :class:`OutputError`: ``cannot write <what> <path>: <why>``.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {what} {path}: it is a directory; give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    problem = _folder_problem(folder)
    if problem:
        raise OutputError(f"cannot write {what} {path}: {problem}")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"cannot write {what} {path}: the file exists and is not writable")
    return path


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``path`` if needed and fail now, naming it, if files cannot be written there."""
    path = Path(path)
    problem = _folder_problem(path)
    if problem:
        raise OutputError(f"cannot write {what} {path}: {problem}")
    return path


def _folder_problem(path: Path) -> str | None:
    """Why files cannot be written in folder ``path`` (created if missing), or None."""
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a folder"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot create the folder {path} ({e.strerror or e})"
    try:  # os.access is not enough (read-only mounts, root): try it
        fd, tmp = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        return f"the folder {path} is not writable ({e.strerror or e})"
    return None
