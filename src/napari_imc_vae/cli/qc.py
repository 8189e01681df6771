"""``napari-imc-vae qc MODEL FOLDER... -o OUT``: quality control of a cohort in one command.

Every acquisition is reconstructed with the same model and the model's own motifs, and gets
what ``reconstruct`` writes plus ``<image>_qc.json`` (its rows of the cohort table), written
last and moved in with the rest: its presence means the image is done, so a stopped run
started again skips finished images (same model file, same stride). Then:

- ``qc_table.csv``: one row per ROI × marker (explained share, mean calibrated error, hot
  pixels, regions of high error by kind; :data:`~napari_imc_vae.engine.cells.qc.QC_COLUMNS`);
- ``qc_heatmap.png``: the mean calibrated error of each ROI × marker, the worst ROIs and
  markers named in its title and in red, the picture to read first;
- ``qc_summary.json``: the worst ROIs and markers and the printed sentences.

Under ``torchrun`` each rank takes every world-size-th input file (one GPU each: ``cuda``
means ``cuda:LOCAL_RANK``), and only rank 0 writes the cohort files, from every rank's rows.
Images are read one at a time: memory is that of one image, whatever the cohort.

Thin over :func:`napari_imc_vae.engine.cells.use_case.cohort_qc`: this module parses, claims
the output folder, draws the progress and writes each image's files and the cohort's.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from napari_imc_vae.cli._arguments import MODEL_HELP, check_stride, positive_int
from napari_imc_vae.cli._errors import PROG, CommandError
from napari_imc_vae.cli._inputs import load_model, stream_all
from napari_imc_vae.cli._outputs import claim_output, output_stems
from napari_imc_vae.cli.cells import ImageBars, add_apply_arguments, apply_settings, write_image_outputs
from napari_imc_vae.engine.defaults import QC_QUALITY_PATCHES  # plain numbers: --help loads no torch

#: What ``qc`` writes for the cohort (besides each image's outputs).
COHORT_FILES = ("qc_table.csv", "qc_heatmap.png", "qc_summary.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    parser.add_argument("paths", nargs="+", metavar="FOLDER", help="IMC files or folders of them (steinbock img/)")
    add_apply_arguments(parser, motifs=False)
    parser.add_argument("--quality-patches", type=positive_int, default=QC_QUALITY_PATCHES, metavar="N",
                        help=f"patches each ROI's quality report is measured on (default {QC_QUALITY_PATCHES:,}; "
                             "reconstruct uses 8,192): fewer use less memory and time per image, "
                             "see docs/benchmarks.md")


def run(args: argparse.Namespace) -> int:
    from napari_imc_vae.engine.device import process_context, resolve_device
    from napari_imc_vae.io.output_guard import check_output_apart

    device = resolve_device(args.device or "auto")  # under torchrun: this process's own GPU
    # the main process checks, creates and locks the folder; the others only check it is apart
    # from the inputs (the lock is one per output); the engine makes them wait until it exists
    main_process = process_context().is_main
    guard = (claim_output(args.output, args.paths, what="output folder", is_folder=True) if main_process
             else contextlib.nullcontext(check_output_apart(args.output, args.paths, what="output folder",
                                                            is_folder=True)))
    with guard:
        return _qc(args, str(device), main_process)


def _qc(args: argparse.Namespace, device: str, main_process: bool) -> int:
    from napari_imc_vae.engine.cells.outcome import QcPlan
    from napari_imc_vae.engine.cells.use_case import cohort_qc
    from napari_imc_vae.engine.memory import return_large_blocks

    return_large_blocks()  # freed band-sized arrays leave the process: one image's memory at a time
    trained, _ = load_model(args.model, device)
    check_stride(args.stride, trained.model.config.patch_size)
    stems = [stem for stem, _ in output_stems(args.paths, args.acquisition)]  # clashing names: fail now
    if not stems:
        raise CommandError(f"no images found in {', '.join(args.paths)}")
    bars = ImageBars()

    def on_progress(event) -> None:
        if not isinstance(event, QcPlan):
            bars.update(event)
        elif event.is_main:
            if event.motifs == 0:
                print(f"{PROG}: note: {args.model} holds no motifs (it predates them): none are written; train "
                      "again to get motifs that are the same on every image", file=sys.stderr)
            print(f"qc of {len(stems)} image(s) on {event.processes} process(es), {device}", flush=True)

    def on_image(done) -> None:
        bars.close()
        if done.kept:
            print(f"{done.name}: done in an earlier run, kept ({done.done_file})", flush=True)
            return

        def done_mark(folder: Path) -> list[Path]:  # last: its presence means the image is done
            from napari_imc_vae.io.outputs import write_json

            return [write_json(folder / done.done_file, done.done_mark)]

        written = write_image_outputs(args.output, done.application, args.model, extra=done_mark)
        print(f"{done.name}: {len(written)} files written", flush=True)

    settings = apply_settings(args, motifs=0, device=device, max_quality_patches=args.quality_patches)
    try:
        outcome = cohort_qc(trained, stream_all(args.paths, args.acquisition, quiet=not main_process), settings,
                            output=args.output, order=stems, on_progress=on_progress, on_image=on_image)
    finally:
        bars.close()
    if outcome.is_main:
        write_cohort(Path(args.output), outcome)
    return 0


def write_cohort(out: Path, outcome) -> None:
    """The cohort's table, heatmap and summary (:data:`COHORT_FILES`), and its sentences on stdout."""
    from napari_imc_vae.engine.cells.qc import QC_COLUMNS
    from napari_imc_vae.io.heatmap import write_heatmap_png
    from napari_imc_vae.io.outputs import write_csv, write_json

    summary, (worst_rois, worst_markers), sentences = outcome.summary, outcome.worst, outcome.sentences
    written = [write_csv(out / "qc_table.csv", outcome.rows, QC_COLUMNS),
               write_heatmap_png(out / "qc_heatmap.png", outcome.matrix, summary.rois, summary.markers,
                                 title=outcome.headline, unit=f"mean calibrated error ({outcome.error_unit})",
                                 highlight_rows=[n for n, _ in worst_rois], highlight_cols=[n for n, _ in worst_markers],
                                 vmax=outcome.heatmap_top),
               write_json(out / "qc_summary.json", {"rois": summary.rois, "markers": summary.markers,
                                                     "worst_rois": worst_rois, "worst_markers": worst_markers,
                                                     "sentences": sentences})]
    for p in written:
        print(f"wrote {p}")
    print("\n".join(f"- {s}" for s in sentences))
