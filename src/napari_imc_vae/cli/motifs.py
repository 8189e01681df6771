"""``napari-imc-vae motifs MODEL.pt PATH... -o OUT``: the same tissue motifs on every image of a cohort.

The motifs are the model's own (fitted on the latent vectors of its training patches and
stored in the model file), so motif 3 means the same kind of tissue in every ROI. A model
file without motifs (older format) gets motifs fitted once on latent vectors pooled from
all the given images, said on stderr. Images are read one at a time.

Writes ``<image>_motifs.tiff`` per image (labels 1..K on the latent grid: pixel size ×
stride) and one ``motif_abundance.csv`` (image, motif, pixels, fraction).
"""

from __future__ import annotations

import argparse
import sys

from napari_imc_vae.cli._arguments import check_stride, positive_int, seed_arg
from napari_imc_vae.cli._errors import PROG, CommandError
from napari_imc_vae.cli._inputs import load_model, stream_all
from napari_imc_vae.cli._outputs import claim_output, output_stems
from napari_imc_vae.engine.defaults import TILE_BATCH  # a plain number: --help loads no torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL.pt", help="model file written by 'train'")
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
    from pathlib import Path

    import numpy as np

    from napari_imc_vae.engine.apply.use_case import ApplySettings, apply_to_image
    from napari_imc_vae.engine.apply.motifs import DEFAULT_MOTIFS, MOTIF_FIT_POINTS, MotifModel, upsample_grid
    from napari_imc_vae.io.atomic import StagedFolder
    from napari_imc_vae.io.output_guard import safe_stem
    from napari_imc_vae.io.outputs import write_csv, write_map_tiff

    output_stems(args.paths, args.acquisition)  # two images of one name: refused before the work
    trained, device = load_model(args.model, args.device)
    check_stride(args.stride, trained.model.config.patch_size)
    settings = ApplySettings(stride=args.stride, batch_size=args.batch, device=args.device, motifs=0,
                             regions=False, quality=False, outputs=("latent",))
    maps = []  # (stem, latent, stride, pixel size, (Y, X)): latents are small, images are not kept
    for image in stream_all(args.paths, args.acquisition, quiet=False):
        stem = safe_stem(image.name)
        if any(stem.lower() == m[0].lower() for m in maps):  # a name the plan did not foresee
            raise CommandError(f"two images are named {stem!r} (the second from {image.source}); their "
                               f"motif maps would overwrite each other: give them to separate runs")
        match = trained.match_channels(image)
        if match.ignored:
            print(f"{PROG}: note: {image.name}: {match.note()}", file=sys.stderr)
        rec = apply_to_image(trained, image, settings).reconstruction
        maps.append((stem, rec.latent, rec.stride, float(image.pixel_size_um), image.shape[1:]))
        print(f"{image.name}: latent map {rec.latent.shape[1]}×{rec.latent.shape[2]}", flush=True)
    if not maps:
        raise CommandError(f"no images found in {', '.join(args.paths)}")
    motifs = trained.motif_model
    if motifs is None:
        vectors = np.concatenate([lat.reshape(lat.shape[0], -1).T for _, lat, *_ in maps])
        motifs = MotifModel.fit(vectors, DEFAULT_MOTIFS, seed=args.seed, max_fit=MOTIF_FIT_POINTS)
        print(f"{PROG}: note: {args.model} holds no motifs (it predates them): {motifs.k} motifs fitted "
              f"once on latent vectors of all {len(maps)} image(s), the same for every image", file=sys.stderr)
    rows, written = [], []
    with StagedFolder(Path(args.output)) as staged:  # every image's map and the table, or nothing
        for name, latent, stride, px, shape in maps:
            labels = motifs.assign(latent)
            written.append(write_map_tiff(staged.path / f"{name}_motifs.tiff", labels, px * stride))
            counts = np.bincount(upsample_grid(labels, stride, shape).ravel(), minlength=motifs.k + 1)[1:]
            total = max(int(counts.sum()), 1)
            rows += [{"image": name, "motif": j + 1, "pixels": int(n), "fraction": n / total}
                     for j, n in enumerate(counts)]
        written.append(write_csv(staged.path / "motif_abundance.csv", rows))
        written = [staged.final(p) for p in written]
        staged.commit()
    for path in written:
        print(f"wrote {path}")
    return 0
