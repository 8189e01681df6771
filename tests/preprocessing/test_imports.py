"""Importing io and preprocessing loads no GUI module (and no scipy or torch)."""

import subprocess
import sys


def test_preprocessing_loads_no_gui_module():
    code = (
        "import sys\n"
        "import napari_imc_vae.io, napari_imc_vae.preprocessing, napari_imc_vae.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'napari', 'qtpy', 'magicgui', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6',"
        " 'scipy', 'torch'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"loaded: {out.stdout.strip()}"
