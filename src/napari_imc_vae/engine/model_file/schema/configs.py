"""The plain-data fields of a model file: format version, top-level fields, configs, histories."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import fields

from napari_imc_vae.engine.model_file.schema.fields import (
    LIMITS, MAX_HISTORY, MAX_HISTORY_KEYS, MAX_SEED, MAX_STEP, OPTIONAL, REQUIRED, SchemaError, check_dict,
    check_number, check_text, check_whole_number, show,
)

__all__ = ["check_config", "check_histories", "check_top_level", "check_version"]


def check_version(d: Mapping, version_max: int) -> int:
    """The file's format version, 1 … ``version_max`` (a newer file asks for an upgrade)."""
    version = d.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SchemaError("format_version", f"must be a whole number >= 1, got {show(version)}")
    if version > version_max:
        raise SchemaError("format_version", f"is {version}; this napari-imc-vae reads versions up to "
                                            f"{version_max}: upgrade the package")
    return version


def check_top_level(d: Mapping, version: int) -> None:
    """Which fields the file has (none unknown, none missing), its package version and step."""
    unknown = sorted(str(k) for k in d if k not in REQUIRED + OPTIONAL)
    if unknown:
        raise SchemaError(unknown[0], f"is not a field of model files (fields: {', '.join(REQUIRED + OPTIONAL)})")
    # format 1 files were written before every field existed; the loader fills in defaults
    required = REQUIRED if version >= 2 else ("format", "format_version", "model_config", "state_dict", "normalizer")
    missing = [k for k in required if k not in d]
    if missing:
        raise SchemaError(missing[0], "is missing")
    if "package_version" in d:
        check_text("package_version", d["package_version"])
    if "step" in d:
        check_whole_number("step", d["step"], 0, MAX_STEP)


#: Ranges of numeric config fields: (low, high, low excluded). Fields not listed (added later)
#: are checked for their default's type and for finiteness.
_RANGES = {
    "CriticConfig": {},
    "TrainConfig": {"steps": (1, 10**9, False), "batch_size": (1, 1 << 20, False), "lr": (0.0, 10.0, True),
                    "weight_decay": (0.0, 100.0, False), "warmup_steps": (0, 10**9, False),
                    "grad_clip": (0.0, 1e9, False), "seed": (0, MAX_SEED, False),
                    "val_every": (1, 10**9, False), "log_every": (1, 10**9, False),
                    "val_fraction": (0.0, 0.999, False), "max_val_patches": (1, 1 << 31, False),
                    "time_limit_s": (0.0, 1e9, True)},
    "ModelConfig": {k: (0 if k in ("depth", "pixel_features") else 1, v, False) for k, v in LIMITS.items()},
}
#: Loss weights and the like: >= 0 (CriticConfig refuses negatives itself).
_DEFAULT_RANGE = {"CriticConfig": (0.0, 1e9, False)}
_CHOICES = {"arch": ("mlp", "conv"), "precision": ("auto", "bf16", "fp32")}


def check_config(field: str, cls, value, *, required: Sequence[str] = ()) -> dict:
    """A config dict (``asdict`` of ``cls``): known keys, each of its default's type, in range.

    Returns the dict to pass to ``cls(**...)``; missing keys take the dataclass default.

    Raises
    ------
    SchemaError
        Naming ``<field>.<key>``: unknown, missing when required, wrong type, out of range.
    """
    value = check_dict(field, value)
    known = {f.name: f for f in fields(cls)}
    for key in value:
        if key not in known:
            raise SchemaError(f"{field}.{key}", f"is not a field of {cls.__name__} "
                                                f"(fields: {', '.join(known)})")
    for key in required:
        if key not in value:
            raise SchemaError(f"{field}.{key}", "is missing")
    ranges = _RANGES.get(cls.__name__, {})
    fallback = _DEFAULT_RANGE.get(cls.__name__, (-1e18, 1e18, False))
    out = {}
    for key, v in value.items():
        name, default = f"{field}.{key}", _default(known[key])
        low, high, low_open = ranges.get(key, fallback)
        if key in _CHOICES:
            if v not in _CHOICES[key]:
                raise SchemaError(name, f"must be one of {', '.join(_CHOICES[key])}, got {show(v)}")
        elif isinstance(default, bool):
            if not isinstance(v, bool):
                raise SchemaError(name, f"must be True or False, got {show(v)}")
        elif isinstance(default, str):
            check_text(name, v)
        elif isinstance(default, int):
            check_whole_number(name, v, math.ceil(low) + (1 if low_open else 0), int(min(high, MAX_STEP)))
        elif default is None and v is None:
            pass  # optional (time_limit_s)
        else:
            v = check_number(name, v, low, high, low_open=low_open)
        out[key] = v
    return out


def _default(f):
    from dataclasses import MISSING

    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return 0  # a required field (ModelConfig.in_channels): a whole number


def check_histories(d: Mapping) -> None:
    """``history`` and ``validation_history``: lists of {name: number} (NaN allowed: a diverged
    run is still recorded as it was)."""
    for field in ("history", "validation_history"):
        if field not in d:
            continue
        value = d[field]
        if not isinstance(value, list) or len(value) > MAX_HISTORY:
            raise SchemaError(field, f"must be a list of at most {MAX_HISTORY} entries, got {show(value)}")
        for i, entry in enumerate(value):
            where = f"{field}[{i}]"
            if not isinstance(entry, dict) or len(entry) > MAX_HISTORY_KEYS:
                raise SchemaError(where, f"must be a dict of at most {MAX_HISTORY_KEYS} numbers, got {show(entry)}")
            for key, number in entry.items():
                if not isinstance(key, str) or not key or len(key) > 128:
                    raise SchemaError(where, f"has a key {show(key)}; keys are names of 1-128 characters")
                if isinstance(number, bool) or not isinstance(number, (int, float)):
                    raise SchemaError(f"{where}.{key}", f"must be a number, got {show(number)}")
