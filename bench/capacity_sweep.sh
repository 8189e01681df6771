#!/usr/bin/env bash
# The sweep behind docs/capacity.md (#13), in the order it was run; each line appends to runs.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/capacity/runs.jsonl}
py=${PYTHON:-.venv/bin/python}
$py bench/capacity.py --data real --latent 16 32 64 128 --out "$out"
$py bench/capacity.py --data synthetic --latent 16 32 64 128 --out "$out"
$py bench/capacity.py --data real --latent 64 --steps 1000 4000 8000 --out "$out"
$py bench/capacity.py --data synthetic --latent 64 --steps 1000 4000 8000 --out "$out"
$py bench/capacity.py --data real --latent 64 --free-bits 0.5 4 8 --out "$out"
$py bench/capacity.py --data real --latent 64 --kld-scale 0 0.01 --out "$out"
$py bench/capacity.py --data real --latent 64 --kl-target 256 --out "$out"
$py bench/capacity.py --data synthetic --latent 64 --free-bits 0.5 4 --out "$out"
$py bench/capacity.py --data synthetic --latent 64 --kld-scale 0 --out "$out"
$py bench/capacity.py --data real --latent 64 --arch conv --out "$out"
$py bench/capacity.py --data synthetic --latent 64 --arch conv --out "$out"
$py bench/capacity.py --data real --latent 32 64 --seed 1 2 --out "$out"
