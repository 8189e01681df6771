"""Validation of stored normalizer dicts: every message names the field."""

from __future__ import annotations

import math

_CHANNEL_FIELDS = ("mean", "std", "clip_high", "constant", "n_finite")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_list(name: str, values, n: int, ok, expected: str) -> list:
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"normalizer dict: {name} must be a list of {n} {expected}, "
                         f"got {type(values).__name__}")
    if len(values) != n:
        raise ValueError(f"normalizer dict: {name} must have {n} entries (one per channel), "
                         f"got {len(values)}")
    for i, v in enumerate(values):
        if not ok(v):
            raise ValueError(f"normalizer dict: {name}[{i}] must be {expected}, got {v!r}")
    return list(values)


def validate_normalizer_dict(d, fmt: str, version: int) -> dict:
    """Check a :meth:`Normalizer.to_dict` output; return the constructor's arguments.

    Raises
    ------
    ValueError
        Naming the field that is missing, has the wrong length, or holds a bad value.
    """
    if not isinstance(d, dict):
        raise ValueError(f"normalizer dict must be a dict, got {type(d).__name__}")
    missing = [k for k in ("format", "format_version", "channel_names", "params", "channels")
               if k not in d]
    if missing:
        raise ValueError(f"normalizer dict is missing keys {missing}")
    if d["format"] != fmt:
        raise ValueError(f"normalizer dict: format must be {fmt!r}, got {d['format']!r}")
    v = d["format_version"]
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= version:
        raise ValueError(
            f"normalizer dict: format_version must be an int from 1 to {version} "
            f"(newer files need a newer napari-imc-vae), got {v!r}"
        )
    names = d["channel_names"]
    if (not isinstance(names, (list, tuple)) or not names
            or not all(isinstance(c, str) for c in names)):
        raise ValueError(
            f"normalizer dict: channel_names must be a non-empty list of str, got {names!r}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"normalizer dict: channel_names must be unique, got {list(names)}")
    n = len(names)
    keys = d.get("channel_keys", names)
    keys = _check_list("channel_keys", keys, n, lambda k: isinstance(k, str), "a str")
    if not isinstance(d["params"], dict):
        raise ValueError(
            f"normalizer dict: params must be a dict, got {type(d['params']).__name__}"
        )
    channels = d["channels"]
    if not isinstance(channels, dict):
        raise ValueError(f"normalizer dict: channels must be a dict, got {type(channels).__name__}")
    missing = [k for k in _CHANNEL_FIELDS if k not in channels]
    if missing:
        raise ValueError(f"normalizer dict: channels is missing keys {missing}")
    out = {
        "channel_names": list(names),
        "channel_keys": keys,
        "params": dict(d["params"]),
        "mean": _check_list("channels.mean", channels["mean"], n, _is_number, "a finite number"),
        "std": _check_list("channels.std", channels["std"], n,
                           lambda s: _is_number(s) and s > 0, "a finite number > 0"),
        "clip_high": _check_list("channels.clip_high", channels["clip_high"], n,
                                 lambda s: s is None or _is_number(s), "a finite number or None"),
        "constant": _check_list("channels.constant", channels["constant"], n,
                                lambda s: isinstance(s, bool), "True or False"),
        "n_finite": _check_list("channels.n_finite", channels["n_finite"], n,
                                lambda s: isinstance(s, int) and not isinstance(s, bool) and s >= 0,
                                "an int >= 0"),
    }
    return out
