"""``napari-imc-vae train``: train a VAE on IMC images and write a model file."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from napari_imc_vae.cli._common import (
    PROG,
    CommandError,
    InterruptGuard,
    ProgressBar,
    add_normalization_arguments,
    budget_arg,
    claim_output,
    fmt,
    is_main_rank,
    load_model,
    nonnegative_float,
    normalization_from_args,
    normalization_given,
    positive_float,
    positive_int,
    seed_arg,
    stream_all,
)


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


# written out, not imported: importing the engine loads torch, and this module loads before the
# Ctrl-C guard (test_help_defaults_match_the_engine checks them against engine.budget)
_PRESET_WORDS, DEFAULT_BUDGET = "quick (1 min), standard (5 min), thorough (15 min)", "standard"


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


def _train_options(args: argparse.Namespace) -> dict[str, dict]:
    """The flags the user gave, grouped by config."""
    out: dict[str, dict] = {"train": {}, "model": {}, "critic": {}}
    for flag, (config, name) in _TRAIN_FIELDS.items():
        value = getattr(args, flag)
        if value is not None:
            out[config][name] = value
    return out


def _summary(trained, stopped: bool, elapsed: float) -> str:
    last = trained.history[-1] if trained.history else {}
    val = trained.validation_history
    best = min(val, key=lambda v: v.get("val_loss", float("inf"))) if val else None
    d = trained.model.config.latent_dim
    lines = [f"{'stopped' if stopped else 'done'} after {trained.step} steps in total ({elapsed:.1f} s)",
             "last step:   " + "  ".join(f"{k}={fmt(last.get(k))}" for k in
                                          ("loss", "mse", "cosine_loss", "gradient_loss", "kld_loss",
                                           "kld_floored", "perm_loss"))]
    if best is not None:
        lines.append(f"validation (best, step {int(best['step'])}): "
                     f"loss={fmt(best.get('val_loss'))}  r2={fmt(best.get('r2'))}  "
                     f"sharpness_ratio={fmt(best.get('sharpness_ratio'))}  "
                     f"diversity_ratio={fmt(best.get('diversity_ratio'))}  "
                     f"active_units={int(best.get('active_units', 0))}/{d}  "
                     f"perm_accuracy={fmt(best.get('perm_accuracy'))}")
    else:
        lines.append("validation: none (the images are too small for a validation region)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    # Ctrl-C handling first: the imports below take seconds (torch) and must not be cut
    from contextlib import nullcontext

    with InterruptGuard() as interrupt:
        # rank 0 writes: it refuses an -o that is an input (or its panel) and locks it against a second run
        writes = is_main_rank() and not args.estimate
        with claim_output(args.output, args.paths, what="model file", is_folder=False) if writes else nullcontext():
            return _train(args, interrupt)


def _train(args: argparse.Namespace, interrupt: InterruptGuard) -> int:
    import os
    import time

    from napari_imc_vae.io.atomic import check_output_file

    main_rank = is_main_rank()
    say = print if main_rank else (lambda *a, **k: None)
    if main_rank:  # before any reading or training: a bad -o fails now, naming the path
        check_output_file(args.output, "model file")

    from napari_imc_vae.engine.budget import plan_run
    from napari_imc_vae.engine.critic import CriticConfig
    from napari_imc_vae.engine.device import compute_policy
    from napari_imc_vae.engine.trainer import TrainConfig, TrainingError
    from napari_imc_vae.engine.workflow import TrainingRun

    interrupt.check()
    options = _train_options(args)
    minutes = _budget_minutes(args)
    train_config = TrainConfig(**options["train"])  # ValueError names a bad field
    resume = load_model(args.resume, "cpu")[0] if args.resume else None
    if resume is not None:
        critic_config = replace(resume.critic_config, **options["critic"])
        if normalization_given(args):
            say(f"{PROG}: note: resuming keeps the model's normalization; normalization options ignored",
                file=sys.stderr)
    else:
        critic_config = CriticConfig(**options["critic"])
    normalization = normalization_from_args(args)
    # read file by file inside TrainingRun (fit, then normalize): a cohort never sits in memory
    images = stream_all(args.paths, args.acquisition, quiet=not main_rank)
    if not images.loaders:
        raise CommandError(f"no images found in {', '.join(args.paths)}")
    interrupt.check()
    run = TrainingRun(images, normalization=normalization, model_config=options["model"] or None,
                      critic_config=critic_config, train_config=train_config, resume=resume)
    interrupt.check()
    cfg = run.model.config
    say(f"training on {run.device}: {len(run.image_names)} image(s), {cfg.in_channels} channels, "
        f"{run.sampler.n_train} training / {run.sampler.n_val} validation positions, "
        f"patch {cfg.patch_size}, latent {cfg.latent_dim}, {cfg.arch}"
        + (f", resuming from step {resume.step}" if resume is not None else ""), flush=True)
    policy = compute_policy(run.device, run.trainer.bf16)  # every rank applies it; rank 0 says it
    say(f"compute: {policy}", flush=True)
    say(plan_run(run, minutes), flush=True)
    interrupt.check()  # a Ctrl-C while the steps were timed
    if args.estimate:
        _leave_process_group()
        return 0
    bar = ProgressBar("train", enabled=main_rank)

    def on_progress(p) -> None:
        text = f"loss {p.metrics['loss']:.4f} {p.patches_per_s:,.0f} patches/s"
        bar.update(p.run_step, p.run_steps, text, force=p.validation is not None)

    # from now on the first Ctrl-C stops after the current step and saves what there is
    interrupt.on_interrupt = run.stop
    start = time.perf_counter()
    try:
        trained, stopped = run.run(on_progress)
    except TrainingError as e:
        raise CommandError(str(e)) from e
    finally:
        bar.close()
        _leave_process_group()
    if main_rank:
        path = trained.save(args.output)
        print(_summary(trained, stopped, time.perf_counter() - start))
        print(f"model written to {os.fspath(path)}")
    return 0


def _budget_minutes(args: argparse.Namespace) -> float | None:
    """Minutes of the budget, or None when exact steps were asked for."""
    from napari_imc_vae.engine.budget import DEFAULT_BUDGET, BudgetError, parse_budget

    if args.budget is not None and (args.steps is not None or args.time_limit is not None):
        raise CommandError("give --budget, or --steps (with --time-limit), not both")
    if args.steps is not None or args.time_limit is not None:
        return None  # exact steps (the default 2,000 under a time limit alone)
    try:
        return parse_budget(args.budget if args.budget is not None else DEFAULT_BUDGET)
    except BudgetError as e:
        raise CommandError(f"--budget: {e}") from None


def _leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


