"""``napari-imc-vae train``: train a VAE on IMC images and write a model file.

Parses the flags into :class:`~napari_imc_vae.engine.training.TrainSettings`, runs
:func:`~napari_imc_vae.engine.training.train_model`, draws its progress and prints its plan,
summary and quality report; only rank 0 of a ``torchrun`` job prints and writes.
"""

from __future__ import annotations

import argparse
import sys

from napari_imc_vae.cli._arguments import (
    add_normalization_arguments,
    budget_arg,
    nonnegative_float,
    normalization_from_args,
    normalization_given,
    positive_float,
    positive_int,
    seed_arg,
)
from napari_imc_vae.cli._errors import PROG, CommandError
from napari_imc_vae.cli._inputs import load_model, stream_all
from napari_imc_vae.cli._outputs import claim_output
from napari_imc_vae.cli._progress import ProgressBar
from napari_imc_vae.cli._signals import InterruptGuard
from napari_imc_vae.engine.defaults import BUDGET_PRESETS, DEFAULT_BUDGET


# flag -> (config, field); argparse defaults are None so that the engine's defaults apply
_TRAIN_FIELDS = {
    "steps": ("train", "steps"), "batch": ("train", "batch_size"), "lr": ("train", "lr"),
    "device": ("train", "device"), "seed": ("train", "seed"), "time_limit": ("train", "time_limit_s"),
    "precision": ("train", "precision"),
    "patch": ("model", "patch_size"), "latent": ("model", "latent_dim"), "width": ("model", "width"),
    "depth": ("model", "depth"), "arch": ("model", "arch"),
    "cosine_weight": ("critic", "cosine_weight"), "gradient_weight": ("critic", "gradient_weight"),
    "kld_scale": ("critic", "kld_scale"), "free_bits": ("critic", "free_bits"),
    "perm_scale": ("critic", "perm_loss_scale"), "kl_target": ("critic", "kl_target"),
}


# engine.defaults is plain numbers (no torch): this module loads before the Ctrl-C guard
_PRESET_WORDS = ", ".join(f"{name} ({minutes:g} min)" for name, minutes in BUDGET_PRESETS.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="IMC files or folders of them (an .mcd contributes all its acquisitions)")
    parser.add_argument("-o", "--output", required=True, metavar="MODEL.pt", help="model file to write")
    parser.add_argument("--acquisition", metavar="A", help="only this acquisition of each file")
    g = parser.add_argument_group("training (defaults: the engine's TrainConfig)")
    g.add_argument("--budget", type=budget_arg, metavar="B",
                   help=f"how long to train: {_PRESET_WORDS} or a number of minutes; turned into steps from a "
                        f"few steps timed on this machine, and kept as the time limit (default {DEFAULT_BUDGET}, "
                        "unless --steps or --time-limit is given)")
    g.add_argument("--steps", type=positive_int, metavar="N",
                   help="train exactly N steps instead of a budget (default 2000 with --time-limit alone)")
    g.add_argument("--estimate", action="store_true",
                   help="time a few steps, print what the budget (or --steps) buys on this machine, and stop")
    g.add_argument("--batch", type=positive_int, metavar="B", help="patches per step (default 256)")
    g.add_argument("--lr", type=positive_float, metavar="LR", help="peak learning rate (default 0.001)")
    g.add_argument("--device", metavar="D", help="auto, cpu, cuda, cuda:K or mps (default auto)")
    g.add_argument("--seed", type=seed_arg, metavar="S", help="random seed, 0 to 2**32-1 (default 0)")
    g.add_argument("--time-limit", dest="time_limit", type=positive_seconds, metavar="SECONDS",
                   help="stop after this long even if the steps are not done")
    g.add_argument("--precision", choices=("auto", "bf16", "fp32"),
                   help="auto: bf16 autocast on CUDA and on CPUs with native bf16 (AMX, AVX512-BF16), "
                        "fp32 elsewhere (default auto)")
    g.add_argument("--resume", metavar="MODEL.pt",
                   help="continue training this model (same normalization, architecture, step count)")
    g = parser.add_argument_group("model (defaults: the engine's ModelConfig)")
    g.add_argument("--patch", type=positive_int, metavar="P", help="patch size in pixels (default 8)")
    g.add_argument("--latent", type=positive_int, metavar="D", help="latent dimensions (default 16, docs/capacity.md)")
    g.add_argument("--width", type=positive_int, metavar="W", help="hidden width (default 512)")
    g.add_argument("--depth", type=positive_int, metavar="K", help="residual blocks (default 2)")
    g.add_argument("--arch", choices=("mlp", "conv"), help="encoder/decoder kind (default mlp)")
    add_normalization_arguments(parser)
    g = parser.add_argument_group("loss weights (defaults: the engine's CriticConfig)")
    g.add_argument("--cosine-weight", type=nonnegative_float, metavar="W", help="cosine term weight (default 0.5)")
    g.add_argument("--gradient-weight", type=nonnegative_float, metavar="W",
                   help="gradient term weight (default 0, off: it blurs shot-noisy IMC, see docs/ablation.md; "
                        "the reference used 1.0)")
    g.add_argument("--kld-scale", type=nonnegative_float, metavar="S", help="free-bits KL weight (default 0.001)")
    g.add_argument("--free-bits", type=nonnegative_float, metavar="F", help="free bits, nats per latent dim (default 2.0)")
    g.add_argument("--kl-target", type=nonnegative_float, metavar="NATS",
                   help="ask for this KL in nats per patch (|KL - target| replaces the free-bits floor; default off)")
    g.add_argument("--perm-scale", type=nonnegative_float, metavar="S",
                   help="permutation-consistency weight (default 0.8)")


