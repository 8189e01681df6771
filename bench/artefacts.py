"""Does the error map find artefacts? Injected artefacts in held-out real ROIs (issue 12 point 3).

    python bench/artefacts.py            # the full run (≤ ~10 min on 2 quiet CPU cores): docs/artefacts.md
    python bench/artefacts.py --quick    # ~1 min: one held-out ROI, one seed, out/artefacts-quick/

For each held-out ROI and seed: train the model with the CLI's defaults (``napari-imc-vae train``:
default normalization, model, critic and TrainConfig) except ``--steps`` on the other 14 steinbock
ROIs, then inject artefacts of known kind into copies of the held-out ROI (placements drawn from
``seed`` and the ROI's index) and score every pixel three ways:

* model: ``apply_to_image(...).reconstruction.error``, the calibrated pixel error in noise SDs
  (``engine/apply/error_unit.py``) of the image as read (before the hot-pixel filter);
* PCA-k: the model file's stored baseline (PCA with k = latent dims fitted on the model's training
  patches) run through ``reconstruct_image`` like the model (overlapping tiles at stride P/2,
  blended): the same filtered input, the same unit against the image as read;
* median 3×3: the 3×3 median of the image as read taken as the predicted rate, in the same unit
  (noise model estimated on the image, the same dead-area cue).

A diagnostic repeats the three in the old unit (mean over channels of the squared error in
normalized units; ``|x − median3×3(x)|`` for the median). The clean held-out ROI (nothing
injected) is run through ``apply_to_image`` with regions on: the regions it lists are false alarms.

AUROC (``sklearn.metrics.roc_auc_score``) per kind, positives the artefact's pixels, negatives every
pixel it left untouched, one image per kind. The regions list is judged on one image holding all
local kinds at once: which injected artefacts overlap one of the top-N ranked regions
(N = the number injected) and the shape guess of the best-ranked region over each.

The script rewrites the part of docs/artefacts.md between its markers; the conclusions around
it are written by hand from the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import napari_imc_vae  # noqa: F401  first: it sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP
import numpy as np
import torch
from scipy import ndimage
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))  # ablation's helpers, when imported by tests
from ablation import _PCATiles, without_hot_pixel_filter  # noqa: E402
from napari_imc_vae.engine.apply.use_case import ApplySettings, apply_to_image  # noqa: E402
from napari_imc_vae.engine.device import apply_thread_policy, describe_precision  # noqa: E402
from napari_imc_vae.engine.apply.error_unit import (  # noqa: E402
    REGION_THRESHOLD,
    count_residual,
    dead_area_error,
)
from napari_imc_vae.engine.apply.inference import ordered_data, reconstruct_image  # noqa: E402
from napari_imc_vae.engine.apply.noise_model import estimate_noise  # noqa: E402
from napari_imc_vae.engine.apply.multiscale_error import multiscale_error, pooling_inflation  # noqa: E402
from napari_imc_vae.engine.apply.regions import MIN_REGION_AREA  # noqa: E402
from napari_imc_vae.engine.training.trainer import TrainConfig  # noqa: E402
from napari_imc_vae.engine.training.run import TrainingRun  # noqa: E402
from napari_imc_vae.io import ImcImage, read_imc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "imc-testdata" / "steinbock_img"
DOC = ROOT / "docs" / "artefacts.md"
TABLE_START, TABLE_END = "<!-- artefacts:start -->", "<!-- artefacts:end -->"

HOT_PIXEL_T = 50.0  # the default normalization's hot-pixel threshold, counts
LOCAL_KINDS = ("hot_above", "hot_below", "streak", "blob", "dead")
KINDS = (*LOCAL_KINDS, "spillover")
LABELS = {"hot_above": "hot pixel above T (p99·4 + 100)", "hot_below": "hot pixel below T (+40 over neighbours)",
          "streak": "row streak (40 px, one channel)", "blob": "misstained blob (6×6, one channel)",
          "dead": "dead region (10×10, all channels 0)", "spillover": "5% spillover c → c+1 (top 5% added)",
          "spillover_clean": "… the same pixels without spillover (control)",
          "spillover_shift": "… leak pixels with vs without spillover"}
#: How many of each local kind one image holds (hot pixels: the issue's 15 in a 50×60 ROI, less a few
#: so that all kinds fit at once with gaps), the footprint (rows, cols), the gap kept around each.
COUNTS = {"hot_above": 12, "hot_below": 12, "streak": 2, "blob": 2, "dead": 1}
FOOTPRINT = {"hot_above": (1, 1), "hot_below": (1, 1), "streak": (1, 40), "blob": (6, 6), "dead": (10, 10)}
GAP, BORDER = 2, 2  # px: artefacts never touch each other's 3×3 neighbourhoods nor the image border
SPILL_FRACTION, SPILL_TOP = 0.05, 0.05
METHODS = ("model", "pca", "median")
#: A diagnostic beside the three: the same predictions in the old unit (mean over channels of the
#: squared error in normalized units; the median's mean |x − median3×3(x)|).
OLD_UNIT = tuple(f"{m}_old" for m in METHODS)
SCORES = (*METHODS, *OLD_UNIT)


@dataclass
class Artefact:
    kind: str
    y: int
    x: int
    height: int
    width: int
    channel: int | None  # None: every channel (dead region)

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        m = np.zeros(shape, bool)
        m[self.y : self.y + self.height, self.x : self.x + self.width] = True
        return m


def _signal(data: np.ndarray) -> np.ndarray:
    return np.arcsinh(np.clip(data, 0, None) / 5.0).sum(axis=0)


def plan_artefacts(data: np.ndarray, rng: np.random.Generator, counts: dict | None = None) -> list[Artefact]:
    """Non-overlapping placements (GAP px apart, BORDER px off the edges) for the local kinds.

    The dead region goes where the tissue is (of 50 free positions, the one with most signal):
    zeros over background are no artefact. The others are placed uniformly, in a random channel.
    """
    counts = COUNTS if counts is None else counts
    c, h, w = data.shape
    taken = np.zeros((h, w), bool)
    signal = _signal(data)
    planned = []
    for kind in ("dead", "streak", "blob", "hot_above", "hot_below"):  # large ones first: they fit
        ph, pw = FOOTPRINT[kind]
        pw = min(pw, w - 2 * BORDER)
        for _ in range(counts.get(kind, 0)):
            free = []
            for _ in range(2000):
                y, x = int(rng.integers(BORDER, h - BORDER - ph + 1)), int(rng.integers(BORDER, w - BORDER - pw + 1))
                if not taken[max(0, y - GAP) : y + ph + GAP, max(0, x - GAP) : x + pw + GAP].any():
                    free.append((y, x))
                    if kind != "dead" or len(free) == 50:
                        break
            if not free:
                raise ValueError(f"no room for another {kind} in a {h}×{w} image")
            if kind == "dead":
                free.sort(key=lambda p: -signal[p[0] : p[0] + ph, p[1] : p[1] + pw].sum())
            y, x = free[0]
            taken[y : y + ph, x : x + pw] = True
            planned.append(Artefact(kind, y, x, ph, pw, None if kind == "dead" else int(rng.integers(c))))
    return planned


def _neighbour_max(plane: np.ndarray, y: int, x: int) -> float:
    window = plane[y - 1 : y + 2, x - 1 : x + 2].copy()
    window[1, 1] = -np.inf
    return float(window.max())


def inject(data: np.ndarray, artefacts: list[Artefact]) -> np.ndarray:
    """A copy of raw ``data`` (C, Y, X) with the artefacts in; amounts come from the clean image.

    hot_above: p99·4 + 100 counts of its channel (far above the filter's T = 50 over the
    neighbours); hot_below: the neighbours' maximum + 40 (the filter leaves it); streak and blob:
    + the channel's p99 (at least 5 counts); dead: every channel 0.
    """
    out = np.array(data, dtype=np.float32, copy=True)
    p99 = np.percentile(data, 99, axis=(1, 2))
    for a in artefacts:
        sl = (slice(a.y, a.y + a.height), slice(a.x, a.x + a.width))
        if a.kind == "hot_above":
            out[a.channel][sl] = p99[a.channel] * 4 + 100
        elif a.kind == "hot_below":
            out[a.channel][sl] = _neighbour_max(data[a.channel], a.y, a.x) + 40.0
        elif a.kind in ("streak", "blob"):
            out[a.channel][sl] += max(float(p99[a.channel]), 5.0)
        elif a.kind == "dead":
            out[(slice(None), *sl)] = 0.0
        else:
            raise ValueError(f"unknown artefact kind {a.kind!r}")
    return out


def spillover(data: np.ndarray, normalizer, rng: np.random.Generator):
    """5% of channel c leaks into channel c+1 over the whole image (a smooth linear leak).

    c is drawn among the channels whose p99 is at least 10 counts (a faint channel leaks nothing).
    Positives: the SPILL_TOP of pixels where the leak adds most to channel c+1 in normalized units
    (as read, no hot-pixel filter); negatives: pixels where channel c is 0 (the leak adds nothing).

    Returns
    -------
    spilled : ndarray (C, Y, X)
    positives, negatives : ndarray (Y, X) of bool
    source : int
    """
    p99 = np.percentile(data, 99, axis=(1, 2))
    sources = [c for c in range(data.shape[0] - 1) if p99[c] >= 10] or [int(np.argmax(p99[:-1]))]
    c = int(rng.choice(sources))
    spilled = np.array(data, dtype=np.float32, copy=True)
    spilled[c + 1] += SPILL_FRACTION * data[c]
    as_read = without_hot_pixel_filter(normalizer)
    added = as_read(spilled)[c + 1] - as_read(data)[c + 1]
    positives = added >= np.quantile(added, 1 - SPILL_TOP)
    positives &= added > 0
    negatives = data[c] == 0
    return spilled, positives, negatives, c


# -- scoring ----------------------------------------------------------------------------------------


def score_maps(trained, image: ImcImage, *, regions: bool = False) -> tuple[dict[str, np.ndarray], object]:
    """Per-pixel scores of the three methods on ``image``, and the model's ModelApplication."""
    app = apply_to_image(trained, image, ApplySettings(motifs=0, quality=False, regions=regions,
                                                       outputs=("error", "residual", "channel_error", "hot_pixels")))
    data = ordered_data(trained, image)
    tiles = _PCATiles(trained.baseline, trained.model.config.patch_size)
    pca = reconstruct_image(tiles, data, trained.normalizer, outputs=("error", "channel_error"))
    x = without_hot_pixel_filter(trained.normalizer)(data)
    median = np.abs(x - ndimage.median_filter(x, size=(1, 3, 3), mode="mirror"))
    return {"model": app.reconstruction.error, "pca": pca.error, "median": median_error(data),
            "model_old": np.nanmean(app.reconstruction.channel_error, axis=0),
            "pca_old": np.nanmean(pca.channel_error, axis=0), "median_old": median.mean(axis=0)}, app


