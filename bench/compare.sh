#!/usr/bin/env bash
# Runs `advtrain bench --json` and the PyTorch peer (bench/peer_pytorch.py --json) one after
# the other with the same settings, then prints advtrain/PyTorch throughput ratios.
#
# Usage: bench/compare.sh [--threads N] [--batch 128] [--reps 5] [--warmup 1] [--models a,b]
#                         [--workloads forward,pgd10,fgsm-rs-step,pgd-at-step]
# Needs PyTorch: pip install torch --index-url https://download.pytorch.org/whl/cpu
set -euo pipefail
cd "$(dirname "$0")/.."

args=("$@")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "building advtrain (release)..." >&2
cargo build --release -p advtrain-cli >&2

echo "running advtrain bench ${args[*]:-}" >&2
./target/release/advtrain bench "${args[@]}" --json -q --out "$tmp/advtrain.json"

echo "running bench/peer_pytorch.py ${args[*]:-}" >&2
rc=0
"${PYTHON:-python3}" bench/peer_pytorch.py "${args[@]}" --json -q --out "$tmp/pytorch.json" || rc=$?
if [ "$rc" -ne 0 ]; then
    echo "the PyTorch peer failed (exit $rc); advtrain's results:" >&2
    cat "$tmp/advtrain.json"
    exit "$rc"
fi

python3 - "$tmp/advtrain.json" "$tmp/pytorch.json" <<'EOF'
import json, sys
a, p = (json.load(open(f)) for f in sys.argv[1:3])
peer = {(r["model"], r["workload"]): r for r in p["results"]}
print(f"machine: {a['machine']['cpu']}, {a['machine']['threads']} threads (advtrain) / "
      f"{p['machine']['threads']} (torch {p.get('torch_version')}, PGD {p.get('pgd_implementation')})")
print(f"batch {a['batch']}, {a['reps']} reps; medians; ratio > 1 means advtrain is faster")
print(f"{'model':<10} {'workload':<13} {'advtrain img/s':>15} {'pytorch img/s':>14} {'ratio':>7}")
for r in a["results"]:
    q = peer.get((r["model"], r["workload"]))
    if q is None:
        continue
    ratio = r["images_per_s_median"] / q["images_per_s_median"]
    print(f"{r['model']:<10} {r['workload']:<13} {r['images_per_s_median']:>15.1f} "
          f"{q['images_per_s_median']:>14.1f} {ratio:>7.2f}")
EOF
