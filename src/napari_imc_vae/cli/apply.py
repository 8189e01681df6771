"""``napari-imc-vae reconstruct`` and ``quality``: apply a trained model to an image.

Thin over :mod:`napari_imc_vae.engine.apply.use_case` (the Reconstruct widget calls the same
functions with the same settings, so both give the same arrays and figures) and
:func:`napari_imc_vae.io.outputs.write_model_outputs`.
"""

from __future__ import annotations

import argparse
import json
import sys

from napari_imc_vae.cli._arguments import MODEL_HELP, check_stride, nonnegative_int, positive_int, seed_arg
from napari_imc_vae.cli._errors import PROG, CommandError
from napari_imc_vae.cli._inputs import load_model, read_image
from napari_imc_vae.cli._outputs import claim_output
from napari_imc_vae.cli._progress import ProgressBar
from napari_imc_vae.engine.defaults import DEFAULT_MOTIFS, TILE_BATCH  # plain numbers: --help loads no torch


def _add_model_and_image(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    parser.add_argument("path", help="IMC image with the model's channels (matched by metal, else name; "
                                     "channels the model does not know are ignored)")
    parser.add_argument("--acquisition", metavar="A",
                        help="acquisition of an .mcd: identifier or 0-based index; default the first")
    parser.add_argument("--stride", type=positive_int, metavar="S",
                        help="tile stride, 1 to the model's patch size (default patch/2)")
    parser.add_argument("--batch", type=positive_int, default=TILE_BATCH, metavar="B",
                        help=f"tiles per model call (default {TILE_BATCH})")
    parser.add_argument("--device", metavar="D", help="auto, cpu, cuda, cuda:K or mps (default auto)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="auto: bf16 on CUDA and on CPUs with native bf16 (AMX, AVX512-BF16), about "
                             "twice as fast, within ~1e-3 R² of fp32; fp32 elsewhere (default auto)")


def add_reconstruct(parser: argparse.ArgumentParser) -> None:
    _add_model_and_image(parser)
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the outputs")
    parser.add_argument("--motifs", type=nonnegative_int, default=DEFAULT_MOTIFS, metavar="K",
                        help=f"tissue motifs, written as <image>_motifs.tiff (labels 1..K on the latent grid, "
                             f"pixel size x stride) and <image>_motifs.csv: the model's own when it holds K "
                             f"(fitted on its training images: the same motifs on every image), else K "
                             f"fitted on this image; 0 for none (default {DEFAULT_MOTIFS}, as the widget)")
    parser.add_argument("--seed", type=seed_arg, default=0, metavar="S",
                        help="seed of the motif fit, 0 to 2**32-1 (default 0)")


def add_quality(parser: argparse.ArgumentParser) -> None:
    _add_model_and_image(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _settings(args: argparse.Namespace, **extra):
    from napari_imc_vae.engine.apply.use_case import ApplySettings

    return ApplySettings(stride=args.stride, batch_size=args.batch, device=args.device,
                         precision=args.precision, **extra)


def _prepare(args: argparse.Namespace, what: str):
    """Model, image and the channel note, before any work (bad input fails here)."""
    trained, device = load_model(args.model, args.device)
    image = read_image(args.path, args.acquisition, what)
    match = trained.match_channels(image)  # ChannelMismatchError names missing and extra channels
    if match.ignored:
        print(f"{PROG}: note: {match.note()}", file=sys.stderr)
    return trained, device, image


def run_reconstruct(args: argparse.Namespace) -> int:
    # before any work: an output that would touch the input, or that another run writes, fails now
    with claim_output(args.output, [args.path], what="output folder", is_folder=True):
        return _reconstruct(args)


def _reconstruct(args: argparse.Namespace) -> int:
    from pathlib import Path

    from napari_imc_vae.engine.apply.use_case import apply_to_image
    from napari_imc_vae.engine.memory import return_large_blocks
    from napari_imc_vae.io.atomic import StagedFolder

    return_large_blocks()  # freed band-sized arrays leave the process (engine/memory.py)
    # what the CLI needs: no normalized reconstruction (time and memory); the per-channel count
    # residual names the channels of the regions
    settings = _settings(args, motifs=args.motifs, seed=args.seed,
                         outputs=("raw", "error", "residual", "latent", "hot_pixels"))
    trained, device, image = _prepare(args, "reconstructing")
    check_stride(args.stride, trained.model.config.patch_size)
    print(f"reconstructing {image.name} {image.shape} on {device}", flush=True)
    bar = ProgressBar("reconstruct")
    try:
        app = apply_to_image(trained, image, settings,
                             on_progress=lambda stage, done, total: bar.update(done, total, "tiles")
                             if stage == "reconstruct" else None)
    finally:
        bar.close()
    rec = app.reconstruction
    if app.report is None:
        print(f"{PROG}: warning: no quality report: {app.quality.get('reason')}", file=sys.stderr)
    with StagedFolder(Path(args.output)) as staged:  # all of this run's files or none
        written = [staged.final(p) for p in write_application(staged.path, app, args.model)]
        staged.commit()
    for p in written:
        print(f"wrote {p}")
    print(app.report_text())  # the plain sentences first, then the numbers behind them
    hot = int((rec.hot_pixels > 0).sum()) if rec.hot_pixels is not None else 0
    print(f"- {len(app.regions)} region(s) of high error (error > {app.region_threshold:g} noise SD, "
          f"areas of 2 px or more); {len(app.spikes)} isolated single-pixel spike(s); {hot} pixel(s) replaced by the hot-pixel filter")
    return 0


def write_application(out, app, model: str) -> list:
    """What ``reconstruct`` writes for one image (also ``cells`` and ``qc``, beside their tables)."""
    from napari_imc_vae.io.output_guard import safe_stem
    from napari_imc_vae.io.outputs import write_model_outputs

    rec, image = app.reconstruction, app.image
    quality = {**app.quality, "model": model}
    # an .mcd acquisition description may hold "/": the stem must stay in the folder
    return write_model_outputs(out, safe_stem(image.name), recon_raw=rec.raw, channel_names=app.channel_names,
                               error=rec.error, latent=rec.latent, stride=rec.stride,
                               pixel_size_um=image.pixel_size_um, quality=quality, motifs=app.motifs,
                               motif_rows=app.motif_rows, hot_pixels=rec.hot_pixels, regions=app.regions)


def run_quality(args: argparse.Namespace) -> int:
    from napari_imc_vae.engine.apply.use_case import assess_image

    trained, _, image = _prepare(args, "assessing")
    check_stride(args.stride, trained.model.config.patch_size)
    report, quality = assess_image(trained, image, _settings(args, motifs=0))
    quality["model"] = args.model
    if report is None:  # e.g. smaller than a patch, or every patch touches a NaN pixel
        raise CommandError(f"no quality report: {quality.get('reason')}")
    if args.json:
        print(json.dumps(quality, indent=2, allow_nan=False))
    else:
        from napari_imc_vae.engine.apply.application import quality_patches_words
        from napari_imc_vae.engine.quality.summary import quality_text

        print(quality_text(report, "patches of this image",
                           f"{image.name}: {quality_patches_words(quality, image.shape)}."))
    return 0