def median_error(data: np.ndarray) -> np.ndarray:
    """The error unit with the 3×3 median of the raw image as read as the predicted rate."""
    rate = ndimage.median_filter(np.asarray(data, np.float32), size=(1, 3, 3), mode="mirror")
    scale, dispersion = estimate_noise(data, rate)
    r = count_residual(data, rate, dispersion, scale=scale)
    return multiscale_error(r, dead_area_error(data, scale=scale), inflation=pooling_inflation(r, rate))


def auroc(score: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> float:
    y = np.concatenate([np.ones(positives.sum()), np.zeros(negatives.sum())])
    return float(roc_auc_score(y, np.concatenate([score[positives], score[negatives]])))


def region_labels(error: np.ndarray, threshold: float, regions: list[dict]) -> list[np.ndarray]:
    """The pixel mask of each region of ``find_regions`` (same threshold and 8-connectivity)."""
    labels, _ = ndimage.label(np.isfinite(error) & (error > threshold), structure=np.ones((3, 3), bool))
    masks = []
    for r in regions:
        y0, x0, y1, x1 = r["bbox"]
        ids, n = np.unique(labels[y0:y1, x0:x1], return_counts=True)
        ids = [i for i, k in zip(ids, n) if i and k == r["area"]] or [i for i in ids if i]
        masks.append(labels == ids[0])
    return masks


def judge_regions(error: np.ndarray, threshold: float, regions: list[dict], artefacts: list[Artefact],
                  spikes: list[dict] = ()) -> list[dict]:
    """Per injected artefact: rank of the best region over it (None: none), its shape guess, and
    whether an isolated spike (a single high pixel, listed apart from the regions) lies on it."""
    masks = region_labels(error, threshold, regions)
    out = []
    for a in artefacts:
        m = a.mask(error.shape)
        hit = next((r for r, rm in zip(regions, masks) if (rm & m).any()), None)
        out.append({"kind": a.kind, "rank": None if hit is None else hit["rank"],
                    "shape": None if hit is None else hit["shape"],
                    "spike": any(m[s["y"], s["x"]] for s in spikes)})
    return out


def run_one(images: list[ImcImage], held_index: int, seed: int, steps: int, model_config: dict) -> dict:
    held = images[held_index]
    train = [im for j, im in enumerate(images) if j != held_index]
    started = time.perf_counter()
    run = TrainingRun(train, model_config=model_config or None, train_config=TrainConfig(steps=steps, seed=seed))
    trained, _ = run.run()
    train_s = time.perf_counter() - started
    rng = np.random.default_rng([seed, held_index])
    if list(trained.match_channels(held).index) != list(range(held.shape[0])):
        raise ValueError(f"{held.name}'s channels are not the model's, in its order")  # injected by index
    data = held.data
    planned = plan_artefacts(data, rng)
    shape = data.shape[1:]
    row = {"held": held.name, "held_index": held_index, "seed": seed, "steps": trained.step,
           "train_s": round(train_s, 1), "k": trained.baseline.k, "auroc": {}, "regions": [],
           "precision": describe_precision(run.trainer.bf16, run.device)}
    for kind in LOCAL_KINDS:
        artefacts = [a for a in planned if a.kind == kind]
        positives = np.any([a.mask(shape) for a in artefacts], axis=0)
        maps, app = score_maps(trained, replace(held, data=inject(data, artefacts)))
        row["auroc"][kind] = {m: auroc(maps[m], positives, ~positives) for m in SCORES}
        if kind == "hot_above":  # the filter must see them, or they are not "above T"
            row["hot_above_filtered"] = float((app.reconstruction.hot_pixels[positives] > 0).mean())
    spilled, positives, negatives, source = spillover(data, trained.normalizer, rng)
    both = {}
    for key, values in (("spillover", spilled), ("spillover_clean", data)):
        both[key], _ = score_maps(trained, replace(held, data=values))
        row["auroc"][key] = {m: auroc(both[key][m], positives, negatives) for m in SCORES}
    # the same leak pixels with and without the leak: 0.5 = the map does not change where it leaks
    row["auroc"]["spillover_shift"] = {m: auroc(np.stack([both["spillover"][m], both["spillover_clean"][m]]),
                                                np.stack([positives, np.zeros_like(positives)]),
                                                np.stack([np.zeros_like(positives), positives])) for m in SCORES}
    row["spill_source"] = trained.channel_names[source]
    maps, app = score_maps(trained, replace(held, data=inject(data, planned)), regions=True)
    row["regions"] = judge_regions(app.region_map, app.region_threshold, app.regions, planned, app.spikes)
    row["n_regions"], row["n_spikes"] = len(app.regions), len(app.spikes)
    # nothing injected: every region is a false alarm (or an artefact of the ROI itself)
    clean = apply_to_image(trained, held, ApplySettings(motifs=0, quality=False))
    row["clean"] = {"pixels": int(np.isfinite(clean.error_map).sum()), "regions": len(clean.regions),
                    "spikes": len(clean.spikes), "hot_pixel_spikes": sum(s["hot_pixel"] for s in clean.spikes),
                    "region_areas": sorted(r["area"] for r in clean.regions),
                    "above_threshold": int((clean.error_map > REGION_THRESHOLD).sum()),
                    "mean_error": float(np.nanmean(clean.error_map)),
                    "mean_abs_residual": float(np.nanmean(np.abs(clean.residual))),
                    "sd_residual": float(np.nanstd(clean.residual)),
                    "scale": [round(float(v), 3) for v in clean.reconstruction.noise_scale],
                    "dispersion": [round(float(v), 3) for v in clean.reconstruction.dispersion]}
    row["total_s"] = round(time.perf_counter() - started, 1)
    return row


# -- tables -----------------------------------------------------------------------------------------


def _cell(values: list[float]) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def _auroc_rows(rows: list[dict], methods: tuple[str, ...]) -> list[str]:
    lines = []
    for kind in (*KINDS, "spillover_clean", "spillover_shift"):
        cells = [_cell([r["auroc"][kind][m] for r in rows]) for m in methods]
        best = max(methods, key=lambda m: np.mean([r["auroc"][kind][m] for r in rows]))
        cells = [f"**{c}**" if m == best else c for c, m in zip(cells, methods)]
        lines.append(f"| {LABELS[kind]} | " + " | ".join(cells) + " |")
    return lines


def markdown_tables(rows: list[dict]) -> str:
    n = len(rows)
    lines = [f"AUROC per pixel, mean ± sd over {n} runs (held-out ROI × seed); positives: the artefact's "
             "pixels, negatives: the pixels it left untouched. All three in the calibrated unit (noise SDs).", "",
             "| artefact | model error map | PCA-k residual | median 3×3 residual |", "|---|---|---|---|"]
    lines += _auroc_rows(rows, METHODS)
    lines += ["", "Diagnostic, the same predictions in the old unit (mean over channels of the squared error in "
              "normalized units; the median's mean |x − median3×3(x)|):", "",
              "| artefact | model, old unit | PCA-k, old unit | median 3×3, old unit |", "|---|---|---|---|"]
    lines += _auroc_rows(rows, OLD_UNIT)
    pixels = sum(r["clean"]["pixels"] for r in rows)
    regions = sum(r["clean"]["regions"] for r in rows)
    spikes = sum(r["clean"]["spikes"] for r in rows)
    hot = sum(r["clean"]["hot_pixel_spikes"] for r in rows)
    lines += ["", f"The clean held-out ROIs (nothing injected), threshold {REGION_THRESHOLD:g} noise SD: "
              f"{regions} regions (areas of ≥ {MIN_REGION_AREA} px) on {pixels:,} pixels = "
              f"**{1e5 * regions / pixels:.1f} per 100,000 pixels**; listed apart, {spikes} isolated single-pixel "
              f"spikes ({1e5 * spikes / pixels:.1f} per 100,000; {hot} of them hot pixels the filter removed). "
              "Per run (regions, spikes, pixels above the threshold, mean pixel error, mean |residual| and its sd): "
              + "; ".join(
                  f"{r['held']} seed {r['seed']}: {r['clean']['regions']}, {r['clean']['spikes']}, "
                  f"{r['clean']['above_threshold']}, "
                  f"{r['clean']['mean_error']:.2f}, {r['clean']['mean_abs_residual']:.2f} ± {r['clean']['sd_residual']:.2f}"
                  for r in rows) + "."]
    n_top = sum(COUNTS.values())
    lines += ["", f"Regions list on one image holding all {n_top} local artefacts at once "
              f"(top-N: N = {n_top}, the number injected), over the same {n} runs:", "",
              "| artefact | injected | in a top-N region | in any region | an isolated spike on it | "
              "shape guess of the region over it |",
              "|---|---|---|---|---|---|"]
    for kind in LOCAL_KINDS:
        judged = [j for r in rows for j in r["regions"] if j["kind"] == kind]
        top = sum(j["rank"] is not None and j["rank"] <= n_top for j in judged)
        anyr = sum(j["rank"] is not None for j in judged)
        shapes = {}
        for j in judged:
            shapes[j["shape"] or "no region"] = shapes.get(j["shape"] or "no region", 0) + 1
        guess = ", ".join(f"{s} {k}" for s, k in sorted(shapes.items(), key=lambda t: -t[1]))
        spiked = sum(bool(j.get("spike")) for j in judged)
        lines.append(f"| {LABELS[kind]} | {len(judged)} | {top / len(judged):.0%} | {anyr / len(judged):.0%} | "
                     f"{spiked / len(judged):.0%} | {guess} |")
    lines += ["", "Per run: " + "; ".join(
        f"{r['held']} seed {r['seed']}: {r['steps']} steps in {r['train_s']} s, {r['n_regions']} regions, "
        f"{r['n_spikes']} spikes, "
        f"spillover from {r['spill_source']}, hot pixels above T filtered {r['hot_above_filtered']:.0%}" for r in rows)]
    return "\n".join(lines)


def write_markdown(path: Path, table: str, header: str) -> None:
    block = f"{TABLE_START}\n{header}\n\n{table}\n{TABLE_END}"
    text = path.read_text() if path.exists() else f"# Artefacts\n\n{TABLE_START}\n{TABLE_END}\n"
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < 0:
        text = text.rstrip() + f"\n\n{TABLE_START}\n{TABLE_END}\n"
        start, end = text.find(TABLE_START), text.find(TABLE_END)
    path.write_text(text[:start] + block + text[end + len(TABLE_END):])


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "?")
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads; load average {load} at the end"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one held-out ROI, one seed, 150 steps; out/ only")
    parser.add_argument("--held", type=int, nargs="+", default=[3, 8, 13],
                        help="indices of the held-out ROIs in name order (0 is nearly blank; 9 is 29×35 px)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=500, help="training steps (the CLI's default is 2000)")
    parser.add_argument("--width", type=int, help="model width (default the CLI's); for tests")
    parser.add_argument("--out", type=Path, help="JSON of every run (default out/artefacts[-quick]/runs.json)")
    parser.add_argument("--doc", type=Path, help=f"markdown to rewrite between its markers (default {DOC.name})")
    args = parser.parse_args(argv)
    if args.quick:
        args.held, args.seeds, args.steps = args.held[:1], args.seeds[:1], min(args.steps, 150)
    apply_thread_policy()  # the CLI's: one thread per usable core, OpenMP threads waiting passively
    images = [read_imc(f) for f in sorted(DATA.glob("*.ome.tiff"))]
    out = args.out or ROOT / "out" / ("artefacts-quick" if args.quick else "artefacts") / "runs.json"
    doc = args.doc or (None if args.quick else DOC)
    model_config = {"width": args.width} if args.width else {}
    started, rows, load_at_start = time.perf_counter(), [], os.getloadavg()[0]
    for held in args.held:
        for seed in args.seeds:
            r = run_one(images, held, seed, args.steps, model_config)
            rows.append(r)
            print(f"{r['held']} seed {seed}: {r['total_s']} s | " + " | ".join(
                f"{k} " + "/".join(f"{r['auroc'][k][m]:.2f}" for m in SCORES) for k in r["auroc"]), flush=True)
    table = markdown_tables(rows)
    command = "python bench/artefacts.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    header = (f"`{command}` — {time.perf_counter() - started:.0f} s on {machine()} (1-min load {load_at_start:.2f} "
              f"at the start); torch {torch.__version__}, "
              f"{platform.python_version()}. Held out: {', '.join(sorted({r['held'] for r in rows}))}; "
              f"seeds {', '.join(map(str, args.seeds))}; {args.steps} steps each, {rows[0]['precision']}.")
    print(f"\n{header}\n\n{table}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": rows}, indent=1))
    if doc is not None:
        write_markdown(doc, table, header)


if __name__ == "__main__":
    main()
