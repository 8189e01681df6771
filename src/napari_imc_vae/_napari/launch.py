"""Open napari with an IMC image and the plugin's three widgets docked.

::

    python -m napari_imc_vae._napari.launch [PATH]           # the synthetic sample without PATH
    xvfb-run -a python -m napari_imc_vae._napari.launch --headless-demo OUT.png

``--headless-demo`` runs the whole flow without a person (normalize, train the default
model, reconstruct), saves a screenshot of the whole window as the widgets leave it (their
default view after Reconstruct: the comparison of the best and worst explained markers),
prints how long each stage took and how much of the window the canvas has, and exits 0;
under Xvfb it needs no display. ``docs/overlay.png`` is made this way::

    xvfb-run -a -s "-screen 0 1920x1080x24" python -m napari_imc_vae._napari.launch \
        --headless-demo docs/overlay.png ../shared/data/imc-testdata/steinbock_img/20210305_NE_mockData5_003.ome.tiff
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

PLUGIN = "napari-imc-vae"
WIDGETS = ("Normalize channels", "Train VAE", "Reconstruct")
#: The demo trains the default model (latent size, width, depth: the form's defaults) with
#: batches of 128 patches for DEMO_STEPS exact steps. Measured on the synthetic sample with
#: latent 16: held-out R² 0.353 at step 60, 0.500 at 360, 0.518 at 600 (+0.174 over PCA-16);
#: 600 steps keep the demo's training under about 1.5 minutes on two CPU cores (README).
DEMO_BATCH = 128
DEMO_STEPS = 600
#: The window: a 1080p screen (less where the screen is smaller).
WINDOW_SIZE = (1920, 1080)


def open_viewer(path: str | None = None, *, title: str = "napari-imc-vae", show: bool = True):
    """A napari viewer with ``path`` (or the synthetic sample) and the three widgets docked.

    Returns
    -------
    viewer, dict of str to QWidget
        The widgets by display name.
    """
    import napari

    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title=title, show=show)
    screen = QApplication.primaryScreen()
    room = screen.availableGeometry() if screen is not None else None
    width, height = WINDOW_SIZE
    viewer.window.resize(min(width, room.width()) if room else width, min(height, room.height()) if room else height)
    if path is None:
        viewer.open_sample(PLUGIN, "synthetic_tissue")
    else:
        viewer.open(str(path), plugin=PLUGIN)
    widgets = {}
    for name in WIDGETS:
        _, widgets[name] = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=bool(widgets))
    return viewer, widgets


def wait_for(signal, start, timeout_s: float = 600.0):
    """Call ``start()`` and run the Qt event loop until ``signal`` fires; return its argument."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop, got = QEventLoop(), []

    def done(value=None):
        got.append(value)
        loop.quit()

    signal.connect(done)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)  # never hang a headless run
    try:
        if start() is None:
            return None
        if not got:
            loop.exec()
    finally:
        signal.disconnect(done)
    return got[0] if got else None


def raise_dock(widget) -> None:
    """Bring a tabified dock widget to the front."""
    dock = widget.parent()
    while dock is not None and not hasattr(dock, "raise_"):
        dock = dock.parent()
    if dock is not None:
        dock.raise_()


def validation_r2(trained) -> str:
    """The held-out R² at each validation of a model, e.g. ``"0.31 (step 30) → … → 0.47 (300)"``."""
    points = [(int(v["step"]), float(v["r2"])) for v in trained.validation_history
              if "r2" in v and "step" in v]
    return " → ".join(f"{r2:.3f} ({step})" for step, r2 in points) or "none"


def headless_demo(out: Path, path: str | None = None, *, steps: int = DEMO_STEPS) -> int:
    """Normalize, train, reconstruct; screenshot the whole window to ``out``. Returns 0 on success."""
    import napari

    start = time.perf_counter()
    stages = []

    def stage(name: str, since: float) -> float:
        now = time.perf_counter()
        stages.append(f"{name} {now - since:.0f} s")
        return now

    viewer, w = open_viewer(path, title="napari-imc-vae demo")
    norm, train, recon = (w[name] for name in WIDGETS)
    t = stage("napari and the widgets", start)
    norm.hide_raw.value = False
    if wait_for(norm.finished, norm.normalize) is None:
        print("normalization failed", file=sys.stderr)
        return 1
    t = stage("normalize", t)
    train.form.batch.value = DEMO_BATCH  # everything else: the form's defaults
    train.form.steps.value = steps
    train.activity.setChecked(False)  # napari's animated indicator is costly under Xvfb
    raise_dock(train)
    outcome = wait_for(train.finished, train.train)
    if outcome is None:
        print("training failed", file=sys.stderr)
        return 1
    t = stage("train + quality report", t)
    cfg = outcome.trained.model.config
    print(f"trained {outcome.trained.step} steps (latent {cfg.latent_dim}, width {cfg.width}, "
          f"depth {cfg.depth}, batch {DEMO_BATCH}) in {outcome.seconds:.1f} s")
    print(f"held-out R² at each validation: {validation_r2(outcome.trained)}")
    if outcome.report is not None:
        print("\n".join(outcome.report.verdicts()))
    raise_dock(recon)  # where the user goes next
    layers = wait_for(recon.finished, recon.reconstruct)
    if layers is None:
        print("reconstruction failed", file=sys.stderr)
        return 1
    t = stage("reconstruct + report", t)
    for _ in range(20):
        napari.qt.get_qapp().processEvents()
    canvas = viewer.window._qt_viewer.canvas.native.width()  # no public API for the canvas' size
    window = viewer.window._qt_window.width()
    print(f"canvas {canvas} of the window's {window} px ({canvas / window:.0%})")
    print("compared: " + "; ".join(recon.compare.markers.item(r).text() for r in range(recon.compare.markers.count())
                                   if recon.compare.markers.item(r).isSelected()))
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(path=str(out), canvas_only=False, flash=False)
    print(f"saved {out}")
    viewer.close()
    stage("screenshot", t)
    print(f"demo took {time.perf_counter() - start:.0f} s: " + ", ".join(stages))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description="napari with an IMC image and the IMC VAE widgets")
    parser.add_argument("path", nargs="?", help="IMC file or folder (default: the synthetic sample)")
    parser.add_argument("--headless-demo", metavar="OUT.png", type=Path,
                        help="run normalize → train → reconstruct, save a window screenshot, exit")
    parser.add_argument("--steps", type=int, default=DEMO_STEPS,
                        help=f"training steps of the demo ({DEMO_STEPS})")
    args = parser.parse_args(argv)
    if args.headless_demo is not None:
        return headless_demo(args.headless_demo, args.path, steps=args.steps)
    import napari

    open_viewer(args.path)
    napari.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
