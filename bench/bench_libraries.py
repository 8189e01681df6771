"""Our own code against a well-kept library doing the same job (issue 19 item 5): speed and agreement.

    python bench/bench_libraries.py [--repeats 5]

- randomized PCA: ``baselines._randomized_components`` vs ``torch.svd_lowrank`` (same oversampling and
  power iterations, mean passed as ``M``) vs scikit-learn's ``PCA(svd_solver="randomized")``; accuracy
  as the variance the k components capture, relative to the exact top-k;
- the 8-neighbour maximum of the hot-pixel filter: ``transforms._neighbour_max`` vs
  ``scipy.ndimage.maximum_filter`` (footprint without its centre, mirror mode, NaN as -inf);
- NaN-aware Gaussian smoothing: the package's own separable convolution (kept here as
  :func:`own_smooth`) vs ``smoothing.gaussian_smooth``, which is ``scipy.ndimage.gaussian_filter``
  as a normalized convolution since this benchmark;
- the CLI's progress bar: ``cli._progress.ProgressBar.update`` vs ``tqdm.update``, per call.

Prints one line per comparison (best of ``--repeats``); figures go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import time

import numpy as np
import torch


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def captured(x: torch.Tensor, mean: torch.Tensor, comps: torch.Tensor) -> float:
    """Variance of the centred data inside the span of ``comps`` (k, F)."""
    q = torch.linalg.qr(comps.double().T).Q
    return float((((x.double() - mean.double()) @ q) ** 2).sum())


def bench_pca(repeats: int) -> None:
    from sklearn.decomposition import PCA

    from napari_imc_vae.engine.quality.baselines import _OVERSAMPLE, _POWER_ITERATIONS, _exact_components, _randomized_components

    gen = torch.Generator().manual_seed(0)
    for n, c, k in ((8192, 5, 16), (8192, 40, 16), (8192, 40, 64)):
        f = c * 64
        # low-rank structure plus noise, as image patches have
        x = (torch.randn(n, 24, generator=gen) @ torch.randn(24, f, generator=gen)
             + 0.5 * torch.randn(n, f, generator=gen)).float()
        mean = x.mean(0)
        exact = captured(x, mean, _exact_components((x - mean).double(), k).float())
        ours = _randomized_components(x, mean, k)
        _, _, v = torch.svd_lowrank(x, q=k + _OVERSAMPLE, niter=_POWER_ITERATIONS, M=mean.expand_as(x))
        sk = PCA(k, svd_solver="randomized", random_state=0).fit(x.numpy())
        t_ours = best(lambda: _randomized_components(x, mean, k), repeats)
        t_torch = best(lambda: torch.svd_lowrank(x, q=k + _OVERSAMPLE, niter=_POWER_ITERATIONS,
                                                 M=mean.expand_as(x)), repeats)
        t_sk = best(lambda: PCA(k, svd_solver="randomized", random_state=0).fit(x.numpy()), repeats)
        print(f"PCA {n}x{f} k={k}: ours {t_ours * 1e3:.0f} ms ({captured(x, mean, ours) / exact:.6f} of exact), "
              f"torch.svd_lowrank {t_torch * 1e3:.0f} ms ({captured(x, mean, v[:, :k].T) / exact:.6f}), "
              f"sklearn randomized {t_sk * 1e3:.0f} ms "
              f"({captured(x, mean, torch.as_tensor(sk.components_)) / exact:.6f})", flush=True)


def scipy_neighbour_max(channel: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    footprint = np.ones((3, 3), bool)
    footprint[1, 1] = False
    filled = np.where(np.isnan(channel), -np.inf, channel)  # NaN neighbours ignored, as fmax does
    return ndimage.maximum_filter(filled, footprint=footprint, mode="mirror")


def bench_neighbour_max(repeats: int) -> None:
    from napari_imc_vae.preprocessing.transforms import _neighbour_max

    rng = np.random.default_rng(0)
    image = rng.poisson(3.0, (40, 1000, 1000)).astype(np.float32)
    image[0, 5, 5] = np.nan
    ours = np.stack([_neighbour_max(ch) for ch in image])
    theirs = np.stack([scipy_neighbour_max(ch) for ch in image])
    same = np.array_equal(ours, theirs)
    t_ours = best(lambda: [_neighbour_max(ch) for ch in image], repeats)
    t_scipy = best(lambda: [scipy_neighbour_max(ch) for ch in image], repeats)
    print(f"neighbour max 40x1000x1000: ours {t_ours:.2f} s, scipy.ndimage.maximum_filter {t_scipy:.2f} s, "
          f"identical: {same}", flush=True)


def own_smooth(x: np.ndarray, sigma: float = 1.0, dtype=torch.float64) -> np.ndarray:
    """The package's own NaN-aware separable convolution (torch), as it was before scipy replaced it."""
    from napari_imc_vae.engine.quality.smoothing import smoothing_radius
    from napari_imc_vae.engine.apply.tiling import reflect_index

    t = torch.as_tensor(x).to(dtype)
    r = smoothing_radius(sigma)
    w = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / sigma) ** 2)
    weights = (w / w.sum()).tolist()
    valid = torch.isfinite(t)
    num, den = torch.where(valid, t, 0.0), valid.to(dtype)
    for axis in (t.ndim - 2, t.ndim - 1):
        n = t.shape[axis]
        index = torch.from_numpy(reflect_index(np.arange(-r, n + r), n))
        out = []
        for a in (num, den):
            padded = a.index_select(axis, index)
            acc = padded.narrow(axis, 0, n) * weights[0]
            for i in range(1, len(weights)):
                acc.add_(padded.narrow(axis, i, n), alpha=weights[i])
            out.append(acc)
        num, den = out
    return torch.where(valid, num / den.clamp(min=torch.finfo(dtype).tiny), torch.nan).float().numpy()


