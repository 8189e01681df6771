"""Tables of a capacity sweep (bench/capacity.py's JSON lines): one row per setting.

    python bench/capacity_summary.py docs/capacity/runs.jsonl [docs/capacity_curves.png]

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
#: The sweep's two held-out ROIs (bench/capacity.py DEFAULT_HELD): the main table uses only these,
#: so its rows compare like with like; other folds are in the per-ROI table.
SWEEP_ROIS = ("20210305_NE_mockData2_001", "20210305_NE_mockData5_003")
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
    sweep = [r for r in rows if r["data"] != "real" or r["held"] in SWEEP_ROIS]
    for (latent, fb, beta, target, steps, arch), runs in grouped(sweep, "real").items():
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


def per_roi_table(rows: list[dict], latents=(16, 32)) -> list[str]:
    """Each held-out ROI, seed 0, 2,000 steps, default KL: model and PCA-k R² per latent size."""
    cells: dict[str, dict[int, dict]] = defaultdict(dict)
    for r in rows:
        if (r["data"], r["seed"], r["steps"], r["free_bits"], r["kld_scale"], r["kl_target"], r["arch"]) == \
                ("real", 0, 2000, 2.0, 0.001, 0.0, "mlp") and r["latent"] in latents:
            cells[r["held"]][r["latent"]] = r
    head = " | ".join(f"latent {k}: R² model / PCA-{k} (Δ), sharpness ×" for k in latents)
    out = [f"| held-out ROI | {head} |", "|---" * (1 + len(latents)) + "|"]
    for roi in sorted(cells):
        parts = []
        for k in latents:
            r = cells[roi].get(k)
            if r is None:
                parts.append("–")
                continue
            m, p = r["model"], r["pca"]
            parts.append(f"{m['r2']:.3f} / {p['r2']:.3f} ({m['r2'] - p['r2']:+.3f}), "
                         f"{m['sharpness'] / p['sharpness']:.2f}×")
        out.append(f"| {roi} | " + " | ".join(parts) + " |")
    for k in latents:
        runs = [c[k] for c in cells.values() if k in c]
        if runs:
            d = [r["model"]["r2"] - r["pca"]["r2"] for r in runs]
            out.append(f"\nlatent {k}: mean ΔR² over {len(runs)} ROIs {np.mean(d):+.3f} ± {np.std(d):.3f}")
    return out


def synthetic_table(rows: list[dict], data: str = "synthetic") -> list[str]:
    out = ["| latent | KL | steps | arch | runs | R² noisy model / PCA-k | sharpness (×) | R² truth model | "
           "PCA-k | Gaussian σ=1 | Gaussian tuned | median 3×3 | counts | train s | meets |",
           "|---" * 15 + "|"]
    for (latent, fb, beta, target, steps, arch), runs in grouped(rows, data).items():
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


def curve_points(rows: list[dict], data: str, latent: int, key: str = "r2") -> list[tuple[float, float, float]]:
    """(steps, model, PCA-k) for each training length of the default KL setting.

    Steps, not seconds: the runs shared the machine at different loads, and its rate drifted
    (docs/benchmarks.md, budgets).
    """
    points = []
    rows = [r for r in rows if r["data"] != "real" or r["held"] in SWEEP_ROIS]  # the same folds at every length
    for (lat, fb, beta, target, steps, arch), runs in grouped(rows, data).items():
        if lat == latent and (fb, beta, target, arch) == (2.0, 0.001, 0.0, "mlp"):
            points.append((float(steps), _mean(runs, "model", key),
                           _mean(runs, "pca", key)))
    return sorted(points)


def plot_curves(rows: list[dict], path: Path, latent: int) -> None:
    """R² against training steps (Pillow): real ROIs (raw R²) and the twin (R² against the truth)."""
    from PIL import Image, ImageDraw

    panels = [("held-out ROIs: R2 (model red, PCA-k blue)", curve_points(rows, "real", latent)),
              ("synthetic twin: R2 against the truth (model red, PCA-k blue)", curve_points(rows, "synthetic", latent, "r2_truth"))]
    w, h, pad = 420, 260, 42
    image = Image.new("RGB", (2 * w, h), "white")
    draw = ImageDraw.Draw(image)
    for i, (title, points) in enumerate(panels):
        x0 = i * w
        draw.text((x0 + pad, 8), title, fill="black")
        if not points:
            continue
        ys = [v for p in points for v in p[1:]]
        lo, hi = min(ys) - 0.01, max(ys) + 0.01
        tmax = max(p[0] for p in points) * 1.05

        def xy(t, v):
            return x0 + pad + (w - 2 * pad) * t / tmax, h - pad - (h - 2 * pad) * (v - lo) / (hi - lo)
        draw.line([xy(0, lo), xy(tmax, lo)], fill="black")
        draw.line([xy(0, lo), xy(0, hi)], fill="black")
        for frac in (0.0, 0.5, 1.0):
            v = lo + frac * (hi - lo)
            draw.text((x0 + 2, xy(0, v)[1] - 6), f"{v:.3f}", fill="black")
        draw.text((x0 + w // 2 - 40, h - pad + 14), f"training steps (to {tmax:.0f})", fill="black")
        model = [xy(t, m) for t, m, _ in points]
        draw.line(model, fill=(200, 40, 40), width=2)
        for (t, m, p), (px, py) in zip(points, model):
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=(200, 40, 40))
            qx, qy = xy(t, p)
            draw.ellipse([qx - 3, qy - 3, qx + 3, qy + 3], outline=(40, 40, 200))
        pca = [xy(t, p) for t, _, p in points]
        for a, b in zip(pca, pca[1:]):
            draw.line([a, b], fill=(40, 40, 200), width=1)
    image.save(path)


def print_summary(path: Path) -> None:
    rows = load(path)
    print(f"{len(rows)} runs from {path}\n\nReal ROIs, leave-one-ROI-out\n")
    print("\n".join(real_table(rows)))
    print("\nEach held-out ROI (seed 0, 2,000 steps, fb 2, β 0.001)\n")
    print("\n".join(per_roi_table(rows)))
    print("\nSynthetic twin, against its noisy counts and against the truth\n")
    print("\n".join(synthetic_table(rows)))
    if any(r["data"] == "synthetic10" for r in rows):
        print("\nThe issue's 1000×1000×10 synthetic tissue (bright nuclear channels), against the truth\n")
        print("\n".join(synthetic_table(rows, "synthetic10")))


if __name__ == "__main__":
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/capacity/runs.jsonl")
    print_summary(source)
    if len(sys.argv) > 2:  # a PNG path: the R² against training time curves of latent 16
        plot_curves(load(source), Path(sys.argv[2]), latent=16)
