"""The npe2 manifest validates and every command it names imports."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

npe2 = pytest.importorskip("npe2")

import napari_imc_vae

MANIFEST = Path(napari_imc_vae.__file__).parent / "napari.yaml"


@pytest.fixture(scope="module")
def manifest():
    return npe2.PluginManifest.from_file(MANIFEST)


def test_manifest_is_valid_and_installed(manifest):
    assert manifest.name == "napari-imc-vae"
    assert manifest.display_name == "IMC VAE"
    # The entry point resolves to the same file (the package is installed).
    installed = npe2.PluginManifest.from_distribution("napari-imc-vae")
    assert installed.name == manifest.name
    cli = shutil.which("npe2", path=str(Path(sys.executable).parent))
    cmd = [cli] if cli else [sys.executable, "-m", "npe2"]
    out = subprocess.run([*cmd, "validate", "napari-imc-vae"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_python_name_imports(manifest):
    names = [c.python_name for c in manifest.contributions.commands]
    assert len(names) >= 4
    for python_name in names:
        module, attr = python_name.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), python_name


def test_contributions(manifest):
    c = manifest.contributions
    (reader,) = c.readers
    assert reader.accepts_directories
    for pattern in ("*.mcd", "*.txt", "*.ome.tiff", "*.ome.tif", "*.tiff", "*.tif"):
        assert pattern in reader.filename_patterns
    (writer,) = c.writers
    assert ".ome.tiff" in writer.filename_extensions
    assert [w.display_name for w in c.widgets] == ["Normalize channels", "Train VAE", "Reconstruct"]
    assert [s.key for s in c.sample_data] == ["synthetic_tissue"]


def test_reader_patterns_are_the_io_registrys_suffixes(manifest):
    """napari.yaml cannot import the registry: this keeps the two lists one."""
    from napari_imc_vae.io import FILE_SUFFIXES, format_for
    from napari_imc_vae.io._registry import FORMATS

    (reader,) = manifest.contributions.readers
    assert sorted(reader.filename_patterns) == sorted(f"*{s}" for s in FILE_SUFFIXES)
    assert sorted(FILE_SUFFIXES) == sorted(s for f in FORMATS for s in f.suffixes)
    assert [len(s) for s in FILE_SUFFIXES] == sorted(map(len, FILE_SUFFIXES), reverse=True)
    (writer,) = manifest.contributions.writers
    assert {format_for(f"x{ext}").key for ext in writer.filename_extensions} == {"ome-tiff"}
