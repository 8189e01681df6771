"""Headless entry point: ``napari-imc-vae <command> ...``.

Each subcommand is two small functions: ``_add_<name>(parser)`` declares its
arguments and ``_run_<name>(args) -> int`` runs it, importing its heavy
modules itself so that ``napari-imc-vae --help`` stays fast. Register a new
one in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

from napari_imc_vae.cli import apply, cells, diagnose, export, motifs, qc, train
from napari_imc_vae.cli._errors import PROG, CommandError
from napari_imc_vae.cli._signals import terminate_as_interrupt


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# --- registry and main ----------------------------------------------------------

COMMANDS: list[Command] = [
    Command("diagnose", "per-channel statistics before/after normalization, with verdicts",
            diagnose.add_arguments, diagnose.run),
    Command("train", "train a VAE on IMC images and write a model file (also under torchrun)",
            train.add_arguments, train.run),
    Command("reconstruct", "reconstruct a whole image: reconstruction, error and latent maps, quality",
            apply.add_reconstruct, apply.run_reconstruct),
    Command("quality", "how good is a model's reconstruction of an image (vs PCA and the mean)",
            apply.add_quality, apply.run_quality),
    Command("motifs", "the model's tissue motifs on every image of a cohort, and one abundance table",
            motifs.add_arguments, motifs.run),
    Command("cells", "one row per segmented cell: intensities, latent code, motifs, error, artefact flags",
            cells.add_arguments, cells.run),
    Command("qc", "quality control of a cohort: every ROI x marker, a heatmap naming the worst (also under torchrun)",
            qc.add_arguments, qc.run),
    Command("export", "write a model as a BioImage Model Zoo package (zip); every command reads it back",
            export.add_arguments, export.run),
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
    terminate_as_interrupt()  # SIGTERM/SIGHUP clean up as Ctrl-C does (temporary files, locks)
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