def bench_smoothing(repeats: int) -> None:
    from napari_imc_vae.engine.quality.smoothing import gaussian_smooth  # scipy.ndimage since issue 19

    rng = np.random.default_rng(0)
    for name, shape in (("image 40x1000x1000", (40, 1000, 1000)), ("patches 8192x40x8x8", (8192, 40, 8, 8))):
        x = rng.standard_normal(shape).astype(np.float32)
        x.reshape(-1)[:: 997] = np.nan
        line = []
        for label, dtype in (("fp32", torch.float32), ("fp64", torch.float64)):
            diff = float(np.nanmax(np.abs(own_smooth(x, dtype=dtype) - gaussian_smooth(x, dtype=dtype))))
            t_own = best(lambda: own_smooth(x, dtype=dtype), repeats)
            t_scipy = best(lambda: gaussian_smooth(x, dtype=dtype), repeats)
            line.append(f"{label}: own {t_own:.2f} s, scipy.ndimage {t_scipy:.2f} s, max |difference| {diff:.1e}")
        print(f"NaN-aware Gaussian σ=1, {name}: " + "; ".join(line), flush=True)


def bench_progress(updates: int = 100_000) -> None:
    import contextlib

    from tqdm import tqdm

    from napari_imc_vae.cli._progress import ProgressBar

    sink = io.StringIO()
    with contextlib.redirect_stderr(sink):
        bar = ProgressBar("train")
        start = time.perf_counter()
        for i in range(updates):
            bar.update(i + 1, updates, "loss 1.0000 1,000 patches/s")
        ours = time.perf_counter() - start
        bar.close()
        t = tqdm(total=updates, desc="train", file=sink, mininterval=0.2)
        start = time.perf_counter()
        for _ in range(updates):
            t.update(1)
            t.set_postfix_str("loss 1.0000 1,000 patches/s", refresh=False)
        theirs = time.perf_counter() - start
        t.close()
    print(f"progress bar, {updates:,} updates: ours {ours / updates * 1e6:.2f} µs/update, "
          f"tqdm {theirs / updates * 1e6:.2f} µs/update", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    bench_pca(args.repeats)
    bench_neighbour_max(args.repeats)
    bench_smoothing(args.repeats)
    bench_progress()
    print(f"load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
