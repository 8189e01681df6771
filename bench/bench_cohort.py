"""Cohorts larger than RAM: peak memory and throughput of ``napari-imc-vae train FOLDER``.

Writes ``--images`` synthetic IMC OME-TIFFs (``datasets.synthetic_tissue``, D4 views of a few
base images, float32, ``--size``² × ``--channels``) to a temporary folder, then trains through
the command line in child processes and reads each child's peak RSS (``os.wait4``'s
``ru_maxrss``) and its last patches/s:

1. the whole cohort through the cohort path (disk cache + pool), for each ``--cohort-sizes``
   and ``--pool-mb`` (RSS should follow the pool and the model, not the number of images);
2. ``--ram-images`` of them through the in-RAM path (``NAPARI_IMC_VAE_IN_MEMORY_MB`` large)
   and through the cohort path (``NAPARI_IMC_VAE_IN_MEMORY_MB=0``): the throughput ratio on the
   same data, back to back.

``--f16-error`` instead measures the float16 cache's rounding error against the per-channel
noise, on the real ROIs (``../shared/data/imc-testdata``) and on one synthetic image.

Full run (minutes; 12 × 1024² × 40 = 2.0 GB of float32 images, ~3 GB of temporary disk):

    python bench/bench_cohort.py --images 12 --size 1024 --channels 40 --steps 300 --ram-images 3

Proof at small size:

    python bench/bench_cohort.py --images 3 --size 512 --channels 40 --steps 60 --ram-images 1
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL_ROIS = ROOT.parent / "shared" / "data" / "imc-testdata" / "steinbock_img"


def write_cohort(folder: Path, n_images: int, size: int, channels: int) -> list[Path]:
    """``n_images`` OME-TIFFs: the 8 D4 views of each of ceil(n/8) synthetic tissues."""
    import tifffile

    from napari_imc_vae.datasets import synthetic_tissue

    folder.mkdir(parents=True, exist_ok=True)
    paths, base = [], None
    for k in range(n_images):
        if k % 8 == 0:
            base = synthetic_tissue((size, size), channels, seed=k // 8)
        view = np.rot90(base.data, k % 4, axes=(1, 2))
        view = view[:, ::-1] if (k // 4) % 2 else view
        names = [f"{m}_{label}" for m, label in zip(base.metals, base.labels)]
        path = folder / f"roi_{k:03d}.ome.tiff"
        tifffile.imwrite(path, np.ascontiguousarray(view, dtype=np.float32), ome=True,
                         photometric="minisblack", metadata={"axes": "CYX", "Channel": {"Name": names}})
        paths.append(path)
    return paths


def train_child(paths: list[Path], out: Path, steps: int, env_extra: dict, batch: int) -> dict:
    """Run ``napari-imc-vae train`` in a child; its peak RSS, last patches/s and wall time."""
    env = {**os.environ, **env_extra}
    cmd = [sys.executable, "-m", "napari_imc_vae", "train", *map(str, paths), "-o", str(out),
           "--steps", str(steps), "--batch", str(batch), "--device", "cpu"]
    start = time.perf_counter()
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        child = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        stdout.seek(0)
        stderr.seek(0)
        text = stdout.read().decode() + stderr.read().decode()
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({child.returncode}):\n{text[-3000:]}")
    rates = re.findall(r"([\d,]+) patches/s", text)
    trained = re.search(r"in total \(([\d.]+) s\)", text)
    return {
        "peak_rss_mb": usage.ru_maxrss / 1024,  # kB on Linux
        "patches_per_s": float(rates[-1].replace(",", "")) if rates else float("nan"),
        "wall_s": wall,
        "train_s": float(trained.group(1)) if trained else float("nan"),
        "first_line": next((line for line in text.splitlines() if line.startswith("training on")), ""),
    }


def float16_error(images, normalizer) -> dict:
    """Worst per-channel max and RMS float16 error, absolute and over the channel's noise."""
    worst = {"max_abs": 0.0, "rms_abs": 0.0, "max_over_noise": 0.0, "rms_over_noise": 0.0, "noise_min": np.inf}
    for im in images:
        exact = normalizer(im).astype(np.float64)
        error = np.abs(exact.astype(np.float16).astype(np.float64) - exact)
        # noise: pixel-to-pixel differences / sqrt 2 (an upper bound: real edges count too)
        noise = np.sqrt(np.nanmean(np.diff(exact, axis=2) ** 2, axis=(1, 2)) / 2)
        live = noise > 0
        max_err, rms_err = np.nanmax(error, axis=(1, 2)), np.sqrt(np.nanmean(error**2, axis=(1, 2)))
        worst["max_abs"] = max(worst["max_abs"], float(max_err.max()))
        worst["rms_abs"] = max(worst["rms_abs"], float(rms_err.max()))
        worst["max_over_noise"] = max(worst["max_over_noise"], float((max_err[live] / noise[live]).max()))
        worst["rms_over_noise"] = max(worst["rms_over_noise"], float((rms_err[live] / noise[live]).max()))
        worst["noise_min"] = min(worst["noise_min"], float(noise[live].min()))
    return worst


