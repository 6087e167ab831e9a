#!/usr/bin/env bash
# Runs `advtrain bench --json` and the PyTorch peer (bench/peer_pytorch.py --json) with the
# same settings, then prints advtrain/PyTorch throughput ratios.
#
# Usage: [ROUNDS=3] bench/compare.sh [--threads N] [--batch 128] [--reps 5] [--warmup 1]
#                         [--models a,b] [--workloads forward,pgd10,fgsm-rs-step,pgd-at-step]
#                         [--run DIR --limit 500 --workloads autoattack,square,apgd-t]
#
# The attack workloads (autoattack, square, apgd-t) attack a trained run's weights on its
# first --limit test points (torchattacks on the PyTorch side, bench/peer_attacks.py); for
# them the table gives each side's wall time (median over rounds), the ratio
# PyTorch time / advtrain time, and both robust accuracies.
#
# On a shared VM the speed of the machine drifts by 10-30% over minutes, so one run of each
# side can put them in different weather. With ROUNDS=R (default 3) the two sides alternate
# R times (advtrain first in odd rounds, PyTorch first in even ones); each side's figure is
# the median over the rounds of its per-run medians, and the per-round ratios are printed
# beside it (min..max) so the spread is visible. ROUNDS=1 is one run of each.
# Needs PyTorch: pip install torch --index-url https://download.pytorch.org/whl/cpu
# (PYTHON=/path/to/python picks the interpreter that has it).
set -euo pipefail
cd "$(dirname "$0")/.."

args=("$@")
rounds="${ROUNDS:-3}"
if ! [[ "$rounds" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: ROUNDS must be a positive integer, got '$rounds'" >&2
    exit 2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "building advtrain (release)..." >&2
cargo build --release -p advtrain-cli >&2

run_advtrain() {
    echo "round $1: advtrain bench ${args[*]:-}" >&2
    ./target/release/advtrain bench "${args[@]}" --json -q --out "$tmp/advtrain-$1.json"
}

run_peer() {
    echo "round $1: bench/peer_pytorch.py ${args[*]:-}" >&2
    local rc=0
    "${PYTHON:-python3}" bench/peer_pytorch.py "${args[@]}" --json -q --out "$tmp/pytorch-$1.json" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "the PyTorch peer failed (exit $rc); advtrain's results so far:" >&2
        cat "$tmp"/advtrain-*.json
        exit "$rc"
    fi
}

for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) -eq 1 ]; then
        run_advtrain "$r"
        run_peer "$r"
    else
        run_peer "$r"
        run_advtrain "$r"
    fi
done

python3 - "$tmp" "$rounds" <<'EOF'
import json, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
a_runs = [json.load(open(f"{tmp}/advtrain-{r}.json")) for r in range(1, rounds + 1)]
p_runs = [json.load(open(f"{tmp}/pytorch-{r}.json")) for r in range(1, rounds + 1)]
a, p = a_runs[0], p_runs[0]

def medians(runs):
    out = {}
    for run in runs:
        for r in run["results"]:
            out.setdefault((r["model"], r["workload"]), []).append(r["images_per_s_median"])
    return out

am, pm = medians(a_runs), medians(p_runs)
print(f"machine: {a['machine']['cpu']}, {a['machine']['threads']} threads (advtrain) / "
      f"{p['machine']['threads']} (torch {p.get('torch_version')}, PGD {p.get('pgd_implementation')})")
print(f"batch {a['batch']}, {a['reps']} reps per run, {rounds} alternating round(s); "
      f"each figure: median over rounds of the run's median; ratio > 1 means advtrain is faster")
print(f"{'model':<10} {'workload':<13} {'advtrain img/s':>15} {'pytorch img/s':>14} {'ratio':>7}"
      f"   per-round ratios")
for r in a["results"]:
    key = (r["model"], r["workload"])
    if key not in pm:
        continue
    av, pv = statistics.median(am[key]), statistics.median(pm[key])
    per_round = [x / y for x, y in zip(am[key], pm[key])]
    spread = " ".join(f"{x:.2f}" for x in per_round)
    print(f"{key[0]:<10} {key[1]:<13} {av:>15.1f} {pv:>14.1f} {av / pv:>7.2f}   {spread}")

def attack_runs(runs):
    out = {}
    for run in runs:
        for m in run.get("attacks", []):
            out.setdefault(m["workload"], []).append(m)
    return out

aa, pa = attack_runs(a_runs), attack_runs(p_runs)
if aa:
    print()
    print(f"attacks on {a['attacks'][0]['model']}, {a['attacks'][0]['points']} points; "
          f"ratio = PyTorch seconds / advtrain seconds (> 1: advtrain is faster)")
    print(f"{'workload':<11} {'advtrain s':>11} {'pytorch s':>10} {'ratio':>7} "
          f"{'robust advtrain':>16} {'robust pytorch':>15}   per-round ratios")
    for w, ours in aa.items():
        theirs = pa.get(w)
        if not theirs:
            continue
        at = statistics.median(m["seconds_median"] for m in ours)
        pt = statistics.median(m["seconds_median"] for m in theirs)
        spread = " ".join(f"{p['seconds_median'] / q['seconds_median']:.2f}"
                          for q, p in zip(ours, theirs))
        print(f"{w:<11} {at:>11.1f} {pt:>10.1f} {pt / at:>7.2f} "
              f"{100 * ours[-1]['robust_accuracy']:>15.2f}% "
              f"{100 * theirs[-1]['robust_accuracy']:>14.2f}%   {spread}")
EOF
