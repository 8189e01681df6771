#!/usr/bin/env bash
# Set up (idempotently) and run the main job: napari with the plugin's widgets docked on the
# synthetic sample (or the files given). Without a display it runs headless under Xvfb:
# the whole flow (normalize, train, reconstruct), a screenshot to out/napari-imc-vae.png, exit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
    mkdir -p out
    exec xvfb-run -a -s "-screen 0 1600x1000x24" \
        .venv/bin/python -m napari_imc_vae._napari.launch --headless-demo out/napari-imc-vae.png "$@"
fi
exec .venv/bin/python -m napari_imc_vae._napari.launch "$@"
