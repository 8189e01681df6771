"""Headless entry point: ``napari-imc-vae <command> ...``.

Each subcommand is two small functions: ``_add_<name>(parser)`` declares its
arguments and ``_run_<name>(args) -> int`` runs it, importing its heavy
modules itself so that ``napari-imc-vae --help`` stays fast. Register a new
one in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

PROG = "napari-imc-vae"


class CommandError(Exception):
    """A failure to report as one line on stderr (no traceback), with exit status 1."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# --- diagnose -------------------------------------------------------------------


def _add_diagnose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="IMC file: .mcd, .txt, .ome.tiff, .tiff (+ panel.csv) "
                                     "or a folder of TIFFs")
    parser.add_argument("--acquisition", metavar="A",
                        help="acquisition of an .mcd: identifier (e.g. ROI_001) or 0-based index; "
                             "default the first")
    parser.add_argument("--hot-pixel", type=float, metavar="T",
                        help="hot-pixel filter threshold in counts (steinbock uses 50); "
                             "default off")
    parser.add_argument("--arcsinh", type=float, metavar="C",
                        help="arcsinh(x / C) cofactor (1 or 5 for IMC); default off")
    parser.add_argument("--clip", type=float, metavar="P",
                        help="clip each channel at percentile P (e.g. 99.9); default off")
    parser.add_argument("--json", action="store_true", help="print the diagnosis as JSON")


def _acquisition(path: str, value: str | None):
    """An identifier the file lists, else a digit string as a 0-based index."""
    if value is None:
        return None
    from napari_imc_vae.io import list_acquisitions

    if value in list_acquisitions(path) or not value.isdigit():
        return value
    return int(value)


def _read(path: str, acquisition: str | None, what: str = "diagnosing"):
    from napari_imc_vae.io import list_acquisitions, read_imc

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_imc(path, acquisition=_acquisition(path, acquisition))
        if acquisition is None:
            names = list_acquisitions(path)
            if len(names) > 1:
                print(f"{PROG}: note: {path} holds {len(names)} acquisitions ({', '.join(names)}); "
                      f"{what} {image.acquisition}; choose one with --acquisition",
                      file=sys.stderr)
    for w in caught:  # e.g. NaN/Inf pixels: one line each, not a warnings traceback
        print(f"{PROG}: warning: {w.message}", file=sys.stderr)
    return image


def _run_diagnose(args: argparse.Namespace) -> int:
    import json

    from napari_imc_vae.preprocessing import Normalizer, diagnose

    image = _read(args.path, args.acquisition)
    normalizer = Normalizer.fit(image, hot_pixel_threshold=args.hot_pixel,
                                arcsinh_cofactor=args.arcsinh, clip_percentile=args.clip)
    result = diagnose(image, normalizer)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, allow_nan=False))
    else:
        print(result.format_text())
    return 0


# --- shared by train / reconstruct / quality --------------------------------------

def _float_or_off(text: str) -> float | str:
    """A number, or ``"off"`` (also ``none``) to skip a normalization step."""
    if text.strip().lower() in ("off", "none"):
        return "off"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'off', got {text!r}") from None


def _is_main_rank() -> bool:
    """False on every process but rank 0 of a ``torchrun`` job: those neither print nor write."""
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _image_files(folder) -> list:
    """The image files of a folder, or ``[]`` when it is one image (single-channel TIFFs)."""
    from pathlib import Path

    from napari_imc_vae.io import FILE_SUFFIXES, format_for

    kinds = {p: format_for(p).key for p in sorted(Path(folder).iterdir())
             if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(FILE_SUFFIXES)}
    # plain TIFFs without a panel.csv: histoCAT/MIBI style, the folder itself is one image
    if all(kind == "tiff" for kind in kinds.values()) and not (Path(folder) / "panel.csv").is_file():
        return []
    if "mcd" in kinds.values():
        # .txt files beside .mcd files are exports of the same acquisitions
        return [p for p, kind in kinds.items() if kind != "txt"]
    return list(kinds)


def _read_all(paths: list[str], acquisition: str | None, quiet: bool) -> list:
    """Every image of the given files and folders; an .mcd gives all its acquisitions."""
    from pathlib import Path

    from napari_imc_vae.io import read_imc, read_imc_all

    targets = []
    for path in paths:
        files = _image_files(path) if Path(path).is_dir() else []
        if files:
            targets.extend(str(f) for f in files)
        else:
            targets.append(path)
    images = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for path in targets:
            if acquisition is not None:
                images.append(read_imc(path, acquisition=_acquisition(path, acquisition)))
            else:
                images.extend(read_imc_all(path))
    if not quiet:
        for w in caught:
            print(f"{PROG}: warning: {w.message}", file=sys.stderr)
    return images


