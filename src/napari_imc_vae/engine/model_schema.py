"""What a model file may hold: one schema for every field, checked before anything is built.

A model file is a plain dict (see :mod:`~napari_imc_vae.engine.checkpoint`). Everything in it is
checked here — type, range and shape — *before* a model is allocated, so that a damaged or
crafted file is refused with one line naming the field, never a traceback, a 3-minute build
(``depth=100000``), a 25 GB allocation (``width=40000``) or a crash in a fused optimizer kernel
(a wrong-shaped tensor in the optimizer state).

Integrity: :func:`content_sha256` hashes the loaded content (every key and value, every
tensor's dtype, shape and bytes) in a canonical order; :func:`stamp` stores it under
``"content_sha256"`` and the loader recomputes it. The hash is of the content, not of the
file's bytes, so a file stays loadable with ``torch.load(..., weights_only=True)``; the
loader also checks the zip records' CRC-32, which covers the bytes that hold the content.

No scheduler state is stored: the learning rate is a function of the step and the train
config (:func:`~napari_imc_vae.engine.training.trainer.lr_factor`), so ``step`` is all a resumed run needs.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import fields

import torch

__all__ = ["HASH_KEY", "LIMITS", "MAX_PARAMETERS", "SchemaError", "check_baseline", "check_config",
           "check_histories", "check_motifs", "check_optimizer_state", "check_rate_calibration", "check_state_dict",
           "check_top_level",
           "check_version", "content_sha256", "expected_parameters", "stamp"]

#: Where the content hash is stored in the file's dict.
HASH_KEY = "content_sha256"

#: Upper limits of the architecture's dimensions, checked before the model is built. Far above
#: what IMC needs (5-50 channels, 8-16 px patches, latent 16-128, width 512) and low enough that
#: the model is built on the meta device in well under a second.
LIMITS = {"in_channels": 4096, "patch_size": 128, "latent_dim": 4096, "width": 16384, "depth": 64,
          "pixel_features": 4096, "frame_features": 1024, "frame_templates": 1024, "conv_channels": 1024}
#: At most this many parameters (4 GB as float32): the model is allocated once more on the device.
MAX_PARAMETERS = 1 << 30
MAX_STEP = 1 << 62
MAX_SEED = 2**32 - 1
MAX_HISTORY = 10_000_000  # entries of a history (one per logged step)
MAX_HISTORY_KEYS = 256
MAX_TEXT = 4096  # characters of any stored string
MAX_MOTIFS = 1024
MAX_NESTING = 32

#: Top-level fields; ``required`` ones must be present in files of the current format version.
REQUIRED = ("format", "format_version", "package_version", "model_config", "critic_config", "train_config",
            "state_dict", "optimizer_state", "step", "channel_names", "channel_keys", "normalizer",
            "history", "validation_history")
OPTIONAL = ("baseline", "motifs", "rate_calibration", HASH_KEY)


class SchemaError(ValueError):
    """One field of a model file is missing or wrong; ``field`` names it (``model_config.depth``)."""

    def __init__(self, field: str, problem: str):
        self.field = field
        super().__init__(f"field {field}: {problem}")


# -- content hash ----------------------------------------------------------------------------------


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


# -- small checks -------------------------------------------------------------------------------------


def _int(field: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SchemaError(field, f"must be a whole number from {low} to {high}, got {_show(value)}")
    return value


def _number(field: str, value, low: float, high: float, *, low_open: bool = False) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and (value > low if low_open else value >= low) and value <= high)
    if not ok:
        bound = f"> {low}" if low_open else f">= {low}"
        raise SchemaError(field, f"must be a finite number {bound} and <= {high:g}, got {_show(value)}")
    return float(value)


def _text(field: str, value, *, empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT or (not empty and not value.strip()):
        what = "a str" if empty else "a non-empty str"
        raise SchemaError(field, f"must be {what} of at most {MAX_TEXT} characters, got {_show(value)}")
    return value


def _show(value) -> str:
    """A value for a message: short, one line, its type when it is not a plain number or text."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, (dict, list, tuple)) and len(value) > 4:
        return f"a {type(value).__name__} of {len(value)} entries"
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return text if isinstance(value, (int, float, str, type(None))) else f"{text} ({type(value).__name__})"


