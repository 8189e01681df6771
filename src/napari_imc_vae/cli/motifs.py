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

from napari_imc_vae.cli._common import PROG, CommandError, load_model, stream_all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL.pt", help="model file written by 'train'")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="IMC files or folders of them")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the outputs")
    parser.add_argument("--acquisition", metavar="A", help="only this acquisition of each file")
    parser.add_argument("--stride", type=int, metavar="S", help="tile stride (default patch/2)")
    parser.add_argument("--batch", type=int, default=2048, metavar="B", help="tiles per model call (default 2048)")
    parser.add_argument("--device", metavar="D", help="auto, cpu, cuda, cuda:K or mps (default auto)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of the pooled motif fit, for model files without motifs (default 0)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from napari_imc_vae.engine.apply import ApplySettings, apply_to_image
    from napari_imc_vae.engine.motifs import DEFAULT_MOTIFS, MOTIF_FIT_POINTS, MotifModel, upsample_grid
    from napari_imc_vae.io.atomic import check_output_dir
    from napari_imc_vae.io.outputs import write_csv, write_map_tiff

    trained, device = load_model(args.model, args.device)
    out = check_output_dir(args.output)
    settings = ApplySettings(stride=args.stride, batch_size=args.batch, device=args.device, motifs=0,
                             regions=False, quality=False, outputs=("latent",))
    maps = []  # (name, latent, stride, pixel size, (Y, X)): latents are small, images are not kept
    for image in stream_all(args.paths, args.acquisition, quiet=False):
        match = trained.match_channels(image)
        if match.ignored:
            print(f"{PROG}: note: {image.name}: {match.note()}", file=sys.stderr)
        rec = apply_to_image(trained, image, settings).reconstruction
        maps.append((image.name, rec.latent, rec.stride, float(image.pixel_size_um), image.shape[1:]))
        print(f"{image.name}: latent map {rec.latent.shape[1]}×{rec.latent.shape[2]}", flush=True)
    if not maps:
        raise CommandError(f"no images found in {', '.join(args.paths)}")
    motifs = trained.motif_model
    if motifs is None:
        vectors = np.concatenate([lat.reshape(lat.shape[0], -1).T for _, lat, *_ in maps])
        motifs = MotifModel.fit(vectors, DEFAULT_MOTIFS, seed=args.seed, max_fit=MOTIF_FIT_POINTS)
        print(f"{PROG}: note: {args.model} holds no motifs (it predates them): {motifs.k} motifs fitted "
              f"once on latent vectors of all {len(maps)} image(s), the same for every image", file=sys.stderr)
    rows = []
    for name, latent, stride, px, shape in maps:
        labels = motifs.assign(latent)
        path = write_map_tiff(out / f"{name}_motifs.tiff", labels, px * stride)
        counts = np.bincount(upsample_grid(labels, stride, shape).ravel(), minlength=motifs.k + 1)[1:]
        total = max(int(counts.sum()), 1)
        rows += [{"image": name, "motif": j + 1, "pixels": int(n), "fraction": n / total}
                 for j, n in enumerate(counts)]
        print(f"wrote {path}")
    print(f"wrote {write_csv(out / 'motif_abundance.csv', rows)}")
    return 0
