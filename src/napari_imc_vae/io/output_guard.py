"""Outputs that never touch inputs, and one writer per output.

:func:`check_output_apart` refuses, before any work, an output path that is an input, a
file reading an input depends on (``panel.csv``, ``images.csv``, a same-stem ``.csv``, the
channel files of a folder), a folder read as input or a place inside one, or the folder of
an input file (what is written there would be read with it). Paths are compared after
resolving symlinks and by device and inode, so a link or a hard link to an input is caught.

:class:`OutputLock` holds an exclusive lock (``fcntl.flock``) on a lock file beside an
output while a run writes it; a second run on the same output fails at once, naming the
first (process id, command, since when). The lock goes with the process: a run killed with
``kill -9`` leaves no lock held.

:func:`safe_stem` turns an image name into a file-name stem that stays in its folder (an
``.mcd`` acquisition description may hold ``/``).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from napari_imc_vae.io.atomic import OutputError

__all__ = ["OutputLock", "OutputLockedError", "check_output_apart", "duplicate_stems", "safe_stem"]

_TIFF_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif")


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def _same_file(a: Path, b: Path) -> bool:
    """Same directory entry target: by device and inode where both exist, else by real path."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return _real(a) == _real(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _within(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies under it (real paths, then each existing ancestor by inode)."""
    real, real_folder = _real(path), _real(folder)
    if real == real_folder or real_folder in real.parents:
        return True
    try:
        target = os.stat(folder)
    except OSError:
        return False
    for ancestor in (path, *Path(os.path.abspath(path)).parents):
        try:
            st = os.stat(ancestor)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            return True
    return False


def _companions(image_file: Path) -> list[tuple[Path, str]]:
    """Files beside an input file that reading it depends on, with what each is."""
    name = image_file.name.lower()
    for suffix in _TIFF_SUFFIXES:
        if name.endswith(suffix):
            stem = image_file.name[: -len(suffix)]
            return [(image_file.with_name(stem + ".csv"), "its channel list"),
                    (image_file.with_name("panel.csv"), "the panel it is read with"),
                    (image_file.with_name("images.csv"), "the image list of its folder")]
    return []


def _conflict(output: Path, is_folder: bool, source: Path) -> str | None:
    """Why writing ``output`` would hit input ``source``, or None."""
    if source.is_dir():
        if _within(output, source):
            return (f"it is the input folder {source}" if _same_file(output, source)
                    else f"it is inside the input folder {source}")
        if is_folder and _within(source, output):
            return f"it holds the input folder {source}"
        return None
    if _same_file(output, source):
        return f"it is the input {source}"
    if not is_folder:
        for companion, what in _companions(source):
            if _same_file(output, companion):
                return f"it is {companion}, {what}: reading the input {source} depends on it"
        return None
    parent = source.parent if str(source.parent) else Path(".")
    if _same_file(output, parent):
        return (f"it is the folder of the input {source}: files written there would be read with it "
                f"(its panel, or the folder as a set of images)")
    if _within(source, output):
        return f"it holds the input {source}"
    return None


def check_output_apart(output: str | os.PathLike, inputs: Iterable[str | os.PathLike], *,
                       what: str = "output", is_folder: bool = False) -> Path:
    """Refuse an output that is, or would change, an input; call before any work.

    Parameters
    ----------
    output : path-like
        A file to write (``is_folder=False``, e.g. a model file) or a folder the outputs go to.
    inputs : iterable of path-like
        The input files and folders as given (images, folders of images).
    what : str
        Names the output in the message (``"model file"``, ``"output folder"``).
    is_folder : bool
        Whether ``output`` is a folder that files are written into.

    Returns
    -------
    Path
        ``output``.

    Raises
    ------
    OutputError
        ``refusing to write <what> <output>: it is the input <path>`` (or the panel beside it,
        the input folder, a place inside it, the folder of an input file).
    """
    out = Path(output)
    for given in inputs:
        source = Path(given)
        reason = _conflict(out, is_folder, source)
        if reason:
            raise OutputError(f"refusing to write {what} {out}: {reason}; choose another place")
    return out


_UNSAFE = re.compile(r'[\x00-\x1f/\\:*?"<>|]')


