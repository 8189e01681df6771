"""Argument types and checks shared by the subcommands, and the normalization flags.

Each type raises ``argparse.ArgumentTypeError`` naming what was expected and what came, so
argparse prints one usage line and exits with status 2.
"""

from __future__ import annotations

import argparse

from napari_imc_vae.cli._errors import CommandError
from napari_imc_vae.engine.defaults import BUDGET_PRESETS  # plain numbers: --help loads no torch


#: The MODEL argument of every command that applies a model.
MODEL_HELP = "model file (.pt) written by 'train', or a BioImage Model Zoo package (.zip) written by 'export'"


def float_or_off(text: str) -> float | str:
    """A number, or ``"off"`` (also ``none``) to skip a normalization step."""
    if text.strip().lower() in ("off", "none"):
        return "off"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'off', got {text!r}") from None


#: Largest seed: numpy's and scikit-learn's generators take 0 … 2**32 - 1.
MAX_SEED = 2**32 - 1
#: Largest budget in minutes: one day (a larger number is a typo, and 1e308 overflowed the plan).
MAX_BUDGET_MINUTES = 24 * 60.0
_PRESETS = tuple(BUDGET_PRESETS)


def _number(text: str, kind, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if kind is float and not abs(value) < float("inf"):  # NaN, inf
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (steps, batch, stride, patch, width, ...)."""
    value = _number(text, int, "a whole number >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def nonnegative_int(text: str) -> int:
    """A whole number >= 0 (a count where 0 means none, e.g. --motifs)."""
    value = _number(text, int, "a whole number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text}")
    return value


def seed_arg(text: str) -> int:
    """A random seed: a whole number in 0 … 2**32 - 1."""
    value = _number(text, int, f"a whole number from 0 to {MAX_SEED}")
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {MAX_SEED} (2**32 - 1), got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates)."""
    value = _number(text, float, "a finite number > 0")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (loss weights, free bits, KL target)."""
    value = _number(text, float, "a finite number >= 0")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def budget_arg(text: str) -> str:
    """A training budget: quick, standard, thorough or minutes in (0, 24 h]; kept as given."""
    if text.strip().lower() in _PRESETS:
        return text
    value = _number(text, float, f"{', '.join(_PRESETS)} or a number of minutes")
    if not 0 < value <= MAX_BUDGET_MINUTES:
        raise argparse.ArgumentTypeError(f"expected {', '.join(_PRESETS)} or a number of minutes > 0 and at most "
                                         f"{MAX_BUDGET_MINUTES:g} (one day), got {text}")
    return text


def check_stride(stride: int | None, patch_size: int) -> None:
    """A tile stride from 1 to the model's patch size (None: the default, patch/2)."""
    if stride is not None and not 1 <= stride <= patch_size:
        raise CommandError(f"--stride must be from 1 to the model's patch size {patch_size}, got {stride}")


#: The help's account of :data:`~napari_imc_vae.preprocessing.DEFAULT_NORMALIZATION`, written out
#: so that building the parser imports no numpy (``--help`` stays fast; a test checks the two agree).
DEFAULT_NORMALIZATION_HELP = "hot pixels T=50 → arcsinh(x/5) → z-score"


def add_normalization_arguments(parser: argparse.ArgumentParser) -> None:
    """The normalization flags of ``diagnose`` and ``train``: one default, ``off`` for each step."""
    g = parser.add_argument_group(f"normalization (default: {DEFAULT_NORMALIZATION_HELP})")
    g.add_argument("--hot-pixel", type=float_or_off, metavar="T",
                   help="hot-pixel threshold in counts, or 'off' (default 50)")
    g.add_argument("--arcsinh", type=float_or_off, metavar="C",
                   help="arcsinh(x / C) cofactor, or 'off' (default 5)")
    g.add_argument("--clip", type=float_or_off, metavar="P",
                   help="clip each channel at percentile P, or 'off' (default off)")
    g.add_argument("--zscore", choices=("on", "off"), help="per-channel z-score (default on)")
    g.add_argument("--no-zscore", dest="zscore", action="store_const", const="off",
                   help="same as --zscore off")


def normalization_from_args(args: argparse.Namespace):
    """:data:`~napari_imc_vae.preprocessing.DEFAULT_NORMALIZATION` with the flags given applied."""
    from dataclasses import replace

    from napari_imc_vae.preprocessing import DEFAULT_NORMALIZATION

    changes = {}
    for flag, name in (("hot_pixel", "hot_pixel_threshold"), ("arcsinh", "arcsinh_cofactor"),
                       ("clip", "clip_percentile")):
        value = getattr(args, flag)
        if value is not None:  # not given: the default; "off": skip the step
            changes[name] = None if value == "off" else value
    if args.zscore is not None:
        changes["zscore"] = args.zscore == "on"
    return replace(DEFAULT_NORMALIZATION, **changes)


def normalization_given(args: argparse.Namespace) -> bool:
    """Whether any normalization flag was given."""
    return any(getattr(args, flag) is not None for flag in ("hot_pixel", "arcsinh", "clip", "zscore"))
