#!/usr/bin/env bash
# The sweep behind docs/capacity.md and docs/denoising.md (#13), in the order it was run on
# 2026-12-02 (about 75 minutes of the 2-core CPU); each run appends a line to runs.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/capacity/runs.jsonl}
run() { ${PYTHON:-.venv/bin/python} bench/capacity.py "$@" --out "$out"; }
run --data real --latent 16 32 64 128                 # latent size, default KL, 2,000 steps
run --data real --latent 32 --steps 8000 --held 3     # 4x the old default (one fold: flat, so stopped)
run --data synthetic --latent 16 32 64 128
run --data real --latent 16 --seed 1                  # seed spread
run --data real --latent 32 --free-bits 4             # KL: twice the free bits
run --data real --latent 32 --kld-scale 0             # KL: no weight
run --data real --latent 16 --free-bits 4
run --data synthetic --latent 16 32 --seed 1
run --data real --latent 16 --steps 1000 4000         # training length
run --data synthetic --latent 16 --steps 1000 4000
run --data real --latent 16 --held 0 7                # two more held-out ROIs
run --data real --latent 32 --held 0 7
run --data synthetic --latent 32 --free-bits 4
run --data synthetic --latent 32 --kld-scale 0
run --data real --latent 32 --kl-target 128           # KL: a target in nats per patch
run --data real --latent 16 --arch conv               # mlp vs conv
run --data synthetic --latent 16 --steps 8000
run --data synthetic10 --latent 16 32                 # the issue's 1000×1000×10 synthetic tissue
run --data synthetic10 --latent 16 --steps 5000       # ... with about what the Standard budget buys
