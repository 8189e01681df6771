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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from napari_imc_vae.cli._arguments import check_stride, positive_int
from napari_imc_vae.cli._errors import PROG, CommandError
from napari_imc_vae.cli._inputs import image_targets, load_model, stream_all
from napari_imc_vae.cli._outputs import claim_output, output_stems
from napari_imc_vae.cli.cells import add_apply_arguments, apply_settings, apply_with_progress, write_image_outputs

#: Patches of each ROI's quality report. The report's patches and their predictions are held
#: while the image is reconstructed: fewer patches than reconstruct's 8,192 keep more headroom
#: under a cohort's memory (bench/bench_qc.py); the cohort's figures are the explained share and
#: the calibrated error, which use every pixel.
QUALITY_PATCHES = 2_048
#: The heatmap's colour scale tops at this mean calibrated error (noise SDs) or the largest value:
#: counting noise alone gives about 0.8 (the mean of |Z|), so a cohort the model explains stays
#: dark-to-middle and 2 or more, a marker it clearly does not explain, is bright.
HEATMAP_TOP = 2.0
#: What ``qc`` writes for the cohort (besides each image's outputs).
COHORT_FILES = ("qc_table.csv", "qc_heatmap.png", "qc_summary.json")
_DONE_SUFFIX = "_qc.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL.pt", help="model file written by 'train'")
    parser.add_argument("paths", nargs="+", metavar="FOLDER", help="IMC files or folders of them (steinbock img/)")
    add_apply_arguments(parser, motifs=False)
    parser.add_argument("--quality-patches", type=positive_int, default=QUALITY_PATCHES, metavar="N",
                        help=f"patches each ROI's quality report is measured on (default {QUALITY_PATCHES:,}; "
                             "reconstruct uses 8,192): fewer use less memory and time per image, "
                             "see docs/benchmarks.md")


def run(args: argparse.Namespace) -> int:
    from napari_imc_vae.engine.device import init_distributed, resolve_device
    from napari_imc_vae.io.output_guard import check_output_apart

    device = resolve_device(args.device or "auto")  # under torchrun: this rank's own GPU
    dist = init_distributed(device)
    try:
        # rank 0 checks, creates and locks the folder; the others only check it is apart from the
        # inputs (the lock is one per output) and wait until it exists
        guard = (claim_output(args.output, args.paths, what="output folder", is_folder=True) if dist.is_main
                 else contextlib.nullcontext(check_output_apart(args.output, args.paths, what="output folder",
                                                                is_folder=True)))
        with guard:
            _barrier(dist)
            status = _qc(args, dist, str(device))
            _barrier(dist)  # a rank leaving the group while rank 0 still gathers would abort it
            return status
    finally:
        if dist.active:
            import torch.distributed

            torch.distributed.destroy_process_group()


def _barrier(dist) -> None:
    if dist.active:
        import torch.distributed

        torch.distributed.barrier()