def _dict(field: str, value) -> dict:
    if not isinstance(value, dict):
        raise SchemaError(field, f"must be a dict, got {_show(value)}")
    return value


# -- top level and configs ------------------------------------------------------------------------------


def check_version(d: Mapping, version_max: int) -> int:
    """The file's format version, 1 … ``version_max`` (a newer file asks for an upgrade)."""
    version = d.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SchemaError("format_version", f"must be a whole number >= 1, got {_show(version)}")
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
        _text("package_version", d["package_version"])
    if "step" in d:
        _int("step", d["step"], 0, MAX_STEP)


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
    value = _dict(field, value)
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
                raise SchemaError(name, f"must be one of {', '.join(_CHOICES[key])}, got {_show(v)}")
        elif isinstance(default, bool):
            if not isinstance(v, bool):
                raise SchemaError(name, f"must be True or False, got {_show(v)}")
        elif isinstance(default, str):
            _text(name, v)
        elif isinstance(default, int):
            _int(name, v, math.ceil(low) + (1 if low_open else 0), int(min(high, MAX_STEP)))
        elif default is None and v is None:
            pass  # optional (time_limit_s)
        else:
            v = _number(name, v, low, high, low_open=low_open)
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
            raise SchemaError(field, f"must be a list of at most {MAX_HISTORY} entries, got {_show(value)}")
        for i, entry in enumerate(value):
            where = f"{field}[{i}]"
            if not isinstance(entry, dict) or len(entry) > MAX_HISTORY_KEYS:
                raise SchemaError(where, f"must be a dict of at most {MAX_HISTORY_KEYS} numbers, got {_show(entry)}")
            for key, number in entry.items():
                if not isinstance(key, str) or not key or len(key) > 128:
                    raise SchemaError(where, f"has a key {_show(key)}; keys are names of 1-128 characters")
                if isinstance(number, bool) or not isinstance(number, (int, float)):
                    raise SchemaError(f"{where}.{key}", f"must be a number, got {_show(number)}")


# -- tensors: weights and optimizer state -------------------------------------------------------------


def expected_parameters(model: torch.nn.Module) -> tuple[dict[str, tuple[torch.Size, torch.dtype]], list[torch.Size]]:
    """State-dict shapes and dtypes of a (meta-device) model, and its parameters' shapes in order."""
    state = {k: (v.shape, v.dtype) for k, v in model.state_dict().items()}
    return state, [p.shape for p in model.parameters()]


def _dense(field: str, t, shape, dtype) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise SchemaError(field, f"must be a tensor, got {_show(t)}")
    if t.layout != torch.strided or t.is_quantized:
        raise SchemaError(field, f"must be a dense tensor, got a {t.layout} tensor")
    if t.dtype != dtype:
        raise SchemaError(field, f"must be a {dtype} tensor, got {t.dtype}")
    if tuple(t.shape) != tuple(shape):
        raise SchemaError(field, f"must have shape {tuple(shape)}, got {tuple(t.shape)}")
    if not t.is_contiguous():
        # a crafted stride (0, say) passes the shape check; fused kernels assume contiguous memory
        raise SchemaError(field, f"must be a contiguous tensor, got strides {t.stride()}")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise SchemaError(field, "holds NaN or Inf values")
    return t


def check_state_dict(value, expected: Mapping[str, tuple[torch.Size, torch.dtype]]) -> None:
    """The weights: exactly the model's tensors, each of its shape and dtype, all finite."""
    value = _dict("state_dict", value)
    missing = [k for k in expected if k not in value]
    extra = [str(k) for k in value if k not in expected]
    if missing or extra:
        raise SchemaError("state_dict", f"does not fit the model_config: missing {missing[:4]}, "
                                        f"unexpected {extra[:4]}")
    for key, (shape, dtype) in expected.items():
        _dense(f"state_dict.{key}", value[key], shape, dtype)


