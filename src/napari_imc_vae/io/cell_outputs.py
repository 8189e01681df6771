"""Writing a per-cell table: ``<image>_cells.csv`` always, ``<image>_cells.h5ad`` with anndata.

Both go through :func:`~napari_imc_vae.io.atomic.atomic_write` (complete or not at all).
The ``.h5ad`` needs the optional extra ``pip install "napari-imc-vae[cells]"`` (anndata);
without it the CSV alone is written and :func:`h5ad_available` says why.
"""

from __future__ import annotations

import os
from pathlib import Path

from napari_imc_vae.io.atomic import atomic_write
from napari_imc_vae.io.output_guard import safe_stem
from napari_imc_vae.io.outputs import write_csv

__all__ = ["CELLS_SUFFIXES", "h5ad_available", "write_cell_table"]

#: What :func:`write_cell_table` writes, ``<image><suffix>``.
CELLS_SUFFIXES = ("_cells.csv", "_cells.h5ad")


def h5ad_available() -> bool:
    """Whether anndata (the ``cells`` extra) is installed."""
    import importlib.util

    return importlib.util.find_spec("anndata") is not None


def write_cell_table(outdir: str | os.PathLike, table, *, h5ad: bool | None = None) -> list[Path]:
    """Write ``table`` (:class:`~napari_imc_vae.engine.cells.table.CellTable`) into ``outdir``.

    Parameters
    ----------
    outdir : path-like
        Existing folder.
    table : CellTable
    h5ad : bool, optional
        Also write the AnnData file; default: when anndata is installed.

    Returns
    -------
    list of Path
        The CSV, then the ``.h5ad`` when written.
    """
    out = Path(outdir)
    stem = safe_stem(table.image)  # an .mcd acquisition description may hold "/"
    written = [write_csv(out / f"{stem}_cells.csv", table.rows(), table.columns())]
    if h5ad is None:
        h5ad = h5ad_available()
    if h5ad:
        adata = table.to_anndata()  # ImportError names the extra when anndata is missing
        # anndata writes by file name: into the temporary file atomic_write hands over
        written.append(atomic_write(out / f"{stem}_cells.h5ad", lambda f: adata.write_h5ad(f.name)))
    return written
