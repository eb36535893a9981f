#!/usr/bin/env bash
# Umbra vs OpenFHE full-slot N=2^16 bootstrapping, 2 threads each, one after the other in the
# same run on the same machine. Writes JSON to $OUT (default benches/results/<date>-bootstrap).
# Needs the OpenFHE venv of ../shared/peers/README.md at $PEERS_VENV (default /tmp/peers-venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-benches/results/$(date +%F)-bootstrap}
PEERS_VENV=${PEERS_VENV:-/tmp/peers-venv}
PRESET=${PRESET:-N16_QP1701_L9_S50_boot}
mkdir -p "$OUT"
cargo build --release --locked
lscpu | grep -E "Model name|^CPU\(s\)" > "$OUT/machine.txt"
./target/release/umbra bench bootstrap --preset "$PRESET" --threads 2 --reps 3 --json > "$OUT/umbra.json"
"$PEERS_VENV/bin/python" ../shared/peers/openfhe_ckks_bench.py --parts boot --boot-slots 32768 \
  --threads 2 --rounds 1 --out "$OUT/openfhe.json"
cat "$OUT/umbra.json"
