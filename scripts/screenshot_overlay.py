"""Screenshot of a real acquisition with its reconstruction and error overlaid (docs/overlay.png).

Opens an IMC file with the plugin's reader, docks "Train VAE" and "Reconstruct", trains the
default model (latent size, width, depth as the form has them) for ``--steps`` steps,
reconstructs, and shows the raw channels with the per-pixel error on top, the reconstruction
beside them (napari's grid view), then saves the whole window. It prints the held-out R² at
each validation, so one can see the model had stopped improving before its verdict was taken.
Without a display, run it under Xvfb::

    xvfb-run -a -s "-screen 0 1920x1200x24" python scripts/screenshot_overlay.py [PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _screenshots import DATA, ROOT, save_window

DEFAULT_PATH = DATA / "steinbock_img" / "20210305_NE_mockData5_003.ome.tiff"
#: Long enough on the default image that more steps no longer change the verdict (measured).
STEPS, BATCH = 600, 128


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH,
                        help=f"IMC file (default: {DEFAULT_PATH.name})")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"training steps ({STEPS})")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"batch size ({BATCH})")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "overlay.png")
    args = parser.parse_args(argv)

    import napari

    from napari_imc_vae._napari.launch import raise_dock, validation_r2, wait_for

    viewer = napari.Viewer(title="napari-imc-vae: reconstruction and error overlay")
    viewer.window.resize(1800, 1080)
    viewer.open(str(args.path), plugin="napari-imc-vae")
    raw = list(viewer.layers)
    _, train = viewer.window.add_plugin_dock_widget("napari-imc-vae", "Train VAE")
    _, recon = viewer.window.add_plugin_dock_widget("napari-imc-vae", "Reconstruct", tabify=True)
    for widget in (train, recon):
        widget.setMinimumWidth(520)
    train.form.batch.value = args.batch  # everything else: the form's defaults
    train.form.steps.value = args.steps
    train.activity.setChecked(False)  # napari's animated indicator is costly under Xvfb
    outcome = wait_for(train.finished, train.train, timeout_s=3600)
    if outcome is None:
        return 1
    cfg = outcome.trained.model.config
    print(f"trained {outcome.trained.step} steps (latent {cfg.latent_dim}, width {cfg.width}, "
          f"depth {cfg.depth}, batch {args.batch}) in {outcome.seconds:.0f} s")
    print(f"held-out R² at each validation: {validation_r2(outcome.trained)}")
    if outcome.report is not None:
        print("\n".join(outcome.report.verdicts()))
    recon.k.value = 5
    if wait_for(recon.finished, recon.reconstruct) is None:
        return 1

    # Raw channels + error overlay on the left, the reconstruction on the right.
    name = recon.picker.current().name
    error = viewer.layers[f"{name}_error"]
    for layer in viewer.layers:
        layer.visible = layer in raw or layer.name.endswith(" [recon]") or layer is error
    grid = viewer.canvas.grid
    grid.enabled = True
    grid.stride = len(raw) + 1  # one cell: the raw channels and the error; one: recon
    grid.shape = (1, 2)
    # Grid cells take `stride` layers each from the top of the list: [error + raw], [recon + latent]
    order = [*[viewer.layers.index(lay) for lay in raw], viewer.layers.index(error)]
    viewer.layers.move_multiple(order, len(viewer.layers))
    extra = [viewer.layers.index(viewer.layers[f"{name}_{kind}"]) for kind in ("motifs", "latent")]
    viewer.layers.move_multiple(extra, 0)
    viewer.layers.selection = {error}
    text = viewer.canvas.overlays.text
    text.visible, text.font_size, text.color, text.position = True, 11, "white", "top_left"
    text.text = (f"{name}\nleft: reconstruction ([recon] layers, raw units)\n"
                 "right: raw channels + per-pixel error on top (magma)")
    raise_dock(train)
    return save_window(viewer, args.out, settle_rounds=20)


if __name__ == "__main__":
    raise SystemExit(main())
