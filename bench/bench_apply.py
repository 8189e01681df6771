"""The whole ``napari-imc-vae reconstruct`` against the model's own forward pass (issue 9 speed).

    python bench/bench_apply.py                    # 1024×1024×40, default model, 3 repeats
    python bench/bench_apply.py --size 256 --repeats 1

Writes a 1024²×40 OME-TIFF (Poisson counts over a smooth synthetic tissue) and a model
file (default architecture, a few training steps: speed does not depend on the weights;
its stored baseline is fitted as at the end of any training), then, back to back and
``--repeats`` times:

- ``forward``: the model's own forward pass (``model.reconstruct``) over every tile of the
  image at the default stride, batches of 2048, in a fresh process (imports excluded), in
  fp32 and at the precision ``auto`` picks (bf16 on CPUs with native bf16);
- ``reconstruct``: the whole command, ``napari-imc-vae reconstruct MODEL IMAGE -o OUT``, in a
  fresh process, timed from the outside (process start, imports, reading, reconstruction,
  quality report, motifs, writing every output); its peak RSS is the child's ``ru_maxrss``.

The figure that counts is the ratio reconstruct / fp32 forward measured in the same run
(target ≤ 2×, peak RSS ≤ 2 GB); the ratio to the forward at the command's own precision is
printed too, since bf16 inference (where native) is one of the levers. The machine, CPU capability and matmul rate are printed so
figures from different machines can be compared as ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

CHANNELS = 40

_FORWARD = r"""
import sys, time, json, torch
import napari_imc_vae  # its thread policy (passive OpenMP waiting) applies, as in the CLI
from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
from napari_imc_vae.engine.device import resolve_precision
from napari_imc_vae.engine.apply.tiling import TileGrid
trained = TrainedModel.load(sys.argv[1])
model = trained.model.eval()
size = int(sys.argv[2])
grid = TileGrid.create((size, size), model.config.patch_size)
x = torch.randn(2048, model.config.in_channels, model.config.patch_size, model.config.patch_size)
out = {"tiles": grid.total}
for name, bf16 in (("fp32", False), ("auto", resolve_precision("auto", torch.device("cpu")))):
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model.reconstruct(x)  # warm-up
        t = time.perf_counter()
        for b in range(0, grid.total, 2048):
            model.reconstruct(x[: min(2048, grid.total - b)])
        out[name] = time.perf_counter() - t
    out["auto_is"] = "bf16" if bf16 else "fp32"
print(json.dumps(out))
"""


def _matmul_gflops(seconds: float = 1.0) -> float:
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        a @ b
        n += 1
    return 2 * 1024**3 * n / (time.perf_counter() - t) / 1e9


def _cpu() -> str:
    import torch

    name = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} cores, capability {torch.backends.cpu.get_cpu_capability()}"


def _prepare(folder: str, size: int) -> tuple[str, str]:
    import tifffile

    from napari_imc_vae.datasets import synthetic_tissue
    from napari_imc_vae.engine.training.trainer import TrainConfig
    from napari_imc_vae.engine.training.run import TrainingRun
    from napari_imc_vae.io import read_imc

    tissue = synthetic_tissue(shape=(size, size), n_channels=CHANNELS, seed=0)
    names = [f"{m}_{n}" for m, n in zip(tissue.metals, tissue.channel_names)]
    image_path = os.path.join(folder, "tissue.ome.tiff")
    tifffile.imwrite(image_path, tissue.data.astype(np.float32), photometric="minisblack",
                     metadata={"axes": "CYX", "Channel": {"Name": names}, "PhysicalSizeX": 1.0,
                               "PhysicalSizeY": 1.0})
    image = read_imc(image_path)
    trained, _ = TrainingRun([image], train_config=TrainConfig(steps=20, batch_size=256, device="cpu")).run()
    model_path = os.path.join(folder, "model.pt")
    trained.save(model_path)
    return image_path, model_path


def _child(argv: list[str]) -> tuple[float, float, str]:
    """Run a child process; its wall time (s), peak RSS (GB) and stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024**2, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels (default 1024)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch

    print(f"machine: {_cpu()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"fp32 matmul: {_matmul_gflops():.0f} GFLOP/s")
    with tempfile.TemporaryDirectory() as folder:
        image, model = _prepare(folder, args.size)
        exe = [sys.executable, "-m", "napari_imc_vae", "reconstruct", model, image, "-o",
               os.path.join(folder, "out")]
        rows = []
        for r in range(args.repeats):
            _, _, out = _child([sys.executable, "-c", _FORWARD, model, str(args.size)])
            fwd = json.loads(out)
            wall, peak, _ = _child(exe)
            # the children's peak is cumulative over children: the reconstruct child dominates
            rows.append((fwd["fp32"], fwd["auto"], wall, peak))
            print(f"run {r + 1}: forward over {fwd['tiles']:,} tiles: fp32 {fwd['fp32']:.2f} s, "
                  f"at the command's precision (auto = {fwd['auto_is']}) {fwd['auto']:.2f} s; "
                  f"reconstruct (whole command, precision auto) {wall:.2f} s = {wall / fwd['fp32']:.2f}x "
                  f"the fp32 forward, {wall / fwd['auto']:.2f}x the forward at its own precision; "
                  f"peak RSS {peak:.2f} GB")
        for label, col in (("fp32 forward", 0), ("forward at the command's precision", 1)):
            ratios = [row[2] / row[col] for row in rows]
            print(f"{args.size}x{args.size}x{CHANNELS}: reconstruct / {label} = {min(ratios):.2f}-"
                  f"{max(ratios):.2f}x (median {float(np.median(ratios)):.2f})")
        print(f"peak RSS {max(row[3] for row in rows):.2f} GB")

if __name__ == "__main__":
    main()
