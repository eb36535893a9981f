#!/usr/bin/env bash
# Umbra vs OpenFHE on this machine, same run, 2 threads each, interleaved rounds:
# `umbra bench ops` at the three 128-bit presets, the shared OpenFHE compute sets (N=2^14, 2^15) and
# OpenFHE's compute ops on its N=2^16 bootstrapping modulus. Needs the peers venv at /tmp/peers-venv
# (../shared/peers/README.md) and `cargo build --release`. Then: python3 benches/peers/side_by_side.py OUT
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-bench-out/side}
ROUNDS=${ROUNDS:-2}
PEERS=${UMBRA_PEERS_DIR:-../shared/peers}
PY=${PEERS_PY:-/tmp/peers-venv/bin/python}
mkdir -p "$OUT"
date -u +%FT%TZ > "$OUT/start"
for round in $(seq 1 "$ROUNDS"); do
  for p in N14_QP423_L6_S40 N15_QP750_L10_S45 N16_QP1690_L26_S50; do
    /usr/bin/time -v ./target/release/umbra bench ops --preset "$p" --threads 2 --reps 9 --json \
      > "$OUT/umbra_${p}_r$round.json" 2> "$OUT/umbra_${p}_r$round.time"
  done
  "$PY" "$PEERS/openfhe_ckks_bench.py" --parts compute --threads 2 --rounds 1 \
    --out "$OUT/openfhe_compute_r$round.json" > "$OUT/openfhe_compute_r$round.log" 2>&1
  OMP_NUM_THREADS=2 "$PY" benches/peers/openfhe_n16_ops.py --out "$OUT/openfhe_n16_r$round.json" \
    > "$OUT/openfhe_n16_r$round.log" 2>&1
done
date -u +%FT%TZ > "$OUT/end"
