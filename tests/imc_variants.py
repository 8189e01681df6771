"""Real IMC data laid out as scientists have it, made in tmp_path from the shared test data.

- :func:`single_channel_folder`: one steinbock ROI as single-channel OME-TIFFs named
  ``<prefix><mass><element>_<marker>.ome.tiff`` (MCD Viewer / histoCAT exports), or any other
  spelling of the metal tag;
- :func:`steinbock_folder`: a few files of steinbock's ``img/`` with its panel.csv and images.csv.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import tifffile

#: metal-tag spellings -> file-stem template (``{sym}``, ``{mass}``, ``{label}``)
SPELLINGS = {
    "Pr141": "{sym}{mass}",
    "141Pr": "{mass}{sym}",
    "Pr(141)": "{sym}({mass})",
    "Pr141Di": "{sym}{mass}Di",
    "141Pr_CD45": "{mass}{sym}_{label}",
    "CD45_141Pr": "{label}_{mass}{sym}",
    "CD45(Pr141Di)": "{label}({sym}{mass}Di)",
}
MCD_VIEWER = SPELLINGS["141Pr_CD45"]


def steinbock_roi(imc_testdata: Path, name: str = "20210305_NE_mockData1_001"):
    """One ROI of the shared steinbock export, as read by the package."""
    from napari_imc_vae.io import read_imc

    return read_imc(imc_testdata / "steinbock_img" / f"{name}.ome.tiff")


def single_channel_folder(folder: Path, image, *, prefix: str = "ROI1_", spelling: str = MCD_VIEWER) -> Path:
    """Write each channel of ``image`` as ``<folder>/<prefix><stem>.ome.tiff``, one plane each."""
    import re

    folder.mkdir(parents=True, exist_ok=True)
    for plane, metal, label in zip(image.data, image.metals, image.labels):
        sym, mass = re.fullmatch(r"([A-Z][a-z]?)(\d+)", metal).groups()
        stem = spelling.format(sym=sym, mass=mass, label=label)
        tifffile.imwrite(folder / f"{prefix}{stem}.ome.tiff", np.ascontiguousarray(plane),
                         metadata={"axes": "YX"})
    return folder


def steinbock_folder(imc_testdata: Path, folder: Path, n: int = 3, kind: str = "steinbock_img") -> Path:
    """The first ``n`` images of a steinbock export folder, with its panel.csv and images.csv."""
    source = imc_testdata / kind
    folder.mkdir(parents=True, exist_ok=True)
    images = sorted(p for p in source.iterdir() if p.name.endswith((".tiff", ".tif")))[:n]
    for path in [*images, source / "panel.csv", source / "images.csv"]:
        shutil.copy(path, folder / path.name)
    return folder
