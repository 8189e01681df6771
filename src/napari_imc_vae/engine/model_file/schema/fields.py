"""The fields of a model file, the limits of its values, and the checks of one value.

Every check of :mod:`~napari_imc_vae.engine.model_file.schema` raises :class:`SchemaError` naming the
field (``model_config.depth``), and words the problem with :func:`show`.
"""

from __future__ import annotations

import math

import torch

__all__ = ["HASH_KEY", "LIMITS", "MAX_HISTORY", "MAX_HISTORY_KEYS", "MAX_MOTIFS", "MAX_NESTING", "MAX_PARAMETERS",
           "MAX_SEED", "MAX_STEP", "MAX_TEXT", "OPTIONAL", "REQUIRED", "SchemaError", "check_dict",
           "check_number", "check_text", "check_whole_number", "show"]

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


# -- checks of one value ------------------------------------------------------------------------------


def check_whole_number(field: str, value, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]`` (a bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SchemaError(field, f"must be a whole number from {low} to {high}, got {show(value)}")
    return value


def check_number(field: str, value, low: float, high: float, *, low_open: bool = False) -> float:
    """``value`` as a finite float in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and (value > low if low_open else value >= low) and value <= high)
    if not ok:
        bound = f"> {low}" if low_open else f">= {low}"
        raise SchemaError(field, f"must be a finite number {bound} and <= {high:g}, got {show(value)}")
    return float(value)


def check_text(field: str, value, *, empty: bool = False) -> str:
    """``value`` as a str of at most :data:`MAX_TEXT` characters, blank only with ``empty``."""
    if not isinstance(value, str) or len(value) > MAX_TEXT or (not empty and not value.strip()):
        what = "a str" if empty else "a non-empty str"
        raise SchemaError(field, f"must be {what} of at most {MAX_TEXT} characters, got {show(value)}")
    return value


def show(value) -> str:
    """A value for a message: short, one line, its type when it is not a plain number or text."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, (dict, list, tuple)) and len(value) > 4:
        return f"a {type(value).__name__} of {len(value)} entries"
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return text if isinstance(value, (int, float, str, type(None))) else f"{text} ({type(value).__name__})"


def check_dict(field: str, value) -> dict:
    """``value`` when it is a dict."""
    if not isinstance(value, dict):
        raise SchemaError(field, f"must be a dict, got {show(value)}")
    return value
