"""Cohort QC memory and time: ``napari-imc-vae qc`` over a cohort larger than RAM would like.

Writes ``--images`` synthetic OME-TIFFs with ``bench_cohort.py``'s generator (D4 views of
``synthetic_tissue``, float32, ``--size``² × ``--channels``), trains a small model in this
process on a 256² crop of the same tissue (``--steps``), then runs the command line in child
processes and reads each child's peak RSS (``os.wait4``'s ``ru_maxrss``):

1. ``reconstruct`` of one image: the memory one image takes;
2. ``qc`` of the whole cohort: should stay near (1), whatever the number of images
   (issue #20: 12 × 1024² × 40 at most 1.5 GB);
3. ``qc`` again on the same output: every image is done, nothing is recomputed.

Full run (≈ 2 GB of input and 4 GB of outputs in a temporary folder):

    python bench/bench_qc.py --images 12 --size 1024 --channels 40

Proof at small size:

    python bench/bench_qc.py --images 3 --size 256 --channels 40
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cohort import write_cohort  # noqa: E402  (bench/ is not a package)


def child(args: list[str]) -> dict:
    """``napari-imc-vae ARGS`` in a child process: peak RSS (MB), wall time (s) and its output."""
    cmd = [sys.executable, "-m", "napari_imc_vae", *args]
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{text[-3000:]}")
    return {"peak_rss_mb": usage.ru_maxrss / 1024, "wall_s": wall, "text": text}


def train_small(path: Path, size: int, channels: int, steps: int) -> None:
    import torch

    from napari_imc_vae.datasets import synthetic_tissue
    from napari_imc_vae.engine.training.trainer import TrainConfig
    from napari_imc_vae.engine.training.run import TrainingRun

    torch.manual_seed(0)
    crop = synthetic_tissue((min(size, 256), min(size, 256)), channels, seed=0)
    trained, _ = TrainingRun([crop], model_config={"latent_dim": 16, "width": 128, "depth": 1},
                             train_config=TrainConfig(steps=steps, batch_size=128, device="cpu", seed=0)).run()
    trained.save(path)


def timed(what: str, fn, *args):
    """``fn(*args)``, printing ``what`` and how long it took."""
    start = time.perf_counter()
    result = fn(*args)
    print(f"{what} in {time.perf_counter() - start:.0f} s", flush=True)
    return result


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--channels", type=int, default=40)
    parser.add_argument("--steps", type=int, default=200, help="training steps of the small model")
    args = parser.parse_args()
    print("{}; {} CPUs; load average {:.2f} {:.2f} {:.2f}".format(cpu_model(), os.cpu_count(), *os.getloadavg()),
          flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-qc-") as tmp:
        tmp = Path(tmp)
        paths = timed(f"wrote {args.images} × {args.size}² × {args.channels} OME-TIFFs",
                      write_cohort, tmp / "cohort", args.images, args.size, args.channels)
        model = tmp / "m.pt"
        timed(f"trained a small model ({args.steps} steps)", train_small, model, args.size, args.channels, args.steps)

        one = child(["reconstruct", str(model), str(paths[0]), "-o", str(tmp / "one"), "--device", "cpu"])
        print(f"reconstruct, 1 image:  peak RSS {one['peak_rss_mb']:6.0f} MB, wall {one['wall_s']:6.1f} s", flush=True)
        qc = child(["qc", str(model), str(tmp / "cohort"), "-o", str(tmp / "qc"), "--device", "cpu"])
        n = len(paths)
        print(f"qc, {n} images:       peak RSS {qc['peak_rss_mb']:6.0f} MB, wall {qc['wall_s']:6.1f} s "
              f"({qc['wall_s'] / n:.1f} s per image)", flush=True)
        again = child(["qc", str(model), str(tmp / "cohort"), "-o", str(tmp / "qc"), "--device", "cpu"])
        kept = again["text"].count("done in an earlier run")
        print(f"qc again (resume):     peak RSS {again['peak_rss_mb']:6.0f} MB, wall {again['wall_s']:6.1f} s, "
              f"{kept} of {n} images kept", flush=True)
        r2 = [json.loads((tmp / folder / f"{paths[0].name[:-9]}_quality.json").read_text())["report"]["model"]["r2"]
              for folder in ("one", "qc")]
        print(f"R² of image 0: {r2[0]:.4f} on reconstruct's 8,192 patches, {r2[1]:.4f} on qc's 2,048 "
              f"(difference {r2[1] - r2[0]:+.4f})")
        summary = next((line for line in qc["text"].splitlines() if line.startswith("- Worst ROIs")), "")
        print(summary)
        out_gb = sum(p.stat().st_size for p in (tmp / "qc").iterdir() if p.is_file()) / 1e9
        print(f"qc outputs: {out_gb:.2f} GB")


if __name__ == "__main__":
    main()
