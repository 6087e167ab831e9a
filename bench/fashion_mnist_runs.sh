#!/usr/bin/env bash
# The Fashion-MNIST trade-off runs of BENCHMARKS.md: small-cnn trained with standard,
# fgsm-rs and pgd-at (PGD-10) at L-inf eps=0.1, each evaluated on the full test set with
# PGD-20 and 3 restarts, plus pgd-at with a one-cycle schedule (peak lr 0.1) for
# $PGDAT_EPOCHS epochs (default 15). Prints a markdown table; run directories go to $OUT
# (default runs/bench).
# Usage: bench/fashion_mnist_runs.sh [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-10}
OUT=${OUT:-runs/bench}
cargo build --release --locked -q -p advtrain-cli
BIN=./target/release/advtrain
for method in standard fgsm-rs pgd-at; do
  "$BIN" train --dataset fashion-mnist --model small-cnn --method "$method" --eps 0.1 \
    --epochs "$EPOCHS" --seed 0 --final-steps 20 --final-restarts 3 -q \
    --out "$OUT/$method" --force
done
"$BIN" train --dataset fashion-mnist --model small-cnn --method pgd-at --eps 0.1 \
  --epochs "${PGDAT_EPOCHS:-15}" --schedule one-cycle --lr 0.1 --seed 0 \
  --final-steps 20 --final-restarts 3 -q --out "$OUT/pgd-at-onecycle" --force
python3 - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
print("| method | epochs | train time (s) | clean test acc | PGD-20x3 robust acc (eps=0.1) |")
print("|---|---|---|---|---|")
for m in ["standard", "fgsm-rs", "pgd-at", "pgd-at-onecycle"]:
    s = json.load(open(os.path.join(out, m, "summary.json")))
    e = json.load(open(os.path.join(out, m, "eval-pgd.json")))
    ci = lambda c: f"[{100*c[0]:.1f}, {100*c[1]:.1f}]"
    print(f"| {m} | {s['epochs']} | {s['train_seconds']:.0f} | {100*s['clean_accuracy']:.2f}% {ci(s['clean_ci95'])} "
          f"| {100*e['robust_accuracy']:.2f}% {ci(e['robust_ci95'])} |")
PY
