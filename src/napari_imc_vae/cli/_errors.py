"""The program's name in messages, and the failure every command reports as one line.

The command line (:func:`napari_imc_vae.cli.main`) prints a :class:`CommandError` (or a
``ValueError``/``OSError``) as ``napari-imc-vae <command>: error: ...`` and exits with status 1.
"""

from __future__ import annotations

PROG = "napari-imc-vae"


class CommandError(Exception):
    """A failure to report as one line on stderr (no traceback), with exit status 1."""