class _ProgressBar:
    """A one-line progress bar on stderr, redrawn at most ``rate`` times a second."""

    def __init__(self, label: str, enabled: bool = True, rate: float = 5.0) -> None:
        self.label, self.enabled, self.interval = label, enabled, 1.0 / rate
        self.last, self.drawn = 0.0, False

    def update(self, done: int, total: int, text: str = "", force: bool = False) -> None:
        import time

        now = time.monotonic()
        if not self.enabled or (not force and done < total and now - self.last < self.interval):
            return
        self.last, self.drawn = now, True
        width = 24
        filled = int(width * done / max(total, 1))
        bar = "#" * filled + "-" * (width - filled)
        print(f"\r{self.label} [{bar}] {done}/{total} {text}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.drawn:
            print(file=sys.stderr, flush=True)


def _load_model(path: str, device: str | None = None):
    from napari_imc_vae.engine.checkpoint import TrainedModel
    from napari_imc_vae.engine.device import resolve_device

    dev = resolve_device(device or "auto")  # unknown device: ValueError listing the available ones
    return TrainedModel.load(path, map_location=dev), dev


def _fmt(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.4g}"


# --- train ----------------------------------------------------------------------

# flag -> (config, field); argparse defaults are None so that the engine's defaults apply
_TRAIN_FIELDS = {
    "steps": ("train", "steps"), "batch": ("train", "batch_size"), "lr": ("train", "lr"),
    "device": ("train", "device"), "seed": ("train", "seed"), "time_limit": ("train", "time_limit_s"),
    "precision": ("train", "precision"),
    "patch": ("model", "patch_size"), "latent": ("model", "latent_dim"), "width": ("model", "width"),
    "depth": ("model", "depth"), "arch": ("model", "arch"),
    "cosine_weight": ("critic", "cosine_weight"), "gradient_weight": ("critic", "gradient_weight"),
    "kld_scale": ("critic", "kld_scale"), "free_bits": ("critic", "free_bits"),
    "perm_scale": ("critic", "perm_loss_scale"),
}


def _add_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="IMC files or folders of them (an .mcd contributes all its acquisitions)")
    parser.add_argument("-o", "--output", required=True, metavar="MODEL.pt", help="model file to write")
    parser.add_argument("--acquisition", metavar="A", help="only this acquisition of each file")
    g = parser.add_argument_group("training (defaults: the engine's TrainConfig)")
    g.add_argument("--steps", type=int, metavar="N", help="training steps (default 2000)")
    g.add_argument("--batch", type=int, metavar="B", help="patches per step (default 256)")
    g.add_argument("--lr", type=float, metavar="LR", help="peak learning rate (default 0.001)")
    g.add_argument("--device", metavar="D", help="auto, cpu, cuda, cuda:K or mps (default auto)")
    g.add_argument("--seed", type=int, metavar="S", help="random seed (default 0)")
    g.add_argument("--time-limit", dest="time_limit", type=float, metavar="SECONDS",
                   help="stop after this long even if the steps are not done")
    g.add_argument("--precision", choices=("auto", "bf16", "fp32"),
                   help="auto: bf16 autocast on CUDA, fp32 elsewhere; bf16 also pays on CPUs with AMX "
                        "(default auto)")
    g.add_argument("--resume", metavar="MODEL.pt",
                   help="continue training this model (same normalization, architecture, step count)")
    g = parser.add_argument_group("model (defaults: the engine's ModelConfig)")
    g.add_argument("--patch", type=int, metavar="P", help="patch size in pixels (default 8)")
    g.add_argument("--latent", type=int, metavar="D", help="latent dimensions (default 32)")
    g.add_argument("--width", type=int, metavar="W", help="hidden width (default 512)")
    g.add_argument("--depth", type=int, metavar="K", help="residual blocks (default 2)")
    g.add_argument("--arch", choices=("mlp", "conv"), help="encoder/decoder kind (default mlp)")
    g = parser.add_argument_group("normalization (default: hot pixels T=50, arcsinh(x/5), z-score)")
    g.add_argument("--hot-pixel", type=_float_or_off, metavar="T", help="hot-pixel threshold, or 'off'")
    g.add_argument("--arcsinh", type=_float_or_off, metavar="C", help="arcsinh cofactor, or 'off'")
    g.add_argument("--clip", type=_float_or_off, metavar="P", help="clip at percentile P (default off)")
    g.add_argument("--no-zscore", action="store_true", help="skip the per-channel z-score")
    g = parser.add_argument_group("loss weights (defaults: the engine's CriticConfig)")
    g.add_argument("--cosine-weight", type=float, metavar="W", help="cosine term weight (default 0.5)")
    g.add_argument("--gradient-weight", type=float, metavar="W",
                   help="gradient term weight (default 0, off: it blurs shot-noisy IMC, see docs/ablation.md; "
                        "the reference used 1.0)")
    g.add_argument("--kld-scale", type=float, metavar="S", help="free-bits KL weight (default 0.001)")
    g.add_argument("--free-bits", type=float, metavar="F", help="free bits, nats per latent dim (default 2.0)")
    g.add_argument("--perm-scale", type=float, metavar="S",
                   help="permutation-consistency weight (default 0.8)")


