"""``napari-imc-vae reconstruct`` and ``quality``: apply a trained model to an image."""

from __future__ import annotations

import argparse
import sys

from napari_imc_vae.cli._common import PROG, ProgressBar, load_model, read_image


def _add_model_and_image(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL.pt", help="model file written by 'train'")
    parser.add_argument("path", help="IMC image with the model's channels (matched by metal, else name; "
                                     "channels the model does not know are ignored)")
    parser.add_argument("--acquisition", metavar="A",
                        help="acquisition of an .mcd: identifier or 0-based index; default the first")
    parser.add_argument("--stride", type=int, metavar="S", help="tile stride (default patch/2)")
    parser.add_argument("--batch", type=int, default=2048, metavar="B", help="tiles per model call (default 2048)")
    parser.add_argument("--device", metavar="D", help="auto, cpu, cuda, cuda:K or mps (default auto)")


def add_reconstruct(parser: argparse.ArgumentParser) -> None:
    _add_model_and_image(parser)
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the outputs")


def add_quality(parser: argparse.ArgumentParser) -> None:
    _add_model_and_image(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


#: quality patches are capped to bound time and memory on large images (evenly spaced over the
#: grid). 8,192 patches of 40 channels give the report's figures within ~0.002 of 20,000 and keep
#: ``reconstruct`` on a 1024²×40 image at 32 s / 2.6 GB peak instead of 77 s / 4.5 GB.
_MAX_QUALITY_PATCHES = 8_192


def match_channels_noted(trained, image):
    """The model's channels in the image; one line on stderr naming those the model ignores.

    Raises
    ------
    ChannelMismatchError
        When the image lacks channels of the model (before any work is done).
    """
    match = trained.match_channels(image)
    if match.ignored:
        print(f"{PROG}: note: {match.note()}", file=sys.stderr)
    return match


def _quality_grid(trained, image, stride: int | None):
    """The quality patches of ``image``: a stride grid, capped (see :class:`GridPatches`).

    Raises
    ------
    PatchSizeError
        When the image is smaller than one patch.
    """
    from napari_imc_vae.engine.data import PatchSizeError
    from napari_imc_vae.engine.quality import GridPatches

    p = trained.model.config.patch_size
    _, h, w = image.shape
    if h < p or w < p:
        raise PatchSizeError(f"{image.name} is {h}×{w} px, smaller than the model's {p}×{p} patch; "
                             f"no quality report")
    return GridPatches((trained.normalizer.n_channels, h, w), p, stride or max(1, p // 2),
                       cap=_MAX_QUALITY_PATCHES)


def _assess(trained, image, stride: int | None, batch: int, grid=None):
    """Quality report of ``trained`` on one image: patches on a stride grid of the normalized image.

    Parameters
    ----------
    grid : GridPatches, optional
        From :func:`_quality_grid`, already fed the normalized rows (by the reconstruction's
        ``on_rows``); default: normalize just the rows the patches need.

    Returns
    -------
    report : QualityReport
    meta : dict
        Patch size, stride, patch count and a note on the baselines.

    Raises
    ------
    PatchSizeError
        When the image is smaller than one patch.
    """
    from napari_imc_vae.engine.inference import normalized_rows
    from napari_imc_vae.engine.quality import evaluate
    from napari_imc_vae.engine.workflow import ordered_data

    if grid is None:
        grid = _quality_grid(trained, image, stride)
        grid.read(normalized_rows(ordered_data(trained, image), trained.normalizer))
    patches, smooth = grid.result()
    report = evaluate(trained.model, patches, patches, batch_size=batch, smooth_target=smooth)
    meta = {
        "patch_size": grid.patch,
        "stride": grid.stride,
        "n_patches": int(len(patches)),
        "baselines": "PCA and the mean predictor are fitted on the same patches of this one image "
                     "that the model is measured on (no held-out region): optimistic baselines, "
                     "since the model was not fitted on these patches",
    }
    return report, meta


def _quality_dict(trained, image, report, meta: dict, model_path: str) -> dict:
    """JSON-safe description of a quality assessment (NaN written as null)."""
    return {"model": model_path, "model_sha256": trained.file_sha256, "image": image.source,
            "acquisition": image.acquisition, "shape": list(image.shape), **meta,
            "report": report.to_dict()}


def _channel_labels(trained) -> list[str]:
    """steinbock-style OME names (``Pr141_Cytokeratin 5``) so that readers recover metal and target."""
    return [name if key == name else f"{key}_{name}"
            for name, key in zip(trained.channel_names, trained.channel_keys)]


def run_reconstruct(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import tifffile

    from napari_imc_vae.engine.data import PatchSizeError
    from napari_imc_vae.engine.workflow import apply_model

    trained, device = load_model(args.model, args.device)
    image = read_image(args.path, args.acquisition, "reconstructing")
    match_channels_noted(trained, image)
    try:  # the quality patches are cut from the normalized rows as the reconstruction passes them
        grid, no_quality = _quality_grid(trained, image, args.stride), None
    except PatchSizeError as e:  # the reconstruction works at any size; the report needs a patch
        grid, no_quality = None, e
    print(f"reconstructing {image.name} {image.shape} on {device}", flush=True)
    bar = ProgressBar("reconstruct")
    try:
        rec = apply_model(trained, image, stride=args.stride, batch_size=args.batch, device=str(device),
                          on_progress=lambda done, total: bar.update(done, total, "tiles"),
                          on_rows=None if grid is None else grid.add)
    finally:
        bar.close()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    stem = image.name
    px = float(image.pixel_size_um)
    written = []
    path = out / f"{stem}_recon.ome.tiff"
    tifffile.imwrite(path, rec.raw, photometric="minisblack",
                     metadata={"axes": "CYX", "Channel": {"Name": _channel_labels(trained)},
                               "PhysicalSizeX": px, "PhysicalSizeY": px})
    written.append(path)
    path = out / f"{stem}_error.tiff"
    tifffile.imwrite(path, rec.error, photometric="minisblack", metadata={"axes": "YX"})
    written.append(path)
    path = out / f"{stem}_latent.tiff"
    tifffile.imwrite(path, rec.latent, photometric="minisblack", metadata={"axes": "CYX"})
    written.append(path)
    if grid is not None:
        report, meta = _assess(trained, image, args.stride, args.batch, grid)
        quality = _quality_dict(trained, image, report, meta, args.model)
    else:
        print(f"{PROG}: warning: {no_quality}", file=sys.stderr)
        quality = {"model": args.model, "image": image.source, "report": None, "reason": str(no_quality)}
    quality["latent_stride"] = int(rec.stride)
    path = out / f"{stem}_quality.json"
    path.write_text(json.dumps(quality, indent=2, allow_nan=False))
    written.append(path)
    for p in written:
        print(f"wrote {p}")
    report = quality.get("report")
    if report is not None:
        print("\n".join(f"- {v}" for v in report["verdicts"]))
    return 0


def run_quality(args: argparse.Namespace) -> int:
    import json

    trained, _ = load_model(args.model, args.device)
    image = read_image(args.path, args.acquisition, "assessing")
    match_channels_noted(trained, image)
    report, meta = _assess(trained, image, args.stride, args.batch)
    if args.json:
        print(json.dumps(_quality_dict(trained, image, report, meta, args.model), indent=2, allow_nan=False))
    else:
        print(f"{image.name}: {meta['n_patches']} patches of {meta['patch_size']} px at stride "
              f"{meta['stride']}; {meta['baselines']}")
        print(report.format_text())
    return 0