def safe_stem(name: str) -> str:
    """A file-name stem for ``name``: path separators and control characters become ``_``.

    ``"ROI 1/tumour"`` -> ``"ROI 1_tumour"``; a name of only dots or nothing becomes
    ``"image"`` followed by what was there, so it can never point at a parent folder.
    """
    stem = _UNSAFE.sub("_", str(name)).strip()
    if not stem.strip("."):
        stem = f"image{stem}"
    return stem.lstrip(".") or "image"


def duplicate_stems(named: Iterable[tuple[str, str]]) -> str | None:
    """``(stem, source)`` pairs -> a sentence naming the first stem two sources share, or None."""
    seen: dict[str, str] = {}
    for stem, source in named:
        key = stem.lower()  # case-insensitive file systems (macOS, Windows) would merge them too
        if key in seen and seen[key] != source:
            return (f"{seen[key]} and {source} would both write outputs named {stem!r} (the second would "
                    f"replace the first); give them separately, to different output folders")
        seen.setdefault(key, source)
    return None


class OutputLockedError(OutputError):
    """Another run holds the output; the message names it."""


def _lock_path(target: Path) -> Path:
    """Inside an output folder (its parent may not be writable: ``-o /scratch/me``), beside a file."""
    if target.is_dir():
        return target / ".napari-imc-vae.lock"
    return target.with_name(f".{target.name}.lock")


class OutputLock:
    """An exclusive lock on ``target`` (a model file or an output folder) for one run.

    The lock file (``.<name>.lock`` beside a file, ``.napari-imc-vae.lock`` in a folder) carries the process id, the command and
    the start time, for the message a second run gets. It is removed on :meth:`release`.

    Parameters
    ----------
    target : path-like
    command : str, optional
        What holds it (default: this process's command line).
    remove_empty : bool
        On release, remove ``target`` if it is an empty folder (one this run created and then
        wrote nothing into, e.g. because the model file was refused).
    """

    def __init__(self, target: str | os.PathLike, command: str | None = None, *, remove_empty: bool = False) -> None:
        self.target = Path(target)
        self.remove_empty = remove_empty
        self.path = _lock_path(self.target)
        self.command = command if command is not None else " ".join(
            [Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "?"
        self._fd: int | None = None

    def acquire(self) -> "OutputLock":
        """Take the lock or fail at once.

        Raises
        ------
        OutputLockedError
            ``<target> is being written by another run (pid N, since T): <command>``.
        OutputError
            The lock file cannot be made (e.g. a read-only folder).
        """
        import fcntl

        from napari_imc_vae.io.atomic import owner_gone

        tries = 0
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as e:
                raise OutputError(f"cannot lock {self.target}: cannot create {self.path} "
                                  f"({e.strerror or e})") from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fields = _read_holder(fd)
                os.close(fd)
                tries += 1
                if _holder_gone(fields, owner_gone) and tries < 40:  # a later run removing a dead run's lock
                    time.sleep(0.05)
                    continue
                holder = _describe(fields)
                raise OutputLockedError(f"{self.target} is being written by another run ({holder}); "
                                        f"wait for it to end or choose another output") from None
            # the file may have been removed by its last holder between our open and lock: retry
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)
        from napari_imc_vae.io.atomic import host_name

        os.write(fd, f"pid {os.getpid()}\nhost {host_name()}\nsince {since}\ncommand {self.command}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and let go (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still held: no other run has it open-and-locked
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        if self.remove_empty:
            try:
                self.target.rmdir()  # only succeeds when empty
            except OSError:
                pass

    def __enter__(self) -> "OutputLock":
        return self if self._fd is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # interpreter shutdown: the process's end lets go of the lock anyway
            pass


def _read_holder(fd: int) -> dict[str, str]:
    """The fields of a lock file held by another run (pid, host, since, command)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode("utf-8", "replace")
    except OSError:
        text = ""
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


def _holder_gone(fields: dict[str, str], owner_gone) -> bool:
    pid = fields.get("pid", "")
    return pid.isdigit() and owner_gone(fields.get("host", ""), int(pid))


def _describe(fields: dict[str, str]) -> str:
    """``pid N, since T: command``."""
    if "pid" not in fields:
        return "it is starting"
    from napari_imc_vae.io.atomic import host_name

    host = fields.get("host")
    where = f" on {host}" if host and host != host_name() else ""
    return f"pid {fields['pid']}{where}, since {fields.get('since', '?')}: {fields.get('command', '?')}"
