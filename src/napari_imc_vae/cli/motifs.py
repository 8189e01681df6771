"""``napari-imc-vae motifs MODEL PATH... -o OUT``: the same tissue motifs on every image of a cohort.

The motifs are the model's own (fitted on the latent vectors of its training patches and
stored in the model file), so motif 3 means the same kind of tissue in every ROI. A model
file without motifs (older format) gets motifs fitted once on latent vectors pooled from
all the given images, said on stderr. Images are read one at a time.

Writes ``<image>_motifs.tiff`` per image (labels 1..K on the latent grid: pixel size ×
stride) and one ``motif_abundance.csv`` (image, motif, pixels, fraction).

Thin over :func:`napari_imc_vae.engine.apply.motifs_use_case.cohort_motifs`: this module parses,
claims the output folder, prints the progress and writes the files.
"""

from __future__ import annotations

import argparse
import sys

from napari_imc_vae.cli._arguments import MODEL_HELP, check_stride, positive_int, seed_arg
from napari_imc_vae.cli._errors import PROG
from napari_imc_vae.cli._inputs import load_model, stream_all
from napari_imc_vae.cli._outputs import claim_output, output_stems
from napari_imc_vae.engine.defaults import TILE_BATCH  # a plain number: --help loads no torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="IMC files or folders of them")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the outputs")
    parser.add_argument("--acquisition", metavar="A", help="only this acquisition of each file")
    parser.add_argument("--stride", type=positive_int, metavar="S",
                        help="tile stride, 1 to the model's patch size (default patch/2)")
    parser.add_argument("--batch", type=positive_int, default=TILE_BATCH, metavar="B",
                        help=f"tiles per model call (default {TILE_BATCH})")
    parser.add_argument("--device", metavar="D", help="auto, cpu, cuda, cuda:K or mps (default auto)")
    parser.add_argument("--seed", type=seed_arg, default=0, metavar="S",
                        help="seed of the pooled motif fit, for model files without motifs (default 0)")


def run(args: argparse.Namespace) -> int:
    # before any work: an output that would touch an input, or that another run writes, fails now
    with claim_output(args.output, args.paths, what="output folder", is_folder=True):
        return _motifs(args)


def _motifs(args: argparse.Namespace) -> int:
    from contextlib import ExitStack
    from pathlib import Path

    from napari_imc_vae.engine.apply.motifs_outcome import ImageStarted, LatentMapDone, PooledMotifsFitted
    from napari_imc_vae.engine.apply.motifs_use_case import MotifsSettings, cohort_motifs
    from napari_imc_vae.io.atomic import StagedFolder
    from napari_imc_vae.io.outputs import write_csv, write_map_tiff

    output_stems(args.paths, args.acquisition)  # two images of one name: refused before the work
    trained, _ = load_model(args.model, args.device)
    check_stride(args.stride, trained.model.config.patch_size)
    settings = MotifsSettings(stride=args.stride, batch_size=args.batch, device=args.device, seed=args.seed)

    def on_progress(event) -> None:
        if isinstance(event, ImageStarted) and event.ignored_note:
            print(f"{PROG}: note: {event.image}: {event.ignored_note}", file=sys.stderr)
        elif isinstance(event, LatentMapDone):
            print(f"{event.image}: latent map {event.grid[0]}×{event.grid[1]}", flush=True)
        elif isinstance(event, PooledMotifsFitted):
            print(f"{PROG}: note: {args.model} holds no motifs (it predates them): {event.motifs} motifs fitted "
                  f"once on latent vectors of all {event.images} image(s), the same for every image", file=sys.stderr)

    with ExitStack() as stack:  # every image's map and the table, or nothing
        staged, written = [], []

        def on_image(done) -> None:
            if not staged:  # every image applied, the motifs known: the writing starts
                staged.append(stack.enter_context(StagedFolder(Path(args.output))))
            written.append(write_map_tiff(staged[0].path / f"{done.image}_motifs.tiff", done.labels,
                                          done.grid_pixel_size_um))

        outcome = cohort_motifs(trained, stream_all(args.paths, args.acquisition, quiet=False), settings,
                                source=", ".join(args.paths), on_progress=on_progress, on_image=on_image)
        written.append(write_csv(staged[0].path / "motif_abundance.csv", outcome.abundance))
        written = [staged[0].final(p) for p in written]
        staged[0].commit()
    for path in written:
        print(f"wrote {path}")
    return 0
