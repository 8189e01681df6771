#!/usr/bin/env bash
# One-command GPU check (issue 11): the CUDA tests, training throughput at 5, 40 and 512 channels
# with the share of the bf16 matmul rate measured in the same run, the loop's reads, 4096²×40
# reconstruction time and peak GPU memory, bf16 against fp32 quality on one ROI. ≤ 8 minutes.
#
#   bash bench/gpu_check.sh [OUT_DIR]        (default: $OUT if set, else ./gpu_check_out)
#   bash bench/gpu_check.sh --dry-run [DIR]  (the same on the CPU, tiny sizes: checks the script)
#
# Python: $IMC_VAE_PYTHON if set; else .venv/bin/python if its torch sees a GPU; else the first
# python3 on PATH whose torch sees one, running the package from src/ (nothing is installed:
# GPU machines here reach no package index); else scripts/setup.sh builds .venv with
# IMC_VAE_TORCH (default: the CUDA 12.8 wheel of torch 2.13.0), which needs the internet.
# Writes OUT_DIR/gpu_check.{log,json,md} and OUT_DIR/cuda_tests.log.
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=cuda QUICK=""
if [ "${1:-}" = "--dry-run" ]; then DEVICE=cpu QUICK="--quick"; shift; fi
OUT_DIR="${1:-${OUT:-gpu_check_out}}"
mkdir -p "$OUT_DIR"
exec > >(tee "$OUT_DIR/gpu_check.log") 2>&1
start=$(date +%s)
echo "gpu_check: $(date -u '+%F %T') UTC, $(uname -n), load: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo ?)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

sees_gpu() {  # sees_gpu PYTHON: its torch imports and (for a real check) sees a GPU
    [ -x "$(command -v "$1" 2>/dev/null)" ] || return 1
    if [ "$DEVICE" = cuda ]; then
        timeout 120 "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null
    else
        timeout 120 "$1" -c "import torch" 2>/dev/null
    fi
}
PY=""
if [ -n "${IMC_VAE_PYTHON:-}" ]; then
    PY="$IMC_VAE_PYTHON"
elif sees_gpu .venv/bin/python; then
    PY=.venv/bin/python
else
    for candidate in python3 python /opt/torch/.venv/bin/python3; do
        if sees_gpu "$candidate"; then PY="$(command -v "$candidate")"; break; fi
    done
fi
if [ -z "$PY" ]; then
    echo "gpu_check: no Python whose torch sees a GPU; building .venv with scripts/setup.sh"
    export IMC_VAE_TORCH="${IMC_VAE_TORCH:-torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128}"
    timeout 900 bash scripts/setup.sh --testing
    PY=.venv/bin/python
    sees_gpu "$PY" || { echo "gpu_check: .venv's torch does not see a GPU: set IMC_VAE_TORCH to a CUDA build"; exit 2; }
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
echo "gpu_check: python $PY ($("$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)'))"
# what the package needs beyond torch (napari is not needed here)
"$PY" -c "import numpy, tifffile, sklearn" || { echo "gpu_check: $PY lacks numpy, tifffile or scikit-learn"; exit 2; }

tests_rc=0
if "$PY" -c "import pytest" 2>/dev/null; then
    echo "== CUDA tests (pytest -m cuda)"
    timeout 120 "$PY" -m pytest -q -p no:cacheprovider -m cuda tests/engine/training/test_cuda.py -rs \
        2>&1 | tee "$OUT_DIR/cuda_tests.log" || tests_rc=$?
else
    echo "gpu_check: no pytest for $PY: CUDA tests not run"; tests_rc=3
fi

echo "== figures (bench/gpu_check.py)"
bench_rc=0
timeout 350 "$PY" bench/gpu_check.py --device "$DEVICE" $QUICK --out "$OUT_DIR" || bench_rc=$?

echo "gpu_check: done in $(( $(date +%s) - start )) s; CUDA tests exit $tests_rc, figures exit $bench_rc"
echo "gpu_check: results in $OUT_DIR/gpu_check.md (tables), gpu_check.json, gpu_check.log, cuda_tests.log"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