_GROUP_FLAGS = ("amsgrad", "maximize", "capturable", "differentiable", "decoupled_weight_decay")
_GROUP_FLAGS_OR_NONE = ("foreach", "fused")


def check_optimizer_state(value, param_shapes: Sequence[torch.Size]) -> None:
    """AdamW's state dict against the model's parameters: one group holding every parameter,
    moments of each parameter's shape (a wrong shape crashes the fused kernel), finite values.

    Raises
    ------
    SchemaError
        Naming ``optimizer_state.…`` down to the entry and tensor.
    """
    if value is None:
        return
    value = _dict("optimizer_state", value)
    if set(value) != {"state", "param_groups"}:
        raise SchemaError("optimizer_state", f"must have the keys 'state' and 'param_groups', "
                                             f"got {sorted(map(str, value))}")
    groups = value["param_groups"]
    if not isinstance(groups, list) or len(groups) != 1:
        raise SchemaError("optimizer_state.param_groups", f"must be a list of one group, got {_show(groups)}")
    group = _dict("optimizer_state.param_groups[0]", groups[0])
    where = "optimizer_state.param_groups[0]"
    n = len(param_shapes)
    if group.get("params") != list(range(n)):
        raise SchemaError(f"{where}.params", f"must list the model's {n} parameters 0 … {n - 1}, "
                                             f"got {_show(group.get('params'))}")
    for key in ("lr", "betas", "eps", "weight_decay"):
        if key not in group:
            raise SchemaError(f"{where}.{key}", "is missing")
    _number(f"{where}.lr", group["lr"], 0.0, 10.0)
    _number(f"{where}.eps", group["eps"], 0.0, 1.0, low_open=True)
    _number(f"{where}.weight_decay", group["weight_decay"], 0.0, 100.0)
    betas = group["betas"]
    if not isinstance(betas, (list, tuple)) or len(betas) != 2:
        raise SchemaError(f"{where}.betas", f"must be two numbers in [0, 1), got {_show(betas)}")
    for i, beta in enumerate(betas):
        _number(f"{where}.betas[{i}]", beta, 0.0, 0.999999)
    for key, v in group.items():
        if key in ("params", "lr", "betas", "eps", "weight_decay"):
            continue
        ok = (isinstance(v, bool) if key in _GROUP_FLAGS else v is None or isinstance(v, bool)
              if key in _GROUP_FLAGS_OR_NONE else v is None or isinstance(v, (bool, int, float, str)))
        if not ok or (isinstance(v, str) and len(v) > MAX_TEXT):
            raise SchemaError(f"{where}.{key}", f"must be {'True or False' if key in _GROUP_FLAGS else 'a plain value'}, "
                                                f"got {_show(v)}")
    state = _dict("optimizer_state.state", value["state"])
    moments = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group.get("amsgrad") else ())
    for index, entry in state.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
            raise SchemaError("optimizer_state.state", f"has an entry for parameter {_show(index)}; "
                                                       f"the model has parameters 0 … {n - 1}")
        where = f"optimizer_state.state[{index}]"
        entry = _dict(where, entry)
        if set(entry) != {"step", *moments}:
            raise SchemaError(where, f"must have the keys {['step', *moments]}, got {sorted(map(str, entry))}")
        step = entry["step"]
        if isinstance(step, torch.Tensor):
            if step.numel() != 1 or not step.is_floating_point() or not bool(torch.isfinite(step).all()) \
                    or float(step) < 0:
                raise SchemaError(f"{where}.step", f"must be one finite count >= 0, got {_show(step)}")
        else:
            _number(f"{where}.step", step, 0.0, float(MAX_STEP))
        for key in moments:
            t = _dense(f"{where}.{key}", entry[key], param_shapes[index], torch.float32)
            if key != "exp_avg" and bool((t < 0).any()):
                raise SchemaError(f"{where}.{key}", "holds negative values (a mean of squares is >= 0)")


# -- what was fitted at the end of training: baseline and motifs ----------------------------------------


