#!/usr/bin/env bash
# The evaluation table of BENCHMARKS.md: for each run directory given (default: the three
# runs of bench/fashion_mnist_runs.sh), robust accuracy at the training eps under PGD-20,
# APGD-CE, APGD-T, Square and the AutoAttack-style ensemble, plus the sanity checklist,
# on the first $N test points (default 1000), with the time each took.
# Usage: bench/evaluation_runs.sh [RUN_DIR ...]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
export N
RUNS=("$@")
[ ${#RUNS[@]} -gt 0 ] || RUNS=(runs/bench/standard runs/bench/fgsm-rs runs/bench/pgd-at)
cargo build --release --locked -q -p advtrain-cli
BIN=./target/release/advtrain
for run in "${RUNS[@]}"; do
  echo "== $run" >&2
  "$BIN" eval --run "$run" --limit "$N" -q --attack pgd --steps 20 --restarts 1 --checks > "$run/checks.txt"
  "$BIN" eval --run "$run" --limit "$N" -q --attack apgd-ce --steps 100 > /dev/null
  "$BIN" eval --run "$run" --limit "$N" -q --attack apgd-t --steps 100 --targets 9 > /dev/null
  "$BIN" eval --run "$run" --limit "$N" -q --attack square --queries 5000 > /dev/null
  "$BIN" eval --run "$run" --limit "$N" -q --attack autoattack > /dev/null
done
python3 - "${RUNS[@]}" <<'PY'
import json, sys, os
N = os.environ.get("N", "1000")
print("| run | clean | PGD-20 | APGD-CE | APGD-T (9) | Square (5000) | ensemble | checklist |")
print("|---|---|---|---|---|---|---|---|")
for run in sys.argv[1:]:
    def rec(tag):
        return json.load(open(os.path.join(run, f"eval-{tag}-n{N}.json")))
    cell = lambda r: f"{100*r['robust_accuracy']:.1f}% [{100*r['robust_ci95'][0]:.1f}, {100*r['robust_ci95'][1]:.1f}] ({r['seconds']:.0f} s)"
    checks = json.load(open(os.path.join(run, "checks.json")))
    warn = [str(c["id"]) for c in checks if c["verdict"] == "warn"]
    verdict = "all pass" if not warn else "warn: " + ", ".join(warn)
    p = rec("pgd")
    print(f"| {os.path.basename(run)} | {100*p['clean_accuracy']:.1f}% | {cell(p)} | {cell(rec('apgd-ce'))} | "
          f"{cell(rec('apgd-t'))} | {cell(rec('square'))} | {cell(rec('autoattack'))} | {verdict} |")
PY