def positive_seconds(text: str) -> float:
    """A time limit: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"the time limit must be > 0 seconds, got {text}")
    return value


def settings_from_args(args: argparse.Namespace):
    """The use case's settings: the flags the user gave (the engine's defaults, or the resumed
    model's own settings, fill in the rest), the budget, the normalization."""
    from napari_imc_vae.engine.training.settings import TrainSettings

    options: dict[str, dict] = {"train": {}, "model": {}, "critic": {}}
    for flag, (config, name) in _TRAIN_FIELDS.items():
        value = getattr(args, flag)
        if value is not None:
            options[config][name] = value
    normalization = normalization_from_args(args) if normalization_given(args) else None
    return TrainSettings(**options, normalization=normalization, budget_minutes=_budget_minutes(args),
                         estimate_only=args.estimate)


def run(args: argparse.Namespace) -> int:
    # Ctrl-C handling first: the imports below take seconds (torch) and must not be cut
    from contextlib import nullcontext

    with InterruptGuard() as interrupt:
        from napari_imc_vae.engine.device import process_context

        main_rank = process_context().is_main
        # rank 0 writes: it refuses an -o that is an input (or its panel) and locks it against a second run
        writes = main_rank and not args.estimate
        with claim_output(args.output, args.paths, what="model file", is_folder=False) if writes else nullcontext():
            return _train(args, interrupt, main_rank)


def _train(args: argparse.Namespace, interrupt: InterruptGuard, main_rank: bool) -> int:
    from napari_imc_vae.engine.training.trainer import TrainingError, TrainProgress
    from napari_imc_vae.engine.training import StopRequest, train_model
    from napari_imc_vae.io.atomic import check_output_file

    if main_rank:  # before any reading or training: a bad -o fails now, naming the path
        check_output_file(args.output, "model file")
    settings = settings_from_args(args)  # ValueError names a bad field
    resume = load_model(args.resume, "cpu")[0] if args.resume else None
    # read file by file inside the run (fit, then normalize): a cohort never sits in memory
    images = stream_all(args.paths, args.acquisition, quiet=not main_rank)
    if not images.loaders:
        raise CommandError(f"no images found in {', '.join(args.paths)}")
    interrupt.check()
    bar, stop = ProgressBar("train", enabled=main_rank), StopRequest()

    def on_progress(p) -> None:
        if not isinstance(p, TrainProgress):  # the plan: data ready, steps timed, training next
            interrupt.check()  # a Ctrl-C while the data were read or the steps timed
            if main_rank:
                for note in p.notes:
                    print(f"{PROG}: note: {note}", file=sys.stderr)
                print("\n".join(p.lines()), flush=True)
            # from now on the first Ctrl-C stops after the current step and saves what there is
            interrupt.on_interrupt = stop.set
            return
        bar.update(p.run_step, p.run_steps, f"loss {p.metrics['loss']:.4f} {p.patches_per_s:,.0f} patches/s",
                   force=p.validation is not None)

    try:
        outcome = train_model(images, settings, resume=resume, on_progress=on_progress, stop=stop)
    except TrainingError as e:
        raise CommandError(str(e)) from e
    finally:
        bar.close()
    if main_rank and outcome.trained is not None:
        path = outcome.trained.save(args.output)
        print(outcome.summary())
        print(outcome.report_text())
        print(f"model written to {path}")
    return 0


def _budget_minutes(args: argparse.Namespace) -> float | None:
    """Minutes of the budget, or None when exact steps were asked for."""
    from napari_imc_vae.engine.training.budget import DEFAULT_BUDGET, BudgetError, parse_budget

    if args.budget is not None and (args.steps is not None or args.time_limit is not None):
        raise CommandError("give --budget, or --steps (with --time-limit), not both")
    if args.steps is not None or args.time_limit is not None:
        return None  # exact steps (the default 2,000 under a time limit alone)
    try:
        return parse_budget(args.budget if args.budget is not None else DEFAULT_BUDGET)
    except BudgetError as e:
        raise CommandError(f"--budget: {e}") from None
