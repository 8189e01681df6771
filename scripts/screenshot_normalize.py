"""Screenshot of the "Normalize channels" widget on a real IMC acquisition.

Opens a file with the plugin's reader, docks the widget, normalizes one image,
and saves the whole napari window. Without a display, run it under Xvfb::

    xvfb-run -a python scripts/screenshot_normalize.py [PATH] [--acquisition ROI_002]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _screenshots import DATA, ROOT, save_window

DEFAULT_PATH = DATA / "raw" / "20210305_NE_mockData1.mcd"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH,
                        help=f"IMC file or folder (default: {DEFAULT_PATH})")
    parser.add_argument("--acquisition", default="ROI_002",
                        help="normalize the image whose name contains this (default ROI_002; "
                             "the first image when none matches)")
    parser.add_argument("--channel", default="H3K27Ac", help="channel whose histograms to show")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "normalize_widget.png")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    viewer = napari.Viewer(title="napari-imc-vae: Normalize channels")
    viewer.window.resize(1600, 1000)
    viewer.open(str(args.path), plugin="napari-imc-vae")
    _, widget = viewer.window.add_plugin_dock_widget("napari-imc-vae", "Normalize channels")
    widget.setMinimumWidth(540)
    match = [im.label for im in widget.picker.images if args.acquisition in im.label]
    if match:
        widget.picker.select(match[0])

    loop = QEventLoop()
    widget.finished.connect(lambda _result: loop.quit())
    QTimer.singleShot(120_000, loop.quit)  # never hang a headless run
    if widget.normalize() is None:
        return 1
    loop.exec()
    if widget.result is None:
        return 1
    names = widget.result.raw.channel_names
    row = names.index(args.channel) if args.channel in names else 0
    widget.histograms.channel.setCurrentIndex(row)
    widget.table.tables["Before"].selectRow(row)
    return save_window(viewer, args.out, settle_rounds=10)


if __name__ == "__main__":
    raise SystemExit(main())
