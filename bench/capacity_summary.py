"""Tables of a capacity sweep (bench/capacity.py's JSON lines): one row per setting.

    python bench/capacity_summary.py docs/capacity/runs.jsonl

Each row averages the folds and seeds of one setting; ± is the standard deviation of ΔR² over
them. "meets" is the issue's target on real ROIs (ΔR² ≥ +0.05 against PCA-k and sharpness
≥ 1.3× PCA-k's) and, on the synthetic twin, R² against the truth above every baseline's.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

SETTING = ("latent", "free_bits", "kld_scale", "kl_target", "steps", "arch")
TARGET_DELTA, TARGET_SHARPNESS = 0.05, 1.3


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def grouped(rows: list[dict], data: str) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r["data"] == data:
            groups[tuple(r[k] for k in SETTING)].append(r)
    return dict(sorted(groups.items()))


def _kl_words(free_bits, kld_scale, kl_target) -> str:
    if kl_target:
        return f"target {kl_target:g} nats"
    return f"fb {free_bits:g}, β {kld_scale:g}"


def _mean(runs, who, key) -> float:
    return float(np.mean([r[who][key] for r in runs]))


def real_table(rows: list[dict]) -> list[str]:
    out = ["| latent | KL | steps | arch | runs | R² model | R² PCA-k | ΔR² | sharpness model / PCA-k (×) | "
           "diversity model / PCA-k | active units | KL nats | train s (load) | meets |",
           "|---" * 14 + "|"]
    for (latent, fb, beta, target, steps, arch), runs in grouped(rows, "real").items():
        delta = [r["model"]["r2"] - r["pca"]["r2"] for r in runs]
        sm, sp = _mean(runs, "model", "sharpness"), _mean(runs, "pca", "sharpness")
        meets = np.mean(delta) >= TARGET_DELTA and sm >= TARGET_SHARPNESS * sp
        out.append(
            f"| {latent} | {_kl_words(fb, beta, target)} | {steps} | {arch} | {len(runs)} | "
            f"{_mean(runs, 'model', 'r2'):.3f} | {_mean(runs, 'pca', 'r2'):.3f} | "
            f"{np.mean(delta):+.3f} ± {np.std(delta):.3f} | {sm:.3f} / {sp:.3f} ({sm / sp:.2f}) | "
            f"{_mean(runs, 'model', 'diversity'):.3f} / {_mean(runs, 'pca', 'diversity'):.3f} | "
            f"{np.mean([r['model']['active_units'] for r in runs]):.0f} | {np.mean([r['kl_nats'] for r in runs]):.0f} | "
            f"{np.mean([r['train_s'] for r in runs]):.0f} ({np.mean([r['load'] for r in runs]):.1f}) | "
            f"{'yes' if meets else 'no'} |")
    return out


def synthetic_table(rows: list[dict]) -> list[str]:
    out = ["| latent | KL | steps | arch | runs | R² noisy model / PCA-k | sharpness (×) | R² truth model | "
           "PCA-k | Gaussian σ=1 | Gaussian tuned | median 3×3 | counts | train s | meets |",
           "|---" * 15 + "|"]
    for (latent, fb, beta, target, steps, arch), runs in grouped(rows, "synthetic").items():
        truth = _mean(runs, "model", "r2_truth")
        filters = {k: float(np.mean([r["filters"][k]["r2_truth"] for r in runs])) for k in runs[0]["filters"]}
        baselines = [_mean(runs, "pca", "r2_truth"), *filters.values(), float(np.mean([r["noisy_r2_truth"] for r in runs]))]
        sm, sp = _mean(runs, "model", "sharpness"), _mean(runs, "pca", "sharpness")
        out.append(
            f"| {latent} | {_kl_words(fb, beta, target)} | {steps} | {arch} | {len(runs)} | "
            f"{_mean(runs, 'model', 'r2'):.3f} / {_mean(runs, 'pca', 'r2'):.3f} | {sm / sp:.2f} | **{truth:.3f}** | "
            + " | ".join(f"{b:.3f}" for b in baselines)
            + f" | {np.mean([r['train_s'] for r in runs]):.0f} | {'yes' if truth > max(baselines) else 'no'} |")
    return out


def print_summary(path: Path) -> None:
    rows = load(path)
    print(f"{len(rows)} runs from {path}\n\nReal ROIs, leave-one-ROI-out\n")
    print("\n".join(real_table(rows)))
    print("\nSynthetic twin, against its noisy counts and against the truth\n")
    print("\n".join(synthetic_table(rows)))


if __name__ == "__main__":
    print_summary(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/capacity/runs.jsonl"))
