#!/usr/bin/env bash
# All latency benchmarks, one after another so their timings do not compete for the CPU. Resumable: the
# lookup tables in $CACHE keep every measured layer. Results: bench/results/*.json, figures: docs/latency.md.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${CACHE:-$HOME/.cache/edgenas}"
BIN=.venv/bin
$BIN/python bench/latency_litert.py --cache-dir "$CACHE" --out bench/results/latency_check_cpu-litert.json
for target in cpu-ort cpu-ort-int8; do
  $BIN/edgenas latency check --target $target --space small-28 --samples 100 --fit-samples 20 --seed 0 \
    --cache-dir "$CACHE" --out bench/results/latency_check_${target}_small-28.json
done
$BIN/edgenas latency check --target cpu-ort --space edgetpu-v2-224 --samples 100 --fit-samples 20 --seed 0 \
  --cache-dir "$CACHE" --out bench/results/latency_check_cpu-ort_edgetpu-v2-224.json
$BIN/python bench/calibrate_edgetpu.py --cache-dir "$CACHE" --out bench/results/latency_calibration_edgetpu.json
$BIN/python bench/latency_claims.py --cache-dir "$CACHE" --out bench/results/latency_claims.json \
  --plot docs/latency_families.png
