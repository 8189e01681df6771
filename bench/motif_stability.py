"""Are the tissue motifs stable? Motif maps from two training seeds, beside Pixie-style pixel k-means.

    python bench/motif_stability.py              # 2 seeds, 400 steps each, real steinbock ROIs
    python bench/motif_stability.py --quick      # 2 seeds, 60 steps (a smoke run)

Two models are trained on the same training ROIs (CLI defaults, ``--steps`` steps, seeds 0 and
1); each stores its motifs (k-means on the latent vectors of its training patches) in its
model file. On every held-out ROI the two models' motif maps are compared with the adjusted
Rand index (ARI, scikit-learn; labels upsampled to pixels, so both maps are compared pixel by
pixel). The baseline is the pixel clustering users would otherwise run (Pixie-style):
normalize as the model does, Gaussian-blur each channel (σ = 2 px), k-means (k = 6) on
blurred pixels of the training ROIs with seeds 0 and 1, assign the held-out pixels; its ARI
between seeds is set beside the model's. ARI 1 = the same partition, 0 = chance agreement.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imc-testdata" / "steinbock_img"
HELD_OUT = ("20210305_NE_mockData2_001", "20210305_NE_mockData3_003", "20210305_NE_mockData5_003",
            "20210305_NE_mockData4_003")
BLANK = "20210305_NE_mockData1_001"  # all channels near zero: neither trained on nor measured
K = 6
PIXEL_SAMPLE = 50_000


def _images(stems):
    from napari_imc_vae.io import read_imc

    return [read_imc(DATA / f"{s}.ome.tiff") for s in stems]


def _train(images, steps: int, seed: int):
    from napari_imc_vae.engine.training.trainer import TrainConfig
    from napari_imc_vae.engine.training.run import TrainingRun

    trained, _ = TrainingRun(images, train_config=TrainConfig(steps=steps, seed=seed, device="cpu")).run()
    return trained


def _motif_pixels(trained, image) -> np.ndarray:
    from napari_imc_vae.engine.apply.use_case import ApplySettings, apply_to_image
    from napari_imc_vae.engine.apply.motifs import upsample_grid

    app = apply_to_image(trained, image, ApplySettings(quality=False, regions=False, outputs=("latent",)))
    return upsample_grid(app.motifs, app.stride, image.shape[1:]).ravel()


def _blurred_pixels(normalizer, image, sigma: float = 2.0) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    norm = np.nan_to_num(normalizer(image))
    blurred = np.stack([gaussian_filter(c, sigma, mode="reflect") for c in norm])
    return blurred.reshape(blurred.shape[0], -1).T


def _pixel_kmeans(normalizer, train_images, seed: int):
    from sklearn.cluster import MiniBatchKMeans

    x = np.concatenate([_blurred_pixels(normalizer, im) for im in train_images])
    rng = np.random.default_rng(seed)
    x = x[rng.choice(len(x), min(PIXEL_SAMPLE, len(x)), replace=False)]
    return MiniBatchKMeans(n_clusters=K, random_state=seed, n_init=3, batch_size=4096).fit(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--quick", action="store_true", help="60 steps: a smoke run")
    args = parser.parse_args()
    from sklearn.metrics import adjusted_rand_score

    steps = 60 if args.quick else args.steps
    stems = sorted(p.name[: -len(".ome.tiff")] for p in DATA.glob("*.ome.tiff"))
    train_stems = [s for s in stems if s not in HELD_OUT and s != BLANK]
    train_images, held = _images(train_stems), _images(HELD_OUT)
    print(f"training on {len(train_stems)} ROIs, {steps} steps per seed; held out: {', '.join(HELD_OUT)}; "
          f"load average {os.getloadavg()[0]:.2f}")
    t = time.perf_counter()
    models = [_train(train_images, steps, seed) for seed in (0, 1)]
    pixel = [_pixel_kmeans(models[0].normalizer, train_images, seed) for seed in (0, 1)]
    print(f"trained both seeds in {time.perf_counter() - t:.0f} s")
    rows = []
    for image in held:
        vae = adjusted_rand_score(*(_motif_pixels(m, image) for m in models))
        x = _blurred_pixels(models[0].normalizer, image)
        pix = adjusted_rand_score(*(km.predict(x) for km in pixel))
        rows.append((image.name, vae, pix))
    print(f"\n| held-out ROI | VAE motifs, ARI seed 0 vs 1 | pixel k-means (σ=2 blur), ARI seed 0 vs 1 |")
    print("|---|---|---|")
    for name, vae, pix in rows:
        print(f"| {name} | {vae:.3f} | {pix:.3f} |")
    v, p = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    print(f"| mean ± sd | {v.mean():.3f} ± {v.std(ddof=1):.3f} | {p.mean():.3f} ± {p.std(ddof=1):.3f} |")


if __name__ == "__main__":
    main()