def _train_options(args: argparse.Namespace) -> dict[str, dict]:
    """The flags the user gave, grouped by config."""
    out: dict[str, dict] = {"train": {}, "model": {}, "critic": {}}
    for flag, (config, name) in _TRAIN_FIELDS.items():
        value = getattr(args, flag)
        if value is not None:
            out[config][name] = value
    return out


def _normalization(args: argparse.Namespace):
    from dataclasses import replace

    from napari_imc_vae.engine.workflow import DEFAULT_NORMALIZATION

    changes = {}
    for flag, name in (("hot_pixel", "hot_pixel_threshold"), ("arcsinh", "arcsinh_cofactor"),
                       ("clip", "clip_percentile")):
        value = getattr(args, flag)
        if value is not None:  # not given: the default; "off": skip the step
            changes[name] = None if value == "off" else value
    if args.no_zscore:
        changes["zscore"] = False
    return replace(DEFAULT_NORMALIZATION, **changes)


def _summary(trained, stopped: bool, elapsed: float) -> str:
    last = trained.history[-1] if trained.history else {}
    val = trained.validation_history
    best = min(val, key=lambda v: v.get("val_loss", float("inf"))) if val else None
    d = trained.model.config.latent_dim
    lines = [f"{'stopped' if stopped else 'done'} after {trained.step} steps in total ({elapsed:.1f} s)",
             "last step:   " + "  ".join(f"{k}={_fmt(last.get(k))}" for k in
                                          ("loss", "mse", "cosine_loss", "gradient_loss", "kld_loss",
                                           "kld_floored", "perm_loss"))]
    if best is not None:
        lines.append(f"validation (best, step {int(best['step'])}): "
                     f"loss={_fmt(best.get('val_loss'))}  r2={_fmt(best.get('r2'))}  "
                     f"sharpness_ratio={_fmt(best.get('sharpness_ratio'))}  "
                     f"diversity_ratio={_fmt(best.get('diversity_ratio'))}  "
                     f"active_units={int(best.get('active_units', 0))}/{d}  "
                     f"perm_accuracy={_fmt(best.get('perm_accuracy'))}")
    else:
        lines.append("validation: none (the images are too small for a validation region)")
    return "\n".join(lines)


def _run_train(args: argparse.Namespace) -> int:
    import os
    import signal
    import threading
    import time
    from dataclasses import replace

    from napari_imc_vae.engine.critic import CriticConfig
    from napari_imc_vae.engine.trainer import TrainConfig, TrainingError
    from napari_imc_vae.engine.workflow import TrainingRun

    main_rank = _is_main_rank()
    say = print if main_rank else (lambda *a, **k: None)
    options = _train_options(args)
    train_config = TrainConfig(**options["train"])  # ValueError names a bad field
    resume = _load_model(args.resume, "cpu")[0] if args.resume else None
    if resume is not None:
        critic_config = replace(resume.critic_config, **options["critic"])
        if args.hot_pixel is not None or args.arcsinh is not None or args.clip is not None or args.no_zscore:
            say(f"{PROG}: note: resuming keeps the model's normalization; normalization options ignored",
                file=sys.stderr)
    else:
        critic_config = CriticConfig(**options["critic"])
    normalization = _normalization(args)
    images = _read_all(args.paths, args.acquisition, quiet=not main_rank)
    if not images:
        raise CommandError(f"no images found in {', '.join(args.paths)}")
    run = TrainingRun(images, normalization=normalization, model_config=options["model"] or None,
                      critic_config=critic_config, train_config=train_config, resume=resume)
    cfg = run.model.config
    say(f"training on {run.device}: {len(images)} image(s), {cfg.in_channels} channels, "
        f"{run.sampler.n_train} training / {run.sampler.n_val} validation positions, "
        f"patch {cfg.patch_size}, latent {cfg.latent_dim}, {cfg.arch}"
        + (f", resuming from step {resume.step}" if resume is not None else ""), flush=True)
    bar = _ProgressBar("train", enabled=main_rank)

    def on_progress(p) -> None:
        text = f"loss {p.metrics['loss']:.4f} {p.patches_per_s:,.0f} patches/s"
        bar.update(p.run_step, p.run_steps, text, force=p.validation is not None)

    # first Ctrl-C: stop after the current step and save what there is; second: abort
    previous = None
    if threading.current_thread() is threading.main_thread():
        def on_interrupt(signum, frame):
            signal.signal(signal.SIGINT, previous)
            run.stop()
        previous = signal.signal(signal.SIGINT, on_interrupt)
    start = time.perf_counter()
    try:
        trained, stopped = run.run(on_progress)
    except TrainingError as e:
        raise CommandError(str(e)) from e
    finally:
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        _leave_process_group()
    if main_rank:
        path = trained.save(args.output)
        print(_summary(trained, stopped, time.perf_counter() - start))
        print(f"model written to {os.fspath(path)}")
    return 0


