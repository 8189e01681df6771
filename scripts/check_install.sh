#!/usr/bin/env bash
# Follow the README's "Install into your napari" in a fresh environment, offline:
#   1. build the wheel from this checkout (pip wheel --no-deps --no-build-isolation);
#   2. make a fresh venv that sees an existing napari + torch, the way `python -m venv
#      --system-site-packages` sees a system napari (here: the site-packages of NAPARI_ENV,
#      default .venv, through a .pth file);
#   3. pip install "<wheel>[mcd]" into it with --no-index (no download: every dependency must
#      already be satisfied by "your napari");
#   4. check the installed copy (not the checkout) is what runs: import, LICENSE in the
#      dist-info, the napari manifest found by npe2, the console script, and a real image read.
# Usage: bash scripts/check_install.sh [NAPARI_ENV]     (takes about a minute)
set -euo pipefail
cd "$(dirname "$0")/.."
NAPARI_ENV=${1:-.venv}
PY="$NAPARI_ENV/bin/python"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "== building the wheel"
mkdir -p "$WORK/src"
cp pyproject.toml README.md LICENSE CITATION.cff "$WORK/src/"
cp -r src "$WORK/src/src"
find "$WORK/src" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +
"$PY" -m pip wheel --no-deps --no-build-isolation -q -w "$WORK/dist" "$WORK/src"
WHEEL=$(ls "$WORK"/dist/napari_imc_vae-*.whl)
echo "   $(basename "$WHEEL")"

echo "== a fresh environment that sees the napari and torch of $NAPARI_ENV"
BASE=$("$PY" -c 'import sys; print(sys.base_prefix)')
"$BASE/bin/python3" -m venv "$WORK/venv"
SITE=$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$SITE/your-napari.pth"
# Python 3.11's venv bundles an old setuptools that would shadow the environment's (torch needs >= 77)
"$WORK/venv/bin/pip" uninstall -q -y setuptools 2>/dev/null || true

echo "== pip install \"<wheel>[mcd]\" (offline)"
# --force-reinstall --no-deps: the checkout's own editable install is visible through the .pth
# and would otherwise count as "already satisfied"; pip does not touch packages outside the venv
"$WORK/venv/bin/pip" install -q --no-index --force-reinstall --no-deps "$WHEEL"
"$WORK/venv/bin/pip" install --no-index --find-links "$WORK/dist" "$WHEEL[mcd]" | tail -n 3

echo "== the installed copy runs"
cd "$WORK"  # away from the checkout, so that nothing is imported from src/
"$WORK/venv/bin/python" - "$SITE" <<'PY'
import sys
from importlib.metadata import distribution
from pathlib import Path

site = sys.argv[1]
import napari_imc_vae
assert napari_imc_vae.__file__.startswith(site), napari_imc_vae.__file__
dist = distribution("napari-imc-vae")
license_file = Path(dist.locate_file(f"napari_imc_vae-{dist.version}.dist-info/licenses/LICENSE"))
assert license_file.read_text().startswith("BSD 3-Clause License"), license_file
print(f"   imported from {napari_imc_vae.__file__}; LICENSE in the dist-info; "
      f"Requires-Python {dist.metadata['Requires-Python']}")
import npe2

pm = npe2.PluginManager.instance()
pm.discover()
manifest = pm.get_manifest("napari-imc-vae")
readers = [r.command for r in manifest.contributions.readers]
widgets = [w.display_name for w in manifest.contributions.widgets]
print(f"   npe2 manifest found: readers {readers}, widgets {widgets}")
import readimc  # the mcd extra
PY
"$WORK/venv/bin/napari-imc-vae" --version
DATA="$OLDPWD/../shared/data/imc-testdata/steinbock_img/20210305_NE_mockData1_001.ome.tiff"
if [ -f "$DATA" ]; then
    "$WORK/venv/bin/napari-imc-vae" diagnose "$DATA" | sed -n 1,2p
fi
echo "== OK: the README's install route works"
