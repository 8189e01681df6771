"""Longest main-thread stall over the whole flow: Normalize → Train VAE → Reconstruct (target ≤ 100 ms).

Opens napari as the launcher does (the three docks tabified, window 1920 × 1080) on the synthetic
sample (32 channels, 256 × 256 px) or an image given with ``--image``, then normalizes, trains
(exact steps, then the quality report) and reconstructs, adding every layer, and waits
``--settle`` seconds for napari to draw them. A 5 ms QTimer records the gaps between ticks on the
main thread: a long gap means the GUI froze. A sampler thread records the main thread's Python
stack every few ms, so each long gap is printed with where the main thread was. Needs a display::

    xvfb-run -a -s "-screen 0 1920x1080x24" python bench/bench_gui_stall.py [--steps 200] [--activity]
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time

import napari_imc_vae  # noqa: F401 - first, as napari imports it: passive OpenMP waiting
import numpy as np

#: Stalls longer than this are listed with the main thread's stack (ms).
LONG_GAP_MS = 50.0


class MainThreadSampler:
    """Samples the main thread's stack every ``period_s`` in a helper thread.

    A sample is ``(time, frames)``, frames innermost first as ``"function (file:line)"``. The
    samples land while the main thread lets the GIL go (Python code switches every 5 ms); a
    C call that holds the GIL shows up as the frame that called it.
    """

    def __init__(self, period_s: float = 0.003) -> None:
        self.period_s = period_s
        self.samples: list[tuple[float, tuple[str, ...]]] = []
        self._stop = threading.Event()
        self._main = threading.main_thread().ident
        self._thread = threading.Thread(target=self._run, name="stall-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            frame = sys._current_frames().get(self._main)
            frames = []
            while frame is not None and len(frames) < 40:
                code = frame.f_code
                frames.append(f"{code.co_name} ({code.co_filename.rsplit('/', 2)[-2:][-1]}:{frame.f_lineno})")
                frame = frame.f_back
            self.samples.append((time.perf_counter(), tuple(frames)))
            time.sleep(self.period_s)

    def where(self, start: float, end: float, depth: int = 6) -> list[tuple[int, str]]:
        """The most frequent stacks (``depth`` innermost frames) sampled between ``start`` and ``end``."""
        counts = collections.Counter(
            " < ".join(frames[:depth]) for t, frames in self.samples if start <= t <= end)
        return counts.most_common(3)


def wait_for(signal, start, timeout_s: float = 900.0):
    """Call ``start()``, run the event loop until ``signal`` fires; its argument (None: failed)."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop, got = QEventLoop(), []
    signal.connect(lambda value=None: (got.append(value), loop.quit()))
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    if start() is None:
        return None
    if not got:
        loop.exec()
    return got[0] if got else None


def spin(seconds: float) -> None:
    """Run the event loop for ``seconds`` (napari draws what was added)."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="an IMC file (default: the synthetic sample)")
    parser.add_argument("--steps", type=int, default=200, help="exact training steps (200)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--activity", action="store_true",
                        help="also show training progress in napari's activity dock")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds of event loop after the last stage (napari draws the layers)")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtCore import QTimer

    from napari_imc_vae._napari.launch import PLUGIN, WIDGETS
    from napari_imc_vae._napari.train_form import EXACT_STEPS

    t_open = time.perf_counter()
    viewer = napari.Viewer(title="bench: GUI stall over the whole flow")
    viewer.window.resize(1920, 1080)
    if args.image:
        viewer.open(args.image, plugin=PLUGIN)
    else:
        viewer.open_sample(PLUGIN, "synthetic_tissue")
    docks = {}
    for name in WIDGETS:
        _, docks[name] = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=bool(docks))
    norm, train, recon = (docks[name] for name in WIDGETS)
    spin(2.0)  # the first draw and the first estimate's timing are not part of the flow
    print(f"napari, the image and the docks: {time.perf_counter() - t_open:.1f} s")

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    sampler = MainThreadSampler()
    stages: list[tuple[str, float, float]] = []

    def stage(name: str, start, signal) -> object:
        t0 = time.perf_counter()
        value = wait_for(signal, start)
        stages.append((name, t0, time.perf_counter()))
        return value

    sampler.start()
    timer.start()
    failed = None
    if stage("normalize", norm.normalize, norm.finished) is None:
        failed = "normalize"
    else:
        f = train.form
        f.budget.value = EXACT_STEPS
        f.steps.value, f.batch.value = args.steps, args.batch
        train.activity.setChecked(args.activity)
        outcome = stage("train + quality report", train.train, train.finished)
        if outcome is None:
            failed = "train"
        elif stage("reconstruct + layers", recon.reconstruct, recon.finished) is None:
            failed = "reconstruct"
    t0 = time.perf_counter()
    spin(args.settle)
    stages.append(("napari draws the new layers", t0, time.perf_counter()))
    timer.stop()
    sampler.stop()
    if failed:
        print(f"{failed} failed", file=sys.stderr)

    t = np.asarray(ticks)
    gaps = np.diff(t) * 1000.0
    print(f"{len(viewer.layers)} layers at the end; activity dock progress {'on' if args.activity else 'off'}")
    print(f"{'stage':32} {'s':>6} {'median ms':>10} {'p99 ms':>8} {'max ms':>8}")
    for name, start, end in stages:
        inside = gaps[(t[1:] >= start) & (t[:-1] <= end)]
        if inside.size:
            print(f"{name:32} {end - start:6.1f} {np.median(inside):10.1f} "
                  f"{np.percentile(inside, 99):8.1f} {inside.max():8.1f}")
    worst = float(gaps.max()) if gaps.size else float("nan")
    print(f"longest main-thread stall over the flow: {worst:.0f} ms (target ≤ 100 ms)")
    for i in np.argsort(gaps)[::-1][:8]:
        if gaps[i] < LONG_GAP_MS:
            break
        where = next((name for name, s, e in stages if s <= t[i] <= e), "?")
        print(f"- {gaps[i]:.0f} ms at {t[i] - stages[0][1]:.2f} s ({where}):")
        for stack, n in sampler.where(t[i], t[i + 1]):
            print(f"    {n:3d} samples  {stack}")
    viewer.close()
    return 0 if not failed and worst <= 100 else 2


if __name__ == "__main__":
    raise SystemExit(main())