def _leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# --- reconstruct and quality ----------------------------------------------------


def _add_model_and_image(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL.pt", help="model file written by 'train'")
    parser.add_argument("path", help="IMC image with the model's channels (matched by metal, else name; "
                                     "channels the model does not know are ignored)")
    parser.add_argument("--acquisition", metavar="A",
                        help="acquisition of an .mcd: identifier or 0-based index; default the first")
    parser.add_argument("--stride", type=int, metavar="S", help="tile stride (default patch/2)")
    parser.add_argument("--batch", type=int, default=2048, metavar="B", help="tiles per model call (default 2048)")
    parser.add_argument("--device", metavar="D", help="auto, cpu, cuda, cuda:K or mps (default auto)")


def _add_reconstruct(parser: argparse.ArgumentParser) -> None:
    _add_model_and_image(parser)
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the outputs")


def _add_quality(parser: argparse.ArgumentParser) -> None:
    _add_model_and_image(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


#: quality patches are capped to bound time and memory on large images (evenly spaced over the
#: grid). 8,192 patches of 40 channels give the report's figures within ~0.002 of 20,000 and keep
#: ``reconstruct`` on a 1024²×40 image at 32 s / 2.6 GB peak instead of 77 s / 4.5 GB.
_MAX_QUALITY_PATCHES = 8_192


def _match(trained, image):
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


def _run_reconstruct(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import tifffile

    from napari_imc_vae.engine.data import PatchSizeError
    from napari_imc_vae.engine.workflow import apply_model

    trained, device = _load_model(args.model, args.device)
    image = _read(args.path, args.acquisition, "reconstructing")
    _match(trained, image)
    try:  # the quality patches are cut from the normalized rows as the reconstruction passes them
        grid, no_quality = _quality_grid(trained, image, args.stride), None
    except PatchSizeError as e:  # the reconstruction works at any size; the report needs a patch
        grid, no_quality = None, e
    print(f"reconstructing {image.name} {image.shape} on {device}", flush=True)
    bar = _ProgressBar("reconstruct")
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


def _run_quality(args: argparse.Namespace) -> int:
    import json

    trained, _ = _load_model(args.model, args.device)
    image = _read(args.path, args.acquisition, "assessing")
    _match(trained, image)
    report, meta = _assess(trained, image, args.stride, args.batch)
    if args.json:
        print(json.dumps(_quality_dict(trained, image, report, meta, args.model), indent=2, allow_nan=False))
    else:
        print(f"{image.name}: {meta['n_patches']} patches of {meta['patch_size']} px at stride "
              f"{meta['stride']}; {meta['baselines']}")
        print(report.format_text())
    return 0


# --- registry and main ----------------------------------------------------------

COMMANDS: list[Command] = [
    Command("diagnose", "per-channel statistics before/after normalization, with verdicts",
            _add_diagnose, _run_diagnose),
    Command("train", "train a VAE on IMC images and write a model file (also under torchrun)",
            _add_train, _run_train),
    Command("reconstruct", "reconstruct a whole image: reconstruction, error and latent maps, quality",
            _add_reconstruct, _run_reconstruct),
    Command("quality", "how good is a model's reconstruction of an image (vs PCA and the mean)",
            _add_quality, _run_quality),
]


def build_parser() -> argparse.ArgumentParser:
    from napari_imc_vae import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train a permutation-invariant VAE on Imaging Mass Cytometry images.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failed, 2 usage error)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args))
    except BrokenPipeError:
        # output piped into e.g. `head`: stop quietly, and keep Python's exit flush from failing
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (CommandError, ValueError, OSError) as e:
        # ImcReadError is a ValueError: unreadable input is a message, not a traceback
        message = " ".join(str(e).split())  # one line, whatever the exception held
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
