"""Files the tool writes: checked before the work starts, written atomically.

Every output (model files, reconstructions, maps, tables, reports) goes through
:func:`atomic_write`: the bytes go to a temporary file in the target's folder, which
replaces the target only once complete, so a full disk or an interrupt never leaves a
half-written file where a good one was. The result gets the permissions an ordinary
``open(path, "w")`` would (``0666 & ~umask``), not ``mkstemp``'s private 0600.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["OutputError", "atomic_write", "check_output_file", "check_output_dir"]


class OutputError(OSError):
    """An output cannot be written; the message names the path and the cause."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, then move it onto ``path``.

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
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
        raise
    return path


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
