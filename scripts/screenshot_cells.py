"""Screenshot of cells coloured by their mean calibrated error in napari (docs/cells_error.png).

Opens a real acquisition with the plugin's reader, segments nuclei the way a quick user would
(watershed of the smoothed H3K27Ac channel from its local maxima, inside a threshold) into a
Labels layer, trains a small model on the image, docks "Reconstruct" with that Labels layer
picked, reconstructs, colours the cells by error, clicks the worst cell so the widget shows
its row, and saves the whole window. Without a display, run it under Xvfb::

    xvfb-run -a -s "-screen 0 1920x1080x24" python scripts/screenshot_cells.py
"""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from _screenshots import DATA, ROOT, save_window

DEFAULT_PATH = DATA / "steinbock_img" / "20210305_NE_mockData2_001.ome.tiff"


def nuclei(channel: np.ndarray) -> np.ndarray:
    """Watershed of the smoothed channel from its local maxima, inside smoothed > 2 counts."""
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    smooth = ndimage.gaussian_filter(channel, 1.5)
    inside = smooth > 2.0
    peaks = peak_local_max(smooth, min_distance=3, labels=ndimage.label(inside)[0])
    seeds = np.zeros(channel.shape, np.int32)
    seeds[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-smooth, seeds, mask=inside).astype(np.uint16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--steps", type=int, default=300, help="training steps (300)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "cells_error.png")
    args = parser.parse_args(argv)

    import napari

    from napari_imc_vae._napari.cells_layer import CELL_ERROR_LIMIT
    from napari_imc_vae._napari.launch import wait_for
    from napari_imc_vae._napari.layer_data import layer_units
    from napari_imc_vae._napari.model_store import model_store
    from napari_imc_vae.engine.training.trainer import TrainConfig
    from napari_imc_vae.engine.training.run import TrainingRun
    from napari_imc_vae.io import read_imc

    trained, _ = TrainingRun([read_imc(args.path)], model_config={"latent_dim": 8, "width": 64, "depth": 1},
                             train_config=TrainConfig(steps=args.steps, batch_size=128, device="cpu", seed=0)).run()
    viewer = napari.Viewer(title="napari-imc-vae: cells coloured by error")
    viewer.window.resize(1920, 1080)
    viewer.open(str(args.path), plugin="napari-imc-vae")
    raw = list(viewer.layers)
    nuclear = viewer.layers["H3K27Ac"]
    labels = viewer.add_labels(nuclei(np.asarray(nuclear.data)), name="nuclei", opacity=0.85,
                               scale=nuclear.scale, **layer_units())
    _, recon = viewer.window.add_plugin_dock_widget("napari-imc-vae", "Reconstruct")
    recon.setMinimumWidth(560)
    model_store(viewer).set(trained)
    recon.cells.labels.setCurrentText("nuclei")
    if wait_for(recon.finished, recon.reconstruct) is None:
        return 1
    recon.compare.toggle.setChecked(False)  # the user's layout: the image, not the comparison grid
    for layer in viewer.layers:
        layer.visible = layer is labels or layer.name in ("H3K27Ac", "YBX1")
    table = recon.cells.table
    worst = int(table.cell_id[np.nanargmax(table.error)])
    ys, xs = np.nonzero(labels.data == worst)
    recon.cells._on_click(labels, SimpleNamespace(position=labels.data_to_world((ys[0], xs[0]))))
    viewer.layers.selection = {labels}
    text = viewer.canvas.overlays.text
    text.visible, text.font_size, text.color, text.position = True, 11, "white", "top_left"
    text.text = (f"{recon.picker.current().name}: {len(table)} nuclei by mean error\n"
                 f"(magma, 0 to {CELL_ERROR_LIMIT:g} noise SD); row shown: cell {worst}, the worst")
    scroll = recon.findChild(__import__("qtpy.QtWidgets", fromlist=["QScrollArea"]).QScrollArea)
    if scroll is not None:
        scroll.ensureWidgetVisible(recon.cells)
    print(f"{len(table)} cells; worst cell {worst}: error {np.nanmax(table.error):.2f}")
    return save_window(viewer, args.out, settle_rounds=20)


if __name__ == "__main__":
    raise SystemExit(main())
