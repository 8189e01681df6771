"""Does the critic fix blurry, averaged reconstructions? An ablation on real IMC data (issue #5).

    python bench/ablation.py            # the full run (≤ 30 min on 2 CPU cores): docs/ablation.md + PNGs
    python bench/ablation.py --quick    # a few minutes: out/ablation-quick/

Every setting trains the same model (default architecture, fp32, seed 0) for the same number of
steps on the same patches, and is measured on the same held-out patches, in the same units: the
held-out image normalized as the normalized settings see it (hot pixels T=50 → arcsinh(x/5) →
z-score for IMC; z-score for the feature maps). A model trained on raw counts is mapped into those
units before it is measured, so every row answers "how close is the reconstruction to the data a
scientist looks at". PCA with as many components as latent dimensions, fitted on the training
patches, is measured on the same patches.

Datasets: leave-one-ROI-out on the steinbock OME-TIFFs of ../shared/data/imc-testdata (5 channels,
shot-noisy), and synthetic 512-channel feature maps (smooth, correlated, channel scales 1000x apart;
``napari_imc_vae.datasets.synthetic_feature_maps``), leave-one-image-out.

The script rewrites the part of the markdown file between its table markers (and the PNGs); the
conclusions around it are written by hand from the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from pathlib import Path

import numpy as np
import torch

from acceptance import cut_patches  # noqa: E402 (bench/ is on sys.path when run or tested)
from napari_imc_vae.datasets import synthetic_feature_maps
from napari_imc_vae.engine.quality.measures import active_units, permutation_accuracy, reconstruction_measures
from napari_imc_vae.engine.quality.baselines import PCABaseline
from napari_imc_vae.engine.model.critic import CriticConfig, kl_per_dimension
from napari_imc_vae.engine.apply.inference import apply_model, reconstruct_image
from napari_imc_vae.engine.quality.evaluate import Measures, gaussian_smooth
from napari_imc_vae.engine.training.trainer import TrainConfig, TrainingError
from napari_imc_vae.engine.training.run import DEFAULT_NORMALIZATION, TrainingRun
from napari_imc_vae.io import ImcImage, read_imc
from napari_imc_vae.preprocessing import NormalizationParams, Normalizer

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "imc-testdata" / "steinbock_img"
ARRAYS = ROOT / "out" / "ablation"  # whole reconstructions behind the figures (gitignored)
TABLE_START, TABLE_END = "<!-- ablation:start -->", "<!-- ablation:end -->"

# -- the settings ---------------------------------------------------------------------------------

#: The reference's "before": MSE plus a weak KL (no cosine, no gradient, perm_loss_scale unused).
REFERENCE_BEFORE = CriticConfig(cosine_weight=0.0, gradient_weight=0.0, kld_scale=1e-4, free_bits=0.5,
                                perm_loss_scale=0.0)
#: The reference's "after": the full critic.
FULL = CriticConfig.reference()


@dataclass(frozen=True)
class Setting:
    key: str
    label: str
    normalize: bool
    critic: CriticConfig


SETTINGS = [
    Setting("before", "1. reference before: raw counts, MSE + KLD(1e-4, fb 0.5)", False, REFERENCE_BEFORE),
    Setting("norm", "2. + normalization", True, REFERENCE_BEFORE),
    Setting("after", "3. reference after: full critic", True, FULL),
    Setting("no_cosine", "4. full critic without cosine", True, replace(FULL, cosine_weight=0.0)),
    Setting("no_gradient", "5. full critic without gradient", True, replace(FULL, gradient_weight=0.0)),
    Setting("no_perm", "6. full critic without perm", True, replace(FULL, perm_loss_scale=0.0)),
    # ours: on shot-noisy IMC the L1 gradient term pulls differences towards their median (≈ 0),
    # i.e. it smooths; a scratch run at 500 steps was sharper and closer without both terms
    Setting("mse_kld_perm", "7. ours: MSE + KLD + perm (no cosine, no gradient)", True,
            replace(FULL, cosine_weight=0.0, gradient_weight=0.0)),
]
PCA_KEY = "pca"


@dataclass
class Dataset:
    key: str
    title: str
    splits: list[tuple[list[ImcImage], ImcImage]]
    normalization: NormalizationParams
    steps: int
    batch: int
    held_label: str = "held-out ROI"


# -- patches and units ----------------------------------------------------------------------------


def without_hot_pixel_filter(normalizer: Normalizer) -> Normalizer:
    """The same transform minus the hot-pixel filter: for mapping reconstructions, which have no
    hot pixels and whose 3×3 neighbourhoods (patch borders) mean nothing."""
    d = normalizer.to_dict()
    d["params"] = {**d["params"], "hot_pixel_threshold": None}
    return Normalizer.from_dict(d)


def patches_through(transform, patches: np.ndarray) -> np.ndarray:
    """Apply a per-pixel transform of (C, Y, X) stacks to patches (N, C, P, P), laid out as one image."""
    n, c, p, _ = patches.shape
    image = patches.transpose(1, 0, 2, 3).reshape(c, n * p, p)
    return transform(image).reshape(c, n, p, p).transpose(1, 0, 2, 3)


class _PCATiles(torch.nn.Module):
    """PCA behind the model interface ``reconstruct_image`` expects, to stitch it the same way."""

    def __init__(self, pca: PCABaseline, patch_size: int):
        super().__init__()
        self.pca = pca
        self.config = argparse.Namespace(patch_size=patch_size, in_channels=pca.patch_shape[0], latent_dim=pca.k)

    def reconstruct(self, x: torch.Tensor):
        return torch.from_numpy(self.pca.reconstruct(x.numpy())), self.pca.encode(x.numpy()).float()


# -- one split ------------------------------------------------------------------------------------


@dataclass
class SplitData:
    """Everything the settings of one split share: targets in evaluation units and PCA-k."""

    held: ImcImage
    reference: Normalizer  # the normalized settings' normalizer = the evaluation units
    target_image: np.ndarray  # (C, Y, X) evaluation units
    x_val: np.ndarray  # held-out patches
    x_val_smooth: np.ndarray  # the same cut from the σ=1 smoothed image
    pca: PCABaseline
    images: dict = field(default_factory=dict)  # setting key → whole reconstruction (eval units)


def prepare_split(train: list[ImcImage], held: ImcImage, params: NormalizationParams, patch: int,
                  latent: int) -> SplitData:
    reference = Normalizer.fit(train, **asdict(params))
    target = reference(held)
    stride = max(1, patch // 2)
    train_patches = np.concatenate([cut_patches(reference(im), patch, max(1, patch // 2)) for im in train])
    if len(train_patches) > 20000:
        train_patches = train_patches[np.linspace(0, len(train_patches) - 1, 20000).round().astype(int)]
    pca = PCABaseline.fit(np.nan_to_num(train_patches), min(latent, len(train_patches)))
    return SplitData(held, reference, target, cut_patches(target, patch, stride),
                     cut_patches(gaussian_smooth(target), patch, stride), pca)


def _measure(split: SplitData, rec: np.ndarray, **extra) -> dict:
    row = asdict(Measures.measure(split.x_val, rec))
    row.update(smooth_r2=reconstruction_measures(split.x_val_smooth, rec)["r2"], **extra)
    return {k: v for k, v in row.items() if v is not None}


@torch.no_grad()
def run_setting(setting: Setting, train: list[ImcImage], split: SplitData, data: Dataset, args) -> dict:
    """Train one setting on one split and measure it; keeps its whole reconstruction for the figure."""
    params = data.normalization if setting.normalize else NormalizationParams(zscore=False)
    config = TrainConfig(steps=data.steps, batch_size=data.batch, lr=args.lr, seed=args.seed, device="cpu",
                         val_every=10**9, val_fraction=0.0, precision="fp32")
    started = time.perf_counter()
    try:
        with torch.enable_grad():
            trained, _ = TrainingRun(train, normalization=params, critic_config=setting.critic,
                                     model_config={"latent_dim": args.latent, "patch_size": args.patch},
                                     train_config=config).run()
    except TrainingError as e:  # a diverging setting is a result, not a crash
        return {"failed": str(e), "train_s": round(time.perf_counter() - started, 1)}
    seconds = time.perf_counter() - started
    model = trained.model.eval()
    x_in = np.nan_to_num(cut_patches(trained.normalizer(split.held), args.patch, max(1, args.patch // 2)))
    rec, mu, logvar = [], [], []
    for chunk in torch.from_numpy(x_in).split(1024):
        out = model(chunk, sample=False)
        rec.append(out.recon)
        mu.append(out.mu)
        logvar.append(out.logvar)
    rec_t, mu_t, logvar_t = torch.cat(rec), torch.cat(mu), torch.cat(logvar)
    rec_eval = rec_t.numpy()
    whole = apply_model(trained, split.held)
    if setting.normalize:
        split.images[setting.key] = whole.normalized
    else:  # raw counts → evaluation units
        to_eval = without_hot_pixel_filter(split.reference)
        rec_eval = patches_through(lambda im: to_eval(trained.normalizer.inverse(im)), rec_eval)
        split.images[setting.key] = to_eval(whole.raw)
    accuracy, used, left_out = permutation_accuracy(model, x_in)
    return _measure(split, rec_eval, active_units=active_units(mu_t),
                    kld_raw=float(kl_per_dimension(mu_t, logvar_t).sum(dim=1).mean()),
                    perm_accuracy=accuracy, perm_left_out=left_out, perm_used=used,
                    train_s=round(seconds, 1), steps=trained.step)


def run_pca(split: SplitData, patch: int) -> dict:
    rec = split.pca.reconstruct(split.x_val)
    tiles = _PCATiles(split.pca, patch)
    split.images[PCA_KEY] = reconstruct_image(tiles, np.nan_to_num(split.target_image)).normalized
    return _measure(split, rec, active_units=active_units(split.pca.encode(split.x_val)))


# -- the datasets ---------------------------------------------------------------------------------


def imc_dataset(held: list[int], steps: int, batch: int = 256) -> Dataset:
    files = sorted(DATA.glob("*.ome.tiff"))
    if not files:
        sys.exit(f"no steinbock OME-TIFFs under {DATA}: the test data must sit in ../shared beside the project")
    images = [read_imc(f) for f in files]
    splits = [([im for j, im in enumerate(images) if j != i], images[i]) for i in held]
    return Dataset("imc", f"IMC, steinbock OME-TIFFs ({images[0].n_channels} channels, leave-one-ROI-out)",
                   splits, DEFAULT_NORMALIZATION, steps, batch)


def feature_map_dataset(held: list[int], steps: int, size: int, batch: int = 64) -> Dataset:
    images = synthetic_feature_maps(n_images=4, size=size, n_channels=512)
    splits = [([im for j, im in enumerate(images) if j != i], images[i]) for i in held]
    return Dataset("feature_maps", "Synthetic feature maps (512 channels, scales 1000x apart, leave-one-image-out)",
                   splits, NormalizationParams(zscore=True), steps, batch, held_label="held-out image")


# -- output ---------------------------------------------------------------------------------------

COLUMNS = [  # (key, header, format, better)
    ("r2", "R²", ".3f", "high"), ("smooth_r2", "R² vs σ=1 target", ".3f", "high"), ("mse", "MSE", ".3f", "low"),
    ("cosine_loss", "cosine loss", ".3f", "low"), ("sharpness_ratio", "sharpness", ".3f", "near 1"),
    ("diversity_ratio", "diversity", ".3f", "near 1"), ("active_units", "active units", ".1f", "high"),
    ("kld_raw", "raw KL (nats)", ".0f", ""), ("perm_accuracy", "perm. accuracy", ".3f", "high"),
]


def _cell(values: list, fmt: str) -> str:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "—"
    mean = float(np.mean(values))
    if len(values) == 1:
        return format(mean, fmt)
    return f"{format(mean, fmt)} ± {format(float(np.std(values)), fmt.lstrip('+'))}"


def _paired_delta(runs: list[dict], reference: list[dict], key: str = "r2") -> list[float]:
    """Per split, this row's value minus the reference row's (same held-out image)."""
    ref = {r["held"]: r.get(key) for r in reference if "failed" not in r and "held" in r}
    return [r[key] - ref[r["held"]] for r in runs
            if "failed" not in r and r.get("held") in ref and r.get(key) is not None and ref[r["held"]] is not None]


def markdown_table(rows: dict[str, list[dict]], labels: dict[str, str], reference: str = "after") -> str:
    """One row per setting: mean ± sd over the splits, and R² paired with the reference row."""
    ref_label = labels.get(reference, reference).split(" ")[0]
    lines = ["| setting | " + " | ".join(h for _, h, _, _ in COLUMNS) + f" | ΔR² vs {ref_label} (paired) | train s |",
             "|---" * (len(COLUMNS) + 3) + "|"]
    for key, runs in rows.items():
        failed = [r["failed"] for r in runs if "failed" in r]
        ok = [r for r in runs if "failed" not in r]
        cells = [_cell([r.get(k) for r in ok], fmt) for k, _, fmt, _ in COLUMNS]
        delta = "—" if key == reference or reference not in rows else _cell(_paired_delta(runs, rows[reference]), "+.3f")
        seconds = _cell([r.get("train_s") for r in runs], ".0f") if key != PCA_KEY else "—"
        label = labels[key] + (f" ({len(failed)} of {len(runs)} runs failed: {failed[0]})" if failed else "")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {delta} | {seconds} |")
    return "\n".join(lines)


def write_markdown(path: Path, sections: list[str]) -> None:
    block = "\n\n".join([TABLE_START, *sections, TABLE_END])
    if path.exists() and TABLE_START in (text := path.read_text()) and TABLE_END in text:
        head, rest = text.split(TABLE_START, 1)
        text = head + block + rest.split(TABLE_END, 1)[1]
    else:
        text = "# Ablation: does the critic fix blurry, averaged reconstructions?\n\n" + block + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one split per dataset, few steps (a few minutes)")
    parser.add_argument("--held", type=int, nargs="+", default=[3, 7, 10, 14], help="held-out ROI indices (sorted files)")
    parser.add_argument("--held-maps", type=int, nargs="+", default=[3], help="held-out feature-map images")
    parser.add_argument("--steps", type=int, default=500, help="training steps per IMC run")
    parser.add_argument("--steps-maps", type=int, default=1000, help="training steps per feature-map run")
    parser.add_argument("--map-size", type=int, default=64)
    parser.add_argument("--settings", nargs="+", default=[s.key for s in SETTINGS], choices=[s.key for s in SETTINGS])
    parser.add_argument("--datasets", nargs="+", default=["imc", "feature_maps"], choices=["imc", "feature_maps"])
    parser.add_argument("--batch", type=int, default=256, help="IMC batch size")
    parser.add_argument("--batch-maps", type=int, default=64,
                        help="feature-map batch size (at 512 channels small batches learn more per second)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--latent", type=int, default=32)
    parser.add_argument("--patch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="markdown file to (re)write; default docs/ablation.md, "
                        "out/ablation-quick/ablation.md with --quick")
    parser.add_argument("--render-only", action="store_true",
                        help="no training: rewrite the tables and figures from the last run's JSON and arrays")
    args = parser.parse_args()
    if args.quick:
        args.held, args.held_maps = args.held[:1], args.held_maps[:1]
        args.steps, args.steps_maps = min(args.steps, 150), min(args.steps_maps, 150)
    out = args.out or (ROOT / "out" / "ablation-quick" / "ablation.md" if args.quick else ROOT / "docs" / "ablation.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.render_only:
        render(out, json.loads((out.parent / f"{out.stem}.json").read_text()))
        print(f"rewrote {out} and its PNGs from {out.stem}.json", flush=True)
        return
    torch.set_num_threads(args.threads)

    settings = [s for s in SETTINGS if s.key in args.settings]
    labels = {s.key: s.label for s in settings} | {PCA_KEY: f"PCA, k = {args.latent}"}
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
               f"torch {torch.__version__}, Python {platform.python_version()}")
    command = "python bench/ablation.py " + " ".join(sys.argv[1:])
    print(f"{command}\n{machine}", flush=True)
    started = time.perf_counter()
    datasets = []
    if "imc" in args.datasets:
        datasets.append(imc_dataset(args.held, args.steps, args.batch))
    if "feature_maps" in args.datasets:
        datasets.append(feature_map_dataset(args.held_maps, args.steps_maps, args.map_size, args.batch_maps))
    results = {}
    for data in datasets:
        rows: dict[str, list[dict]] = {s.key: [] for s in settings} | {PCA_KEY: []}
        figure_split = None
        for train, held in data.splits:
            split = prepare_split(train, held, data.normalization, args.patch, args.latent)
            rows[PCA_KEY].append(run_pca(split, args.patch) | {"held": held.name})
            for s in settings:
                r = run_setting(s, train, split, data, args) | {"held": held.name}
                rows[s.key].append(r)
                print(f"[{data.key}] {held.name:28} {s.key:12} " + (r.get("failed") or (
                      f"R² {r['r2']:.3f} (PCA {rows[PCA_KEY][-1]['r2']:.3f}) sharp {r['sharpness_ratio']:.3f} "
                      f"div {r['diversity_ratio']:.3f} cos {r['cosine_loss']:.3f} AU {r['active_units']} "
                      f"KL {r['kld_raw']:.0f} perm {r['perm_accuracy']:.3f} ({r['train_s']} s)")), flush=True)
            figure_split = figure_split or split
        # the figure's arrays, so that --render-only can redraw it without training (not in docs/: MBs)
        ARRAYS.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(ARRAYS / f"{out.stem}_{data.key}.npz", target=figure_split.target_image,
                            **figure_split.images)
        results[data.key] = {"title": data.title, "steps": data.steps, "batch": data.batch,
                             "held_label": data.held_label, "held": [h.name for _, h in data.splits],
                             "figure_held": figure_split.held.name, "labels": {k: labels[k] for k in rows},
                             "rows": rows}
    minutes = (time.perf_counter() - started) / 60
    run = {"command": command, "machine": machine, "date": str(date.today()), "minutes": minutes, "results": results}
    (out.parent / f"{out.stem}.json").write_text(json.dumps(run, indent=1, default=lambda v: None))
    render(out, run)
    print(f"wrote {out} and its PNGs in {minutes:.1f} min", flush=True)


def render(out: Path, run: dict) -> None:
    """Write the markdown tables (between the markers) and the figures of a run."""
    from ablation_figure import save_figure  # noqa: PLC0415 (bench/ is not a package)

    sections = [f"Made by `{run['command'].strip()}` on {run['date']} ({run['machine']}) in {run['minutes']:.1f} min. "
                "Measures are those of DESIGN §4 on held-out patches (8×8, stride 4) in the normalized units the "
                "normalized settings train in; sharpness and diversity are healthy near 1. ΔR² is paired: each "
                "row's R² minus the reference after's on the same held-out image, which removes the image-to-image "
                "spread that the ± of the other columns includes."]
    for key, data in run["results"].items():
        png = out.parent / f"{out.stem}_{key}.png"
        arrays = ARRAYS / f"{out.stem}_{key}.npz"
        if arrays.exists():
            with np.load(arrays) as saved:
                images = {k: saved[k] for k in saved.files if k != "target"}
                save_figure(png, saved["target"], images, list(data["labels"].items()),
                            title=f"{data['title']}: {data['held_label']} {data['figure_held']}")
        elif not png.exists():
            print(f"no figure for {key}: {arrays} is missing (run the training again)", flush=True)
        sections.append(
            f"### {data['title']}\n\n{data['steps']} steps × batch {data['batch']} per run; "
            f"{data['held_label']}s: {', '.join(data['held'])}; mean ± sd over them.\n\n"
            f"{markdown_table(data['rows'], data['labels'])}\n\n"
            f"![input, reconstruction and error per setting]({png.name})")
    write_markdown(out, sections)


if __name__ == "__main__":
    main()
