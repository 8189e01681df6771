"""Time of the quality report next to the model's own forward pass (issue 9, speed).

    python bench/bench_quality.py                          # 8,192 patches, 40 channels, 8×8
    python bench/bench_quality.py --patches 1024 --repeat 1 --width 64   # quick check

Measures, in one process and one run:

- ``forward``: ``model.reconstruct`` over the quality patches (batches of 512);
- ``forward_65536``: the same model over 65,536 patches, as many as the tiles of a
  1024×1024 image at stride 4 (measured on ``--tiles`` patches and scaled linearly);
- ``evaluate_train``: :func:`evaluate` with training patches given (PCA fitted there);
- ``evaluate_stored``: :func:`evaluate` with a fitted :class:`PCABaseline` passed in and the
  smoothed target given (cut from the smoothed image), as ``reconstruct`` calls it;
- ``evaluate_none``: no baseline at all (each patch smoothed on its own).

Patches are smooth random fields (a Gaussian-smoothed normal image cut into patches),
``--nan`` of them touched by a NaN pixel. Figures are medians over ``--repeat`` runs; quote
ratios, not seconds, across machines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch


def _patches(n: int, channels: int, p: int, seed: int) -> np.ndarray:
    from napari_imc_vae.engine.quality.evaluate import gaussian_smooth

    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n))) * p
    image = gaussian_smooth(rng.normal(size=(channels, side, side)).astype(np.float32), 1.5, dtype=torch.float32)
    tiles = image.reshape(channels, side // p, p, side // p, p).transpose(1, 3, 0, 2, 4).reshape(-1, channels, p, p)
    return np.ascontiguousarray(tiles[:n] * 3)


def _time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=8192)
    parser.add_argument("--channels", type=int, default=40)
    parser.add_argument("--patch-size", type=int, default=8)
    parser.add_argument("--width", type=int, default=512, help="model width (512 = the default model)")
    parser.add_argument("--tiles", type=int, default=8192, help="patches the 65,536-tile forward is timed on")
    parser.add_argument("--nan", type=int, default=3, help="patches given a NaN pixel")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from napari_imc_vae.engine.quality.baselines import PCABaseline
    from napari_imc_vae.engine.model.vae import ModelConfig, PatchVAE
    from napari_imc_vae.engine.quality.evaluate import evaluate, gaussian_smooth

    torch.manual_seed(0)
    model = PatchVAE(ModelConfig(in_channels=args.channels, patch_size=args.patch_size, width=args.width)).eval()
    val = _patches(args.patches, args.channels, args.patch_size, 1)
    train = _patches(args.patches, args.channels, args.patch_size, 2)
    val[: args.nan, 0, 0, 0] = np.nan
    tiles = torch.from_numpy(_patches(args.tiles, args.channels, args.patch_size, 3))
    xv = torch.from_numpy(np.nan_to_num(val))

    @torch.no_grad()
    def forward(x):
        for chunk in x.split(512):
            model.reconstruct(chunk)

    baseline = PCABaseline.fit(train, model.config.latent_dim)
    out = {"patches": args.patches, "channels": args.channels, "patch_size": args.patch_size,
           "width": args.width, "threads": torch.get_num_threads()}
    out["forward"] = _time(lambda: forward(xv), args.repeat)
    out["forward_65536"] = _time(lambda: forward(tiles), args.repeat) * 65536 / args.tiles
    out["pca_fit"] = _time(lambda: PCABaseline.fit(train, model.config.latent_dim), args.repeat)
    out["evaluate_train"] = _time(lambda: evaluate(model, val, train), args.repeat)
    smooth = gaussian_smooth(val, dtype=torch.float32)
    try:  # the keyword interface (issue 9); older code knows only evaluate(model, val, train)
        out["evaluate_stored"] = _time(lambda: evaluate(model, val, baseline=baseline, smooth_target=smooth),
                                       args.repeat)
        out["evaluate_none"] = _time(lambda: evaluate(model, val), args.repeat)
    except TypeError:
        pass
    for key in ("evaluate_train", "evaluate_stored", "evaluate_none"):
        if key in out:
            out[f"{key}_per_forward"] = out[key] / out["forward"]
            out[f"{key}_per_forward_65536"] = out[key] / out["forward_65536"]
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}, indent=1))
    return out


if __name__ == "__main__":
    main()
