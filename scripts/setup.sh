#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: Debian X/GL libraries (for napari under Xvfb),
# a virtual environment in .venv, torch first (CPU build unless IMC_VAE_TORCH says otherwise),
# then this package with its extras. Safe to run again: each step skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4
libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0
libxcb-xkb1 libdbus-1-3 libfontconfig1"

if command -v apt-get >/dev/null 2>&1; then
    missing=""
    for p in $APT_PACKAGES; do
        dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        echo "setup: installing Debian packages:$missing"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
    fi
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"

# torch before the package: an unpinned torch pulls a multi-GB CUDA build.
# GPU users: IMC_VAE_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC="${IMC_VAE_TORCH:-torch==2.13.0}"
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    echo "setup: installing $TORCH_SPEC"
    # shellcheck disable=SC2086
    $PIP install $TORCH_SPEC
fi

# The extras a user needs (.mcd/.txt reading) and, with --testing, the test tools and the
# optional formats they test (cells: anndata for .h5ad; bmz: bioimageio.core for the zoo's own test of
# exported packages; so CI runs those tests too).
EXTRAS="mcd"
[ "${1:-}" = "--testing" ] && EXTRAS="mcd,cells,bmz,testing"
stamp=".venv/.napari-imc-vae-$EXTRAS-$(cat pyproject.toml | cksum | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
    echo "setup: installing napari-imc-vae[$EXTRAS]"
    # pipefail keeps pip's failure; only grep's "nothing left to print" is forgiven
    $PIP install -e ".[$EXTRAS]" 2>&1 | { grep -v "^WARNING: Location" || true; }
    .venv/bin/python -c "import napari_imc_vae, torch, napari" # fail here, not later
    touch "$stamp"
fi
