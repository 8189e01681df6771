"""Importing the readers pulls in no GUI, no torch, and not the optional mcd extra."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("napari", "qtpy", "magicgui", "torch", "PyQt5", "PyQt6", "PySide2", "PySide6",
             "readimc", "pandas")


def test_io_import_is_light():
    code = (
        "import sys, napari_imc_vae.io, napari_imc_vae.io.mcd\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing napari_imc_vae.io loaded: {out.stdout}"
