"""The bytes of a model file: the zip records' CRC-32 and a SHA-256 of the whole file.

The content hash (:mod:`~napari_imc_vae.engine.model_file.schema.content_hash`) covers what loading
reads; the zip records' CRC-32 cover the bytes that hold it. Neither covers the rest of the zip:
headers, timestamps, the padding torch.save puts before each tensor for alignment, the central
directory: 14% of a 180 KB test model's bytes, a few kB of any model. A changed byte there
changes nothing that is loaded (flipped one at a time, 62% of them loaded unnoticed), but the
file is no longer the one that was saved, and the user should hear it. So the saver writes the SHA-256 of every byte before it into the zip comment, the one
place of a zip that readers skip (``torch.load`` with ``weights_only=True`` reads the file as
before), and the loader checks it.

Layout at the end of a file written by :func:`add_file_hash`::

    ... | end-of-central-directory record (22 bytes, comment length 91) | "napari-imc-vae file sha256 " + 64 hex

The hash covers every byte before the comment, the record giving its length included. The file
must end where the comment does: zip readers stop at the comment's declared end, so bytes appended
after it would load unnoticed. Files saved before the hash (torch.save never writes a comment)
load as before, bytes appended to them included (zip readers allow that; their records are still
CRC-checked). The record is searched for in the last 128 KiB, past where zip readers give up (a
comment's longest is 64 KiB): a hashed file with more than that appended reads as one saved before
the hash, and no reader finds its records (then :func:`unreadable_reason` says what the bytes show).
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from pathlib import Path
from typing import BinaryIO

__all__ = ["COMMENT_PREFIX", "add_file_hash", "check_file_hash", "check_zip_records", "unreadable_reason"]

#: The zip comment that holds the hash: this prefix, then 64 lower-case hex digits.
COMMENT_PREFIX = b"napari-imc-vae file sha256 "
_COMMENT_LENGTH = len(COMMENT_PREFIX) + 64
_HEX = re.compile(rb"[0-9a-f]{64}")
#: The end-of-central-directory record: its signature, its size without a comment, and where in it
#: the comment's length (2 bytes, little-endian) sits.
_END_SIGNATURE = b"PK\x05\x06"
#: How a zip archive starts: its first local file header.
_ZIP_START = b"PK\x03\x04"
_END_SIZE = 22
_COMMENT_LENGTH_AT = 20
#: How far from the end the record is searched for: at least as far as zip readers look (zipfile:
#: 64 KiB + 22 bytes, a comment's longest; torch.load's miniz gives up a 4 KiB block later, and
#: read a model file with 69,471 bytes appended).
_SEARCHED = 1 << 17
_BLOCK = 1 << 20


def add_file_hash(f: BinaryIO) -> str:
    """Write the SHA-256 of the zip just written to ``f`` into its comment; returns the file's SHA-256.

    ``f`` is the file ``torch.save`` has written, still open for writing and positioned at its
    end, with a name to read it back by (:func:`~napari_imc_vae.io.atomic.atomic_write` gives
    one). It is read back once (from the page cache: 22 ms for a 35 MB model on a 2-core EPYC,
    where ``torch.save`` takes 44 ms).

    Returns
    -------
    str
        SHA-256 of the whole file as written (comment included), for provenance.
    """
    f.flush()
    size = f.tell()
    digest = hashlib.sha256()
    with open(f.name, "rb") as back:
        _feed(digest, back, size - 2)
        end = back.read(2)
        back.seek(size - _END_SIZE)
        record = back.read(_END_SIZE)
    if record[:4] != _END_SIGNATURE or end != b"\0\0":  # torch.save ends its zip so, without a comment
        raise RuntimeError(f"{f.name} does not end as torch.save's zip files do; its hash cannot be added")
    length = _COMMENT_LENGTH.to_bytes(2, "little")
    digest.update(length)
    comment = COMMENT_PREFIX + digest.hexdigest().encode()
    f.seek(size - 2)
    f.write(length + comment)
    digest.update(comment)
    return digest.hexdigest()


def check_file_hash(path: str | os.PathLike, error: type[Exception] = ValueError) -> tuple[str, bool]:
    """Compare a model file's bytes with the SHA-256 in its zip comment.

    Parameters
    ----------
    path : path-like
    error : exception class
        Raised with one line naming the file (the caller's ``ModelFileError``).

    Returns
    -------
    (str, bool)
        The SHA-256 of the whole file (for provenance), and whether the file carried a hash (False:
        saved before files carried one, another tool's zip, or not a zip at all).

    Raises
    ------
    error
        The bytes differ from those saved (a record whose CRC-32 fails is named), the comment
        that holds the hash is changed or cut, or bytes were appended after it.
    """
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        tail_start = max(0, size - _SEARCHED)
        _feed(digest, f, tail_start)
        tail = f.read()
    record_at = _hashed_record(tail)
    if record_at is None:
        # no record with our comment: saved before model files carried the hash, another tool's zip
        # (a zoo package), not a zip at all, or cut inside its last record (torch.load says so)
        digest.update(tail)
        return digest.hexdigest(), False
    declared = int.from_bytes(tail[record_at + _COMMENT_LENGTH_AT: record_at + _END_SIZE], "little")
    comment = tail[record_at + _END_SIZE:]
    if declared == _COMMENT_LENGTH and len(comment) > _COMMENT_LENGTH:
        # zip readers stop at the comment's declared end and load such a file as before
        added = len(comment) - _COMMENT_LENGTH
        raise error(f"model file {path} is damaged: {added} byte{'s' if added > 1 else ''} "
                    f"{'were' if added > 1 else 'was'} added after the end of the saved file (after the "
                    f"zip comment that holds its SHA-256)")
    if declared != len(comment) or not comment.startswith(COMMENT_PREFIX) \
            or not _HEX.fullmatch(comment[len(COMMENT_PREFIX):]):
        raise error(f"model file {path} is damaged: its zip comment, which holds the file's SHA-256, is "
                    f"changed or cut (a changed byte at the end of the file)")
    whole = digest.copy()
    digest.update(tail[:record_at + _END_SIZE])
    if digest.hexdigest().encode() != comment[len(COMMENT_PREFIX):]:
        try:
            check_zip_records(path, error)  # names the record when the change is inside one
        except error:
            raise
        except Exception:  # noqa: BLE001 - a changed header upsets zipfile: the hash's message says it
            pass
        raise error(f"model file {path} is damaged: its bytes differ from those saved (SHA-256 in the zip "
                    f"comment); the change is outside the stored data (zip headers, timestamps or padding)")
    whole.update(tail)
    return whole.hexdigest(), True


def check_zip_records(path: str | os.PathLike, error: type[Exception] = ValueError) -> None:
    """Every record of the file's zip archive against its CRC-32 (torch.load does not look)."""
    if not zipfile.is_zipfile(path):
        return  # torch.load says what it is
    with zipfile.ZipFile(path) as z:
        bad = z.testzip()
    if bad is not None:
        raise error(f"model file {path} is damaged: record {bad} does not match its checksum "
                    f"(a changed byte)")


def unreadable_reason(path: str | os.PathLike) -> str | None:
    """Why a file that ``torch.load`` could not read is no saved model, in words; None if its bytes
    do not tell (the caller then names the loader's error).

    A saved model is a zip archive: it starts with a zip record and ends with the zip's end record,
    and holds a ``data.pkl``. A file cut short (a copy or download stopped part-way) starts as one
    and lacks the end; a text file or another tool's file does not start as one.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes): nothing was saved in it"
    with open(path, "rb") as f:
        head = f.read(64)
        f.seek(max(0, size - _SEARCHED))
        tail = f.read()
    if not head.startswith(_ZIP_START):
        kind = "it holds text, not" if _is_text(head) else "it is not"
        return f"is not a napari-imc-vae model file: {kind} the zip archive every saved model is"
    if _END_SIGNATURE not in tail:
        if COMMENT_PREFIX in tail:  # the comment this package writes last is there: the end was changed
            return "is damaged: the zip's end record is changed (a changed byte at the end of the file)"
        return f"is cut short: {size:,} bytes, the end of a saved model is missing"
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        listed = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        return (f"is not a napari-imc-vae model file: a zip archive with no model record "
                f"(it holds {listed or 'nothing'})")
    return None


def _is_text(head: bytes) -> bool:
    """Whether a file's first bytes read as text (UTF-8 without control characters but tab and newlines)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:  # also a multi-byte character cut at the 64th byte: rare, then "not a zip"
        return False
    return all(c.isprintable() or c in "\t\r\n" for c in text)


def _hashed_record(tail: bytes) -> int | None:
    """Where in ``tail`` (a file's last 128 KiB) the end record whose comment is ours starts.

    Ours: the comment starts with :data:`COMMENT_PREFIX` (its declared length may be changed), or
    its declared length is that of ours (its text may be changed or cut). Searched from the end, as
    zip readers do, but past any later record: bytes appended to the file may hold one (another
    zip), and it must not hide ours.
    """
    at = len(tail)
    while (at := tail.rfind(_END_SIGNATURE, 0, at)) >= 0:
        if len(tail) - at >= _END_SIZE:  # a record cut short is no record: torch.load says so
            declared = int.from_bytes(tail[at + _COMMENT_LENGTH_AT: at + _END_SIZE], "little")
            if declared == _COMMENT_LENGTH or tail[at + _END_SIZE:].startswith(COMMENT_PREFIX):
                return at
    return None


def _feed(digest, f: BinaryIO, n: int) -> None:
    """The next ``n`` bytes of ``f`` into ``digest``, a block at a time (bounded memory)."""
    while n > 0:
        block = f.read(min(_BLOCK, n))
        if not block:
            break
        digest.update(block)
        n -= len(block)
