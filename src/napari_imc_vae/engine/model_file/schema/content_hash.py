"""The content hash of a model file: what the loader recomputes to see that nothing changed.

:func:`content_sha256` hashes the loaded content (every key and value, every tensor's dtype,
shape and bytes) in a canonical order; :func:`stamp` stores it under ``"content_sha256"``
(:data:`~.fields.HASH_KEY`) and the loader recomputes it. The hash is of the content, not of the
file's bytes, so a file stays loadable with ``torch.load(..., weights_only=True)``; the
loader also checks the zip records' CRC-32, which covers the bytes that hold the content.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping

import torch

from napari_imc_vae.engine.model_file.schema.fields import HASH_KEY, MAX_NESTING, SchemaError

__all__ = ["content_sha256", "stamp"]


def content_sha256(d: Mapping) -> str:
    """SHA-256 of a model dict's content, the :data:`HASH_KEY` entry left out.

    Canonical: dict keys in sorted order, every value tagged with its type, tensors by dtype,
    shape and bytes; so the same content always gives the same hash, whatever the pickling.

    Raises
    ------
    SchemaError
        A value of a type a model file never holds, or nesting deeper than :data:`MAX_NESTING`.
    """
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in d.items() if k != HASH_KEY}, "", 0)
    return digest.hexdigest()


def stamp(d: dict) -> dict:
    """``d`` with its content hash stored under :data:`HASH_KEY` (what the saver writes)."""
    return {**{k: v for k, v in d.items() if k != HASH_KEY}, HASH_KEY: content_sha256(d)}


def _feed(digest, value, where: str, depth: int) -> None:
    if depth > MAX_NESTING:
        raise SchemaError(where or "(top level)", f"nested deeper than {MAX_NESTING} levels")
    if value is None:
        digest.update(b"N")
    elif isinstance(value, bool):
        digest.update(b"B1" if value else b"B0")
    elif isinstance(value, int):
        text = str(value).encode()
        digest.update(b"I" + struct.pack("<Q", len(text)) + text)
    elif isinstance(value, float):
        digest.update(b"F" + struct.pack("<d", value))
    elif isinstance(value, str):
        text = value.encode("utf-8", "surrogatepass")
        digest.update(b"S" + struct.pack("<Q", len(text)) + text)
    elif isinstance(value, torch.Tensor):
        _feed_tensor(digest, value, where)
    elif isinstance(value, Mapping):
        for key in value:
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise SchemaError(where or "(top level)", f"has a key of type {type(key).__name__}; "
                                                          "model files use str or int keys")
        keys = sorted(value, key=lambda k: (isinstance(k, str), k))
        digest.update(b"D" + struct.pack("<Q", len(keys)))
        for key in keys:
            _feed(digest, key, where, depth + 1)
            _feed(digest, value[key], f"{where}.{key}" if where else str(key), depth + 1)
    elif isinstance(value, (list, tuple)):
        digest.update((b"L" if isinstance(value, list) else b"T") + struct.pack("<Q", len(value)))
        for i, item in enumerate(value):
            _feed(digest, item, f"{where}[{i}]", depth + 1)
    else:
        raise SchemaError(where or "(top level)", f"holds a value of type {type(value).__name__}, "
                                                  "which model files never hold")


def _feed_tensor(digest, t: torch.Tensor, where: str) -> None:
    if t.layout != torch.strided or t.is_quantized or t.device.type == "meta":
        raise SchemaError(where, f"is a {t.layout} tensor; model files hold dense tensors only")
    header = f"{t.dtype}|{tuple(t.shape)}".encode()
    digest.update(b"X" + struct.pack("<Q", len(header)) + header)
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    if flat.numel():
        digest.update(memoryview(flat.view(torch.uint8).numpy()))
