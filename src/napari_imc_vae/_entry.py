"""The ``napari-imc-vae`` console script: Ctrl-C is handled before the first import.

Importing the command line (argparse, re, ...) takes tens of milliseconds in which Python's
default handler would turn a Ctrl-C into a traceback from inside some import. Here a press is
only recorded until the imports are done, then reported as the usual "interrupted" (status
130); each command installs its own handling from then on (``train``:
:class:`~napari_imc_vae.cli._signals.InterruptGuard`).
"""

import signal
import sys


def main() -> int:
    pressed = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        from napari_imc_vae.cli import main as cli_main
        from napari_imc_vae.cli._errors import PROG
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return cli_main()
