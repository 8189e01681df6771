"""``napari-imc-vae cells MODEL IMAGE... --masks MASK_OR_FOLDER -o OUT``: one row per cell.

For each image: what ``reconstruct`` writes, plus ``<image>_cells.csv`` (and
``<image>_cells.h5ad`` when anndata is installed, ``pip install "napari-imc-vae[cells]"``),
the table of :func:`napari_imc_vae.engine.cells.cells_from_application`. Masks are matched
to images by file name (a steinbock ``masks/`` folder beside ``img/``) or given as one file
for one image. Every image is checked against its mask (present, same height and width)
before any work, so a bad pairing writes nothing. Images are read one at a time.
"""

from __future__ import annotations

import argparse
import sys

from napari_imc_vae.cli._common import PROG, CommandError, ProgressBar, load_model, stream_all

DEFAULT_MOTIFS = 6  # engine.motifs.DEFAULT_MOTIFS, not imported so that --help stays fast


def add_apply_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``cells`` and ``qc`` (those of ``reconstruct``, for many images)."""
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the outputs")
    parser.add_argument("--acquisition", metavar="A", help="only this acquisition of each file")
    parser.add_argument("--stride", type=int, metavar="S", help="tile stride (default patch/2)")
    parser.add_argument("--batch", type=int, default=2048, metavar="B", help="tiles per model call (default 2048)")
    parser.add_argument("--device", metavar="D", help="auto, cpu, cuda, cuda:K or mps (default auto)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="of the model's forward pass (default auto, as 'reconstruct')")
    parser.add_argument("--motifs", type=int, default=DEFAULT_MOTIFS, metavar="K",
                        help=f"tissue motifs: the model's own when it holds K (the same motifs on every image), "
                             f"else K fitted per image; 0 for none (default {DEFAULT_MOTIFS})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL.pt", help="model file written by 'train'")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="IMC files or folders of them (steinbock img/)")
    parser.add_argument("--masks", required=True, metavar="MASK_OR_FOLDER",
                        help="label image (uint16/uint32 TIFF, 0 = background) for a single image, or a folder "
                             "of them named like the images (steinbock masks/, or the steinbock folder)")
    add_apply_arguments(parser)
    parser.add_argument("--no-h5ad", action="store_true", help="write the CSV only, even with anndata installed")


def apply_settings(args: argparse.Namespace):
    """The settings of ``reconstruct``: no normalized reconstruction (time and memory), the
    per-channel error to name the channels of the regions."""
    from napari_imc_vae.engine.apply import ApplySettings

    return ApplySettings(stride=args.stride, batch_size=args.batch, device=args.device, precision=args.precision,
                         motifs=args.motifs, outputs=("raw", "error", "channel_error", "latent", "hot_pixels"))


def check_images(trained, args: argparse.Namespace, paths: list[str]) -> list[tuple[str, tuple[int, int]]]:
    """(name, (Y, X)) of every image, read one at a time; channels checked against the model.

    Raises
    ------
    CommandError
        No image, or two images of the same name (their outputs would overwrite each other).
    ChannelMismatchError
        An image lacks channels of the model.
    """
    seen: dict[str, tuple[int, int]] = {}
    for image in stream_all(paths, args.acquisition, quiet=False):
        trained.match_channels(image)  # names the missing and extra channels
        if image.name in seen:
            raise CommandError(f"two images are named {image.name}: their outputs would overwrite each other; "
                               "give them in separate runs or folders")
        seen[image.name] = tuple(image.shape[1:])
    if not seen:
        raise CommandError(f"no images found in {', '.join(paths)}")
    return list(seen.items())


def run(args: argparse.Namespace) -> int:
    from napari_imc_vae.cli.apply import write_application
    from napari_imc_vae.engine.apply import apply_to_image
    from napari_imc_vae.engine.cells import cells_from_application
    from napari_imc_vae.io.atomic import check_output_dir
    from napari_imc_vae.io.cell_outputs import h5ad_available, write_cell_table
    from napari_imc_vae.io.masks import check_mask_shape, mask_shape, match_masks, read_mask

    trained, device = load_model(args.model, args.device)
    settings = apply_settings(args)
    # every check before any output: a missing mask or one of another size writes nothing
    images = check_images(trained, args, args.images)
    masks = match_masks([name for name, _ in images], args.masks)
    for name, shape in images:
        check_mask_shape(mask_shape(masks[name]), shape, mask_name=str(masks[name]), image_name=name)
    out = check_output_dir(args.output)
    h5ad = not args.no_h5ad and h5ad_available()
    if not args.no_h5ad and not h5ad:
        print(f'{PROG}: note: anndata is not installed: writing CSV only (pip install "napari-imc-vae[cells]" '
              'for .h5ad)', file=sys.stderr)
    print(f"{len(images)} image(s) with masks from {args.masks}, on {device}", flush=True)
    for image in stream_all(args.images, args.acquisition, quiet=True):
        bar = ProgressBar(image.name)
        try:
            app = apply_to_image(trained, image, settings, on_progress=lambda stage, done, total:
                                 bar.update(done, total, "tiles") if stage == "reconstruct" else None)
        finally:
            bar.close()
        table = cells_from_application(app, read_mask(masks[image.name]), mask_name=str(masks[image.name]))
        written = write_application(out, app, args.model) + write_cell_table(out, table, h5ad=h5ad)
        for p in written:
            print(f"wrote {p}")
        touched = int(table.touched_by_artefact.sum())
        print(f"- {image.name}: {len(table)} cells, {touched} touched by an artefact "
              f"(high-error region or hot pixel)", flush=True)
    return 0
