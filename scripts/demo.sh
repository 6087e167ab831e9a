#!/usr/bin/env bash
# The advtrain demo: fast adversarial training (FGSM-RS) of small-cnn on Fashion-MNIST at
# eps=0.1, then clean and PGD-20 robust accuracy on the full test set.
# Usage: scripts/demo.sh [extra `advtrain train` flags, e.g. --epochs 3]
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=/usr/share/datasets/fashion-mnist
if [ ! -f "$DATA/train-images-idx3-ubyte.gz" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "Fashion-MNIST is not installed. Install it with:" >&2
    echo "  sudo apt-get install -y dataset-fashion-mnist" >&2
    exit 1
  fi
fi

echo "== building advtrain (release)"
cargo build --release --locked -p advtrain-cli

RUN=runs/demo
echo "== training small-cnn with fgsm-rs at eps=0.1 -> $RUN"
./target/release/advtrain train \
  --dataset fashion-mnist --model small-cnn --method fgsm-rs --eps 0.1 \
  --epochs 5 --final-steps 20 --final-restarts 1 --seed 0 \
  --out "$RUN" --force "$@"

echo
echo "== report (training curves, accuracy, adversarial examples): $RUN/report.html"
echo "   open it in a browser, e.g.: xdg-open $RUN/report.html"
echo
echo "== next steps"
echo "  ./target/release/advtrain eval --run $RUN --attack pgd --steps 20 --restarts 2 --eps-curve 0,0.05,0.1,0.15,0.2"
echo "  ./target/release/advtrain attack --run $RUN --out adv/   # adversarial examples + adv/grid.png"
echo "  ./target/release/advtrain report $RUN runs/other-run --out report.html   # compare runs"
