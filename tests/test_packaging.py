"""The wheel a user installs: LICENSE inside, the metadata the README promises, the plugin's files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("setuptools", minversion="77", reason="PEP 639 license-files needs setuptools >= 77")
    # build from a copy, so that no build/ or egg-info lands in the checkout
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE", "CITATION.cff"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(src)], check=True, capture_output=True, text=True)
    (path,) = out.glob("napari_imc_vae-*.whl")
    return path


def test_wheel_holds_the_license_and_the_plugin(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        assert f"{dist_info}/licenses/LICENSE" in names
        assert "BSD 3-Clause License" in z.read(f"{dist_info}/licenses/LICENSE").decode()
        assert "napari_imc_vae/napari.yaml" in names and "napari_imc_vae/io/folder.py" in names
        meta = Parser().parsestr(z.read(f"{dist_info}/METADATA").decode())
        entry_points = z.read(f"{dist_info}/entry_points.txt").decode()
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert meta.get_all("License-File") == ["LICENSE"]
    classifiers = meta.get_all("Classifier")
    assert "Programming Language :: Python :: 3.11" in classifiers and "Framework :: napari" in classifiers
    assert 'Provides-Extra: mcd' in str(meta) and any("readimc" in r for r in meta.get_all("Requires-Dist"))
    assert "napari-imc-vae = napari_imc_vae._entry:main" in entry_points
    assert "napari-imc-vae = napari_imc_vae:napari.yaml" in entry_points


def test_license_and_citation_are_in_the_repository():
    assert (ROOT / "LICENSE").read_text().startswith("BSD 3-Clause License")
    citation = (ROOT / "CITATION.cff").read_text()
    assert "cff-version: 1.2.0" in citation and "license: BSD-3-Clause" in citation


def test_readme_and_tutorial_name_no_path_outside_the_repository():
    for path in (ROOT / "README.md", ROOT / "docs" / "tutorial.md"):
        text = path.read_text()
        assert "../" not in text and "/work/" not in text, f"{path.name} points outside the repository"