def _qc(args: argparse.Namespace, dist, device: str) -> int:
    from napari_imc_vae.engine.memory import return_large_blocks
    from napari_imc_vae.engine.cells.qc import roi_marker_rows
    from napari_imc_vae.io.output_guard import safe_stem

    return_large_blocks()  # freed band-sized arrays leave the process: one image's memory at a time
    trained, _ = load_model(args.model, device)
    check_stride(args.stride, trained.model.config.patch_size)
    stems = [stem for stem, _ in output_stems(args.paths, args.acquisition)]  # clashing names: fail now
    if not stems:
        raise CommandError(f"no images found in {', '.join(args.paths)}")
    motifs = trained.motif_model.k if trained.motif_model is not None else 0
    if motifs == 0 and dist.is_main:
        print(f"{PROG}: note: {args.model} holds no motifs (it predates them): none are written; train again "
              "to get motifs that are the same on every image", file=sys.stderr)
    settings = apply_settings(args, motifs=motifs, device=device, max_quality_patches=args.quality_patches)
    mine = image_targets(args.paths)[dist.rank::dist.world_size]
    stamp = {"model_sha256": trained.file_sha256, "stride": settings.stride, "motifs": motifs,
             "quality_patches": settings.max_quality_patches}
    out, rows = Path(args.output), []
    if dist.is_main:
        print(f"qc of {len(stems)} image(s) on {dist.world_size} process(es), {device}", flush=True)
    for image in stream_all(mine, args.acquisition, quiet=not dist.is_main):
        done_file = out / f"{safe_stem(image.name)}{_DONE_SUFFIX}"
        done = _done_rows(done_file, stamp)
        if done is not None:
            print(f"{image.name}: done in an earlier run, kept ({done_file.name})", flush=True)
            rows += done
            del image
            continue
        trained.match_channels(image)  # an image without the model's channels: named, before its work
        app = apply_with_progress(trained, image, settings)
        image_rows = roi_marker_rows(app)

        def marker(folder: Path, image_rows=image_rows, name=done_file.name) -> list[Path]:
            from napari_imc_vae.io.outputs import write_json

            return [write_json(folder / name, {**stamp, "rows": image_rows})]

        written = write_image_outputs(args.output, app, args.model, extra=marker)
        print(f"{image.name}: {len(written)} files written", flush=True)
        rows += image_rows
        # drop this image's arrays now: the loop reads the next image before rebinding `image`,
        # and `app` would live until the next one is applied (three images' worth of memory)
        del app, image
    everyone = _gather(rows, dist)
    if dist.is_main:
        _write_cohort(out, everyone, stems)
    return 0


def _done_rows(path: Path, stamp: dict) -> list[dict] | None:
    """The rows of an image finished by an earlier run with the same model and settings, else None."""
    try:
        done = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if any(done.get(k) != v for k, v in stamp.items()):
        return None  # another model or stride: do it again
    return done.get("rows")


def _gather(rows: list[dict], dist) -> list[dict]:
    """Every rank's rows on rank 0 (the others get their own back)."""
    if not dist.active:
        return rows
    import torch.distributed

    gathered = [None] * dist.world_size if dist.is_main else None
    torch.distributed.gather_object(rows, gathered, dst=0)
    return [r for part in gathered for r in part] if dist.is_main else rows


def _write_cohort(out: Path, rows: list[dict], stems: list[str]) -> None:
    import numpy as np

    from napari_imc_vae.engine.apply.error_unit import ERROR_UNIT_NAME
    from napari_imc_vae.engine.cells.qc import QC_COLUMNS, CohortSummary
    from napari_imc_vae.io.heatmap import write_heatmap_png
    from napari_imc_vae.io.output_guard import safe_stem
    from napari_imc_vae.io.outputs import write_csv, write_json

    order = {stem: i for i, stem in enumerate(stems)}  # the order the images were given in
    rows = sorted(rows, key=lambda r: order.get(safe_stem(r["roi"]), len(order)))
    summary = CohortSummary(rows)
    worst_rois, worst_markers = summary.worst()
    sentences = summary.sentences(ERROR_UNIT_NAME)
    matrix = summary.matrix("mean_error")
    written = [write_csv(out / "qc_table.csv", rows, QC_COLUMNS),
               write_heatmap_png(out / "qc_heatmap.png", matrix, summary.rois,
                                 summary.markers, title=summary.headline(ERROR_UNIT_NAME),
                                 unit=f"mean calibrated error ({ERROR_UNIT_NAME})",
                                 highlight_rows=[n for n, _ in worst_rois], highlight_cols=[n for n, _ in worst_markers],
                                 vmax=max(HEATMAP_TOP, float(np.nanmax(matrix, initial=0.0)))),
               write_json(out / "qc_summary.json", {"rois": summary.rois, "markers": summary.markers,
                                                     "worst_rois": worst_rois, "worst_markers": worst_markers,
                                                     "sentences": sentences})]
    for p in written:
        print(f"wrote {p}")
    print("\n".join(f"- {s}" for s in sentences))
