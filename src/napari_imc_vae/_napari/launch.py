"""Open napari with an IMC image and the plugin's three widgets docked.

::

    python -m napari_imc_vae._napari.launch [PATH]           # the synthetic sample without PATH
    xvfb-run -a python -m napari_imc_vae._napari.launch --headless-demo OUT.png

``--headless-demo`` runs the whole flow without a person (normalize, train a small model
for ~100 steps, reconstruct), saves a screenshot of the whole window and exits 0; under
Xvfb it needs no display.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PLUGIN = "napari-imc-vae"
WIDGETS = ("Normalize channels", "Train VAE", "Reconstruct")
#: A model small enough for the demo to finish in well under a minute on two CPU cores.
DEMO_MODEL = {"patch": 8, "latent": 8, "width": 64, "depth": 1, "batch": 128}


def open_viewer(path: str | None = None, *, title: str = "napari-imc-vae", show: bool = True):
    """A napari viewer with ``path`` (or the synthetic sample) and the three widgets docked.

    Returns
    -------
    viewer, dict of str to QWidget
        The widgets by display name.
    """
    import napari

    viewer = napari.Viewer(title=title, show=show)
    viewer.window.resize(1700, 1050)
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


def headless_demo(out: Path, path: str | None = None, *, steps: int = 100) -> int:
    """Normalize, train, reconstruct; screenshot the whole window to ``out``. Returns 0 on success."""
    import napari

    viewer, w = open_viewer(path, title="napari-imc-vae demo")
    norm, train, recon = (w[name] for name in WIDGETS)
    norm.hide_raw.value = False
    if wait_for(norm.finished, norm.normalize) is None:
        print("normalization failed", file=sys.stderr)
        return 1
    f = train.form
    f.patch.value = DEMO_MODEL["patch"]
    f.latent.value = DEMO_MODEL["latent"]
    f.hidden_width.value = DEMO_MODEL["width"]
    f.depth.value = DEMO_MODEL["depth"]
    f.batch.value = DEMO_MODEL["batch"]
    f.steps.value = steps
    train.activity.setChecked(False)  # napari's animated indicator is costly under Xvfb
    raise_dock(train)
    outcome = wait_for(train.finished, train.train)
    if outcome is None:
        print("training failed", file=sys.stderr)
        return 1
    print(f"trained {outcome.trained.step} steps in {outcome.seconds:.1f} s")
    if outcome.report is not None:
        print("\n".join(outcome.report.verdicts()))
    layers = wait_for(recon.finished, recon.reconstruct)
    if layers is None:
        print("reconstruction failed", file=sys.stderr)
        return 1
    for layer in viewer.layers:  # the raw channels, their reconstruction hidden, error on top
        if layer.name.endswith(" [normalized]"):
            layer.visible = False
    raise_dock(train)
    viewer.reset_view()
    for _ in range(20):
        napari.qt.get_qapp().processEvents()
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(path=str(out), canvas_only=False, flash=False)
    print(f"saved {out}")
    viewer.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description="napari with an IMC image and the IMC VAE widgets")
    parser.add_argument("path", nargs="?", help="IMC file or folder (default: the synthetic sample)")
    parser.add_argument("--headless-demo", metavar="OUT.png", type=Path,
                        help="run normalize → train → reconstruct, save a window screenshot, exit")
    parser.add_argument("--steps", type=int, default=100, help="training steps of the demo (100)")
    args = parser.parse_args(argv)
    if args.headless_demo is not None:
        return headless_demo(args.headless_demo, args.path, steps=args.steps)
    import napari

    open_viewer(args.path)
    napari.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
