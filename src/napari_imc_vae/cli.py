"""Headless entry point: ``napari-imc-vae <command> ...``.

Each subcommand is two small functions: ``_add_<name>(parser)`` declares its
arguments and ``_run_<name>(args) -> int`` runs it, importing its heavy
modules itself so that ``napari-imc-vae --help`` stays fast. Register a new
one in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

PROG = "napari-imc-vae"


class CommandError(Exception):
    """A failure to report as one line on stderr (no traceback), with exit status 1."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# --- diagnose -------------------------------------------------------------------


def _add_diagnose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="IMC file: .mcd, .txt, .ome.tiff, .tiff (+ panel.csv) "
                                     "or a folder of TIFFs")
    parser.add_argument("--acquisition", metavar="A",
                        help="acquisition of an .mcd: identifier (e.g. ROI_001) or 0-based index; "
                             "default the first")
    parser.add_argument("--hot-pixel", type=float, metavar="T",
                        help="hot-pixel filter threshold in counts (steinbock uses 50); "
                             "default off")
    parser.add_argument("--arcsinh", type=float, metavar="C",
                        help="arcsinh(x / C) cofactor (1 or 5 for IMC); default off")
    parser.add_argument("--clip", type=float, metavar="P",
                        help="clip each channel at percentile P (e.g. 99.9); default off")
    parser.add_argument("--json", action="store_true", help="print the diagnosis as JSON")


def _acquisition(path: str, value: str | None):
    """An identifier the file lists, else a digit string as a 0-based index."""
    if value is None:
        return None
    from napari_imc_vae.io import list_acquisitions

    if value in list_acquisitions(path) or not value.isdigit():
        return value
    return int(value)


def _read(path: str, acquisition: str | None):
    from napari_imc_vae.io import list_acquisitions, read_imc

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_imc(path, acquisition=_acquisition(path, acquisition))
        if acquisition is None:
            names = list_acquisitions(path)
            if len(names) > 1:
                print(f"{PROG}: note: {path} holds {len(names)} acquisitions ({', '.join(names)}); "
                      f"diagnosing {image.acquisition}; choose one with --acquisition",
                      file=sys.stderr)
    for w in caught:  # e.g. NaN/Inf pixels: one line each, not a warnings traceback
        print(f"{PROG}: warning: {w.message}", file=sys.stderr)
    return image


def _run_diagnose(args: argparse.Namespace) -> int:
    import json

    from napari_imc_vae.preprocessing import Normalizer, diagnose

    image = _read(args.path, args.acquisition)
    normalizer = Normalizer.fit(image, hot_pixel_threshold=args.hot_pixel,
                                arcsinh_cofactor=args.arcsinh, clip_percentile=args.clip)
    result = diagnose(image, normalizer)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, allow_nan=False))
    else:
        print(result.format_text())
    return 0


# --- registry and main ----------------------------------------------------------

COMMANDS: list[Command] = [
    Command("diagnose", "per-channel statistics before/after normalization, with verdicts",
            _add_diagnose, _run_diagnose),
]


def build_parser() -> argparse.ArgumentParser:
    from napari_imc_vae import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train a permutation-invariant VAE on Imaging Mass Cytometry images.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failed, 2 usage error)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args))
    except BrokenPipeError:
        # output piped into e.g. `head`: stop quietly, and keep Python's exit flush from failing
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (CommandError, ValueError, OSError) as e:
        # ImcReadError is a ValueError: unreadable input is a message, not a traceback
        message = " ".join(str(e).split())  # one line, whatever the exception held
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
