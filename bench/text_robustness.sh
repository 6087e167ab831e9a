#!/usr/bin/env bash
# Text robustness benchmark (BENCHMARKS.md §5): for spam-assassin and prompt-injection, trains
# standard, adversarially trained (DeepWordBug), embedding-space AT and canonicalisation-only
# ngram-bag models, evaluates each under DeepWordBug, its look-alike-only variant and HotFlip
# at the data set's edit budget, prints one markdown table per data set and writes one HTML report per data set.
#
#   bench/text_robustness.sh [OUT_DIR]        (default runs/text-bench)
#
# Env: DATASETS (default "prompt-injection spam-assassin"), MODEL (ngram-bag), SEED (0),
# HOTFLIP_LIMIT_SPAM (300 test emails; HotFlip on 1,000-character emails is the slow part).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/text-bench}
DATASETS=${DATASETS:-"prompt-injection spam-assassin"}
MODEL=${MODEL:-ngram-bag}
SEED=${SEED:-0}
HOTFLIP_LIMIT_SPAM=${HOTFLIP_LIMIT_SPAM:-300}
scripts/fetch_text_data.sh data/text
cargo build --release --locked -p advtrain-cli
BIN=./target/release/advtrain
mkdir -p "$OUT"
for ds in $DATASETS; do
  case $ds in
    spam-assassin) budget=20; epochs=5; frac=0.3; hf_limit="--limit $HOTFLIP_LIMIT_SPAM" ;;
    prompt-injection) budget=5; epochs=10; frac=0.5; hf_limit="" ;;
    *) echo "unknown data set $ds" >&2; exit 2 ;;
  esac
  common=(--dataset "$ds" --model "$MODEL" --epochs "$epochs" --seed "$SEED" --budget "$budget" --eval-attacks deepwordbug,lookalike --force -q)
  runs=()
  for variant in standard adversarial embedding-at canonicalize; do
    dir="$OUT/$ds-$MODEL-$variant"
    case $variant in
      standard) extra=(--method standard) ;;
      adversarial) extra=(--method adversarial --attack deepwordbug --adv-fraction "$frac" --lambda 1) ;;
      embedding-at) extra=(--method embedding-at --eps 0.5 --attack-steps 3 --lambda 1) ;;
      canonicalize) extra=(--method standard --canonicalize) ;;
    esac
    echo "== $ds $variant"
    "$BIN" train "${common[@]}" "${extra[@]}" --out "$dir"
    # shellcheck disable=SC2086
    "$BIN" eval --run "$dir" --attack hotflip --budget "$budget" $hf_limit -q
    runs+=("$dir")
  done
  "$BIN" report "${runs[@]}" --out "$OUT/$ds-report.html"
  python3 - "$budget" "${runs[@]}" <<'PY'
import json, sys, glob, os
budget = sys.argv[1]
attacks = [("deepwordbug", "DeepWordBug"), ("lookalike", "look-alike only"), ("hotflip", "HotFlip")]
print(f"\nEdit budget {budget} per text. Each attack cell: accuracy under attack / attack success rate / mean edits of successful attacks / time.\n")
print("| model | train time | clean | " + " | ".join(n for _, n in attacks) + " |")
print("|---|---|---|" + "---|" * len(attacks))
for d in sys.argv[2:]:
    s = json.load(open(os.path.join(d, "summary.json")))
    ev = {}
    for f in glob.glob(os.path.join(d, "eval-*.json")):
        r = json.load(open(f)); ev[r["attack"]] = r
    def cell(a):
        r = ev.get(a)
        if not r: return "–"
        n = f" (first {r['examples']} texts; clean {100*r['clean_accuracy']:.1f}%)" if r["examples"] != ev["none"]["examples"] else ""
        return f"**{100*r['robust_accuracy']:.1f}%** / {100*r['attack_success_rate']:.1f}% / {r['mean_edits']:.2f} / {r['seconds']:.0f} s{n}"
    print(f"| {os.path.basename(d)} | {s['train_seconds']:.0f} s | {100*ev['none']['clean_accuracy']:.1f}% | " + " | ".join(cell(a) for a, _ in attacks) + " |")
PY
done