def check_baseline(value, in_channels: int, patch_size: int, latent_dim: int):
    """The stored PCA baseline: its own state (shapes, finite) and patches of the model's shape.

    Returns ``(PCABaseline, info dict)``.
    """
    from napari_imc_vae.engine.quality.baselines import PCABaseline

    value = _dict("baseline", value)
    try:
        baseline = PCABaseline.from_state(value)
    except ValueError as e:
        raise SchemaError("baseline", str(e)) from e
    want = (in_channels, patch_size, patch_size)
    if tuple(baseline.patch_shape) != want:
        raise SchemaError("baseline", f"is fitted on patches of shape {tuple(baseline.patch_shape)}; "
                                      f"the model's are {want}")
    if not 1 <= baseline.k <= latent_dim:
        raise SchemaError("baseline.k", f"must be from 1 to the latent dimensions ({latent_dim}), got {baseline.k}")
    info = _dict("baseline.info", value.get("info", {}))
    for key, v in info.items():
        if not isinstance(key, str):
            raise SchemaError("baseline.info", f"has a key {_show(key)}; keys are names")
        if isinstance(v, str):
            _text(f"baseline.info.{key}", v, empty=True)
        elif isinstance(v, list):
            if len(v) > MAX_HISTORY or not all(isinstance(x, str) and len(x) <= MAX_TEXT for x in v):
                raise SchemaError(f"baseline.info.{key}", f"must be a list of names, got {_show(v)}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SchemaError(f"baseline.info.{key}", f"must be a number, a name or a list of names, got {_show(v)}")
    return baseline, dict(info)


def check_motifs(value, latent_dim: int):
    """The stored motif centres: a finite (k, latent_dim) float tensor, 1 <= k <= MAX_MOTIFS.

    NaN centres would put every tile in motif 1 without a word; they are refused here.
    Returns the :class:`~napari_imc_vae.engine.apply.motifs.MotifModel`.
    """
    from napari_imc_vae.engine.apply.motifs import MotifModel

    value = _dict("motifs", value)
    if not set(value) <= {"centers", "seed"} or "centers" not in value:
        raise SchemaError("motifs", f"must have the keys 'centers' and 'seed', got {sorted(map(str, value))}")
    centers = value["centers"]
    if not isinstance(centers, torch.Tensor) or not centers.is_floating_point() or centers.ndim != 2:
        raise SchemaError("motifs.centers", f"must be a 2-D float tensor (k, {latent_dim}), got {_show(centers)}")
    k = centers.shape[0]
    if not 1 <= k <= MAX_MOTIFS or centers.shape[1] != latent_dim:
        raise SchemaError("motifs.centers", f"must have shape (k, {latent_dim}) with 1 <= k <= {MAX_MOTIFS}, "
                                            f"got {tuple(centers.shape)}")
    _dense("motifs.centers", centers, centers.shape, centers.dtype)
    seed = _int("motifs.seed", value.get("seed", 0), 0, MAX_SEED)
    return MotifModel(centers.detach().to("cpu", torch.float32).numpy().copy(), seed)


def check_rate_calibration(value, in_channels: int):
    """The per-channel rate factors: one finite number per channel within ``FACTOR_RANGE``.

    Returns the :class:`~napari_imc_vae.engine.apply.rate_calibration.RateCalibration`.
    """
    from napari_imc_vae.engine.apply.rate_calibration import FACTOR_RANGE, RateCalibration

    value = _dict("rate_calibration", value)
    if not set(value) <= {"factors", "measured_on"} or "factors" not in value:
        raise SchemaError("rate_calibration", f"must have the keys 'factors' and 'measured_on', "
                                              f"got {sorted(map(str, value))}")
    factors = value["factors"]
    if not isinstance(factors, list) or len(factors) != in_channels:
        raise SchemaError("rate_calibration.factors", f"must be a list of {in_channels} numbers (one per channel), "
                                                      f"got {_show(factors)}")
    low, high = FACTOR_RANGE
    checked = tuple(_number(f"rate_calibration.factors[{i}]", f, low, high) for i, f in enumerate(factors))
    return RateCalibration(checked, _text("rate_calibration.measured_on", value.get("measured_on", ""), empty=True))
