"""Shared by the ``screenshot_*.py`` scripts: where the data and docs are; saving the window.

The scripts run as files (``python scripts/screenshot_….py``), so this folder is on
``sys.path`` and ``from _screenshots import …`` finds this module.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "imc-testdata"


def save_window(viewer, out: Path, *, settle_rounds: int) -> int:
    """Fit the view, let Qt repaint, save the whole napari window to ``out``, close the viewer.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    out : Path
        PNG file; its folder is created.
    settle_rounds : int
        How many times to process pending Qt events before the screenshot.

    Returns
    -------
    int
        0, the scripts' exit status.
    """
    import napari

    viewer.reset_view()
    app = napari.qt.get_qapp()
    for _ in range(settle_rounds):
        app.processEvents()
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(path=str(out), canvas_only=False, flash=False)
    print(f"saved {out}")
    viewer.close()
    return 0
