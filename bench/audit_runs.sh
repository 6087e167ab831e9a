#!/usr/bin/env bash
# The side-effects audit of BENCHMARKS.md (issue 18): small-cnn on Fashion-MNIST trained five
# ways at L-inf eps=0.1 with the same epochs and seed (standard, standard + --augment,
# fgsm-rs, pgd-at, trades), each audited on the full test set with `advtrain eval --audit`,
# then one report that puts them side by side. Run directories go to $OUT (default
# runs/audit); the report is $OUT/report.html. Prints each audit's time.
# Usage: bench/audit_runs.sh [EPOCHS]      (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-5}
OUT=${OUT:-runs/audit}
cargo build --release --locked -q -p advtrain-cli
BIN=./target/release/advtrain
train() { # name, then train flags
  local name=$1; shift
  [ -f "$OUT/$name/summary.json" ] && return 0
  "$BIN" train --dataset fashion-mnist --model small-cnn --eps 0.1 --epochs "$EPOCHS" \
    --seed 0 -q --out "$OUT/$name" --force "$@"
}
train standard --method standard
train standard-augment --method standard --augment
train fgsm-rs --method fgsm-rs
train pgd-at --method pgd-at
train trades --method trades
runs=(standard standard-augment fgsm-rs pgd-at trades)
for r in "${runs[@]}"; do
  start=$(date +%s.%N)
  "$BIN" eval --run "$OUT/$r" --audit -q
  echo "audit of $r: $(echo "$(date +%s.%N) - $start" | bc) s (whole command)"
done
"$BIN" report "${runs[@]/#/$OUT/}" --out "$OUT/report.html" --force