def run_f16(size: int, channels: int) -> None:
    from napari_imc_vae.datasets import synthetic_tissue
    from napari_imc_vae.io import read_imc
    from napari_imc_vae.preprocessing import DEFAULT_NORMALIZATION, Normalizer

    sets = []
    if REAL_ROIS.is_dir():
        sets.append(("real ROIs (steinbock_img, 15 × 5 ch)", [read_imc(f) for f in sorted(REAL_ROIS.glob("*.ome.tiff"))]))
    sets.append((f"synthetic {size}² × {channels}", [synthetic_tissue((size, size), channels, seed=0)]))
    for name, images in sets:
        normalizer = Normalizer.fit(images, **DEFAULT_NORMALIZATION.to_dict())
        w = float16_error(images, normalizer)
        print(f"{name}: float16 max error {w['max_abs']:.2e}, RMS {w['rms_abs']:.2e} (normalized units); "
              f"over the channel noise: max {w['max_over_noise']:.2e}, RMS {w['rms_over_noise']:.2e} "
              f"(smallest channel noise {w['noise_min']:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--channels", type=int, default=40)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--ram-images", type=int, default=3, help="subset trained both ways (0: skip)")
    parser.add_argument("--cohort-sizes", type=int, nargs="*", help="image counts for the cohort path (default: --images)")
    parser.add_argument("--pool-mb", type=float, nargs="*", default=[256.0], help="pool sizes for the cohort path")
    parser.add_argument("--f16-error", action="store_true", help="only measure the float16 cache's error")
    args = parser.parse_args()
    if args.f16_error:
        run_f16(args.size, args.channels)
        return
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-cohort-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        paths = write_cohort(tmp / "cohort", args.images, args.size, args.channels)
        gb = sum(p.stat().st_size for p in paths) / 1e9
        print(f"wrote {len(paths)} × {args.size}² × {args.channels} OME-TIFFs ({gb:.2f} GB) in "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        cache_env = {"NAPARI_IMC_VAE_CACHE_DIR": str(tmp)}
        for n in args.cohort_sizes or [args.images]:
            for pool in args.pool_mb:
                env = {**cache_env, "NAPARI_IMC_VAE_IN_MEMORY_MB": "0", "NAPARI_IMC_VAE_POOL_MB": str(pool)}
                targets = [tmp / "cohort"] if n >= len(paths) else paths[:n]  # the folder, as users pass it
                r = train_child(targets, tmp / "m.pt", args.steps, env, args.batch)
                print(f"cohort path, {n:3d} images, pool {pool:5.0f} MB: peak RSS {r['peak_rss_mb']:7.0f} MB, "
                      f"{r['patches_per_s']:8.0f} patches/s, wall {r['wall_s']:6.1f} s "
                      f"(training {r['train_s']:.1f} s)", flush=True)
        if args.ram_images:
            subset = paths[: args.ram_images]
            ram = train_child(subset, tmp / "m.pt", args.steps,
                              {**cache_env, "NAPARI_IMC_VAE_IN_MEMORY_MB": "1000000"}, args.batch)
            pooled = train_child(subset, tmp / "m.pt", args.steps,
                                 {**cache_env, "NAPARI_IMC_VAE_IN_MEMORY_MB": "0"}, args.batch)
            for name, r in (("in-RAM path", ram), ("cohort path", pooled)):
                print(f"{name}, {len(subset):3d} images: peak RSS {r['peak_rss_mb']:7.0f} MB, "
                      f"{r['patches_per_s']:8.0f} patches/s, wall {r['wall_s']:6.1f} s "
                      f"(training {r['train_s']:.1f} s)", flush=True)
            print(f"throughput cohort / in-RAM on the same {len(subset)} images: "
                  f"{pooled['patches_per_s'] / ram['patches_per_s']:.2f}")
        leftovers = list(tmp.glob("napari-imc-vae-cache-*"))
        print(f"cache folders left behind: {len(leftovers)}")


if __name__ == "__main__":
    main()
