"""``napari-imc-vae cells MODEL IMAGE... --masks MASK_OR_FOLDER -o OUT``: one row per cell.

For each image: what ``reconstruct`` writes, plus ``<image>_cells.csv`` (and
``<image>_cells.h5ad`` when anndata is installed, ``pip install "napari-imc-vae[cells]"``),
the table of :func:`napari_imc_vae.engine.cells.table.cells_from_application`. Masks are matched
to images by file name (a steinbock ``masks/`` folder beside ``img/``) or given as one file
for one image. Every image is checked against its mask (present, same height and width)
before any work, so a bad pairing writes nothing. Images are read one at a time.

Thin over :func:`napari_imc_vae.engine.cells.use_case.cell_tables`: this module parses, claims
the output folder, draws the progress and writes each image's files.
"""

from __future__ import annotations

import argparse
import sys

from napari_imc_vae.cli._arguments import MODEL_HELP, check_stride, nonnegative_int, positive_int
from napari_imc_vae.cli._errors import PROG
from napari_imc_vae.cli._inputs import load_model, stream_all
from napari_imc_vae.cli._outputs import claim_output, output_stems
from napari_imc_vae.cli._progress import ProgressBar
from napari_imc_vae.engine.defaults import DEFAULT_MOTIFS, TILE_BATCH  # plain numbers: --help loads no torch


def add_apply_arguments(parser: argparse.ArgumentParser, *, motifs: bool = True) -> None:
    """Options shared by ``cells`` and ``qc`` (those of ``reconstruct``, for many images)."""
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the outputs")
    parser.add_argument("--acquisition", metavar="A", help="only this acquisition of each file")
    parser.add_argument("--stride", type=positive_int, metavar="S",
                        help="tile stride, 1 to the model's patch size (default patch/2)")
    parser.add_argument("--batch", type=positive_int, default=TILE_BATCH, metavar="B",
                        help=f"tiles per model call (default {TILE_BATCH})")
    parser.add_argument("--device", metavar="D", help="auto, cpu, cuda, cuda:K or mps (default auto)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="of the model's forward pass (default auto, as 'reconstruct')")
    if not motifs:
        return
    parser.add_argument("--motifs", type=nonnegative_int, default=DEFAULT_MOTIFS, metavar="K",
                        help=f"tissue motifs: the model's own when it holds K (the same motifs on every image), "
                             f"else K fitted per image; 0 for none (default {DEFAULT_MOTIFS})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="IMC files or folders of them (steinbock img/)")
    parser.add_argument("--masks", required=True, metavar="MASK_OR_FOLDER",
                        help="label image (uint16/uint32 TIFF, 0 = background) for a single image, or a folder "
                             "of them named like the images (steinbock masks/, or the steinbock folder)")
    add_apply_arguments(parser)
    parser.add_argument("--no-h5ad", action="store_true", help="write the CSV only, even with anndata installed")


def apply_settings(args: argparse.Namespace, motifs: int | None = None, device: str | None = None, **extra):
    """The settings of ``reconstruct``: no normalized reconstruction (time and memory), the
    per-channel count residual to name the channels of the regions."""
    from napari_imc_vae.engine.apply.use_case import ApplySettings

    return ApplySettings(stride=args.stride, batch_size=args.batch, device=device or args.device,
                         precision=args.precision, motifs=args.motifs if motifs is None else motifs,
                         outputs=("raw", "error", "residual", "latent", "hot_pixels"), **extra)


def run(args: argparse.Namespace) -> int:
    # before any work: an output that would touch an input (images or masks), or that another
    # run writes, fails now
    with claim_output(args.output, [*args.images, args.masks], what="output folder", is_folder=True):
        return _cells(args)


def _cells(args: argparse.Namespace) -> int:
    from napari_imc_vae.engine.cells.outcome import CellsPlan
    from napari_imc_vae.engine.cells.use_case import cell_tables
    from napari_imc_vae.engine.memory import return_large_blocks
    from napari_imc_vae.io.cell_outputs import h5ad_available

    return_large_blocks()  # freed band-sized arrays leave the process: one image's memory at a time
    trained, device = load_model(args.model, args.device)
    check_stride(args.stride, trained.model.config.patch_size)
    output_stems(args.images, args.acquisition)  # two images of one output name: both named, before reading
    h5ad = not args.no_h5ad and h5ad_available()
    bars = ImageBars()

    def on_progress(event) -> None:
        if not isinstance(event, CellsPlan):
            bars.update(event)
            return
        # every image checked against the model and its mask: the work starts
        if not args.no_h5ad and not h5ad:
            print(f'{PROG}: note: anndata is not installed: writing CSV only (pip install "napari-imc-vae[cells]" '
                  'for .h5ad)', file=sys.stderr)
        print(f"{len(event.images)} image(s) with masks from {args.masks}, on {device}", flush=True)

    def on_image(done) -> None:
        bars.close()
        for p in write_image_outputs(args.output, done.application, args.model, table=done.table, h5ad=h5ad):
            print(f"wrote {p}")
        print(f"- {done.table.image}: {len(done.table)} cells, {done.touched} touched by an artefact (a region "
              f"of high error listed in _regions.csv, or a hot pixel the filter replaced); {done.with_spike} "
              f"hold an isolated single-pixel spike (listed apart, not counted as an artefact)", flush=True)

    try:  # each warning of the readers once (the images are read twice: checks, then work)
        cell_tables(trained, stream_all(args.images, args.acquisition, quiet=False), args.masks,
                    apply_settings(args), source=", ".join(args.images), on_progress=on_progress, on_image=on_image)
    finally:
        bars.close()
    return 0


class ImageBars:
    """A progress bar of each image's tiles (the engine's ``ImageProgress`` records), one at a time."""

    def __init__(self) -> None:
        self.bar, self.image = None, None

    def update(self, event) -> None:
        if event.stage != "reconstruct":
            return
        if event.image != self.image:
            self.close()
            self.bar, self.image = ProgressBar(event.image), event.image
        self.bar.update(event.done, event.total, "tiles")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar, self.image = None, None


def write_image_outputs(output: str, app, model: str, *, table=None, h5ad: bool = False, extra=None) -> list:
    """What ``reconstruct`` writes for one image, its cell table when given, and ``extra(folder)``'s
    files, moved into ``output`` together: all of this image's files or none.

    Returns
    -------
    list of Path
        The files as they now lie in ``output``.
    """
    from pathlib import Path

    from napari_imc_vae.cli.apply import write_application
    from napari_imc_vae.io.atomic import StagedFolder
    from napari_imc_vae.io.cell_outputs import write_cell_table

    with StagedFolder(Path(output)) as staged:
        written = write_application(staged.path, app, model)
        if table is not None:
            written += write_cell_table(staged.path, table, h5ad=h5ad)
        if extra is not None:
            written += extra(staged.path)
        final = [staged.final(p) for p in written]
        staged.commit()
    return final
