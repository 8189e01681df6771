"""Time and peak memory of whole-image reconstruction (DESIGN §5, issue 3 speed targets).

    python bench/bench_reconstruct.py                  # 1024² and 4096², 40 channels
    python bench/bench_reconstruct.py --sizes 1024 --model mlp --threads 2

Each size runs in a fresh subprocess so its peak RSS is its own. Images of 2048² px
and more are np.memmaps on disk (input written by the parent process beforehand,
outputs via ``memmap_outputs``), so RAM stays bounded by a band of tiles.

Peak memory is reported two ways:
- ``ru_maxrss``: the kernel's peak resident set, which counts file-backed pages of
  the memmaps that happen to be resident (page cache the kernel can drop at will);
- ``peak anon``: the peak of RssAnon (sampled every 20 ms from /proc/self/status):
  the memory the process really needs — numpy/torch buffers, the model, Python.
(tracemalloc is not used: tracing every allocation slowed the run 3–4×.)
Targets (issue 3): ≤ 20 s for 1024²×40 on 2 CPU cores; ≤ 3 GB RAM for 4096²×40.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

CHANNELS = 40


class StandInMLP(nn.Module):
    """Cost stand-in: flatten 40·8·8 → 512 → 512 → 32 → 512 → 2560 (≈ 5.8 MFLOP per tile)."""

    def __init__(self, channels: int = CHANNELS, patch_size: int = 8, latent_dim: int = 32):
        super().__init__()
        self.config = SimpleNamespace(in_channels=channels, patch_size=patch_size, latent_dim=latent_dim)
        f = channels * patch_size * patch_size
        self.enc = nn.Sequential(nn.Linear(f, 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(), nn.Linear(512, latent_dim))
        self.dec = nn.Sequential(nn.Linear(latent_dim, 512), nn.GELU(), nn.Linear(512, f))

    @torch.no_grad()
    def reconstruct(self, x):
        mu = self.enc(x.flatten(1))
        return self.dec(mu).view_as(x), mu


def _model(kind: str):
    if kind == "mlp":
        return StandInMLP()
    from napari_imc_vae.engine.model.vae import ModelConfig, PatchVAE

    return PatchVAE(ModelConfig(in_channels=CHANNELS))


def _anon_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def _write_input(path: str, size: int, seed: int = 0) -> None:
    """Raw-like counts (Poisson, some channels empty), written band by band."""
    rng = np.random.default_rng(seed)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(CHANNELS, size, size))
    rates = rng.gamma(0.5, 4.0, size=CHANNELS).astype(np.float32)
    rates[:3] = 0
    for y0 in range(0, size, 256):
        y1 = min(size, y0 + 256)
        mm[:, y0:y1] = rng.poisson(rates[:, None, None], size=(CHANNELS, y1 - y0, size))
    mm.flush()
    del mm


def child(args) -> dict:
    from napari_imc_vae.engine.apply.inference import reconstruct_image
    from napari_imc_vae.engine.apply.reconstruction_outputs import memmap_outputs
    from napari_imc_vae.preprocessing import Normalizer

    torch.set_num_threads(args.threads)
    peak = {"anon": _anon_kb()}
    stop = threading.Event()

    def sample():
        while not stop.wait(0.02):
            peak["anon"] = max(peak["anon"], _anon_kb())

    image = np.load(args.input, mmap_mode="r") if args.input else None
    if image is None:
        rng = np.random.default_rng(0)
        rates = rng.gamma(0.5, 4.0, size=CHANNELS).astype(np.float32)
        image = rng.poisson(rates[:, None, None], size=(CHANNELS, args.size, args.size)).astype(np.float32)
    crop = np.asarray(image[:, :512, :512])
    norm = Normalizer.fit(crop, hot_pixel_threshold=50, arcsinh_cofactor=5)
    model = _model(args.model).eval()
    out = memmap_outputs(args.outdir, image.shape, model) if args.outdir else None
    ticks = []
    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    rec = reconstruct_image(model, image, norm, batch_size=args.batch, out=out,
                            on_progress=lambda d, t: ticks.append((d, t)))
    wall = time.perf_counter() - t0
    stop.set()
    n_tiles = ticks[-1][1]
    assert ticks[-1][0] == n_tiles and np.isfinite(rec.error[: min(64, args.size)]).all()
    return {"size": args.size, "channels": CHANNELS, "model": args.model, "threads": args.threads,
            "batch": args.batch, "tiles": n_tiles, "seconds": round(wall, 2),
            "tiles_per_s": round(n_tiles / wall), "memmap": bool(args.outdir),
            "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "peak_anon_mb": round(peak["anon"] / 1024)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--model", choices=["patchvae", "mlp"], default="patchvae")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--memmap-from", type=int, default=2048, help="use memmaps from this size on")
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--outdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.size is not None:
        print(json.dumps(child(args)))
        return
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs visible, {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.1f} (the machine is shared: timings vary)")
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--size", str(size), "--model", args.model,
               "--threads", str(args.threads), "--batch", str(args.batch)]
        with tempfile.TemporaryDirectory(prefix="bench_recon_") as tmp:
            if size >= args.memmap_from:
                t0 = time.perf_counter()
                _write_input(os.path.join(tmp, "input.npy"), size)
                print(f"  wrote {size}² input memmap in {time.perf_counter() - t0:.0f} s")
                cmd += ["--input", os.path.join(tmp, "input.npy"), "--outdir", tmp]
            res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            print(res.stderr[-3000:])
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"{size}²×{CHANNELS} ({r['model']}, {r['tiles']} tiles, batch {r['batch']}, "
              f"{'memmaps' if r['memmap'] else 'in RAM'}): {r['seconds']} s, {r['tiles_per_s']} tiles/s; "
              f"peak anon {r['peak_anon_mb']} MB, ru_maxrss {r['ru_maxrss_mb']} MB")
        print("  " + json.dumps(r))


if __name__ == "__main__":
    main()
