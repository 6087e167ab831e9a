#!/usr/bin/env bash
# Evasion benchmark (BENCHMARKS.md §5, issue 19): for spam (1% FPR) and prompt injection (5%
# FPR), trains standard, adversarially trained (DeepWordBug), canonicalised, and canonicalised
# + adversarially trained models of each family (ngram-bag, char-cnn, transformer), then
# measures the detection rate at the operating point clean and under each attack family
# (deepwordbug, lookalike, obfuscation, synonym, encoding, hotflip). Only malicious test texts
# are attacked; the threshold is chosen on benign validation texts. Prints one table per data
# set (bench/evasion_table.py) and writes one HTML report per data set.
#
#   bench/text_evasion.sh [OUT_DIR]        (default runs/evasion)
#
# Env: DATASETS ("prompt-injection spam-assassin"), MODELS ("ngram-bag char-cnn transformer"),
# VARIANTS ("standard adversarial canonicalize canonicalize-adversarial"), ATTACKS (the six
# families), SEED (0), SPAM_LIMIT (training and test texts read for spam; default all),
# ADV_FRACTION (share of training texts attacked per epoch; default 0.3), EPOCHS_* per family.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/evasion}
DATASETS=${DATASETS:-"prompt-injection spam-assassin"}
MODELS=${MODELS:-"ngram-bag char-cnn transformer"}
VARIANTS=${VARIANTS:-"standard adversarial canonicalize canonicalize-adversarial"}
ATTACKS=${ATTACKS:-"deepwordbug,lookalike,obfuscation,synonym,encoding,hotflip"}
SEED=${SEED:-0}
ADV_FRACTION=${ADV_FRACTION:-0.3}
scripts/fetch_text_data.sh data/text >/dev/null
cargo build --release --locked -p advtrain-cli
BIN=./target/release/advtrain
mkdir -p "$OUT"
for ds in $DATASETS; do
  case $ds in
    spam-assassin) fpr=0.01; budget=20; limit=${SPAM_LIMIT:+--limit $SPAM_LIMIT} ;;
    prompt-injection) fpr=0.05; budget=5; limit="" ;;
    *) echo "unknown data set $ds" >&2; exit 2 ;;
  esac
  runs=()
  for model in $MODELS; do
    case $model in
      ngram-bag) epochs=${EPOCHS_NGRAM:-5} ;;
      char-cnn) epochs=${EPOCHS_CNN:-4} ;;
      transformer) epochs=${EPOCHS_TRANSFORMER:-4} ;;
    esac
    for variant in $VARIANTS; do
      dir="$OUT/$ds-$model-$variant"
      runs+=("$dir")
      case $variant in
        standard) extra=(--method standard) ;;
        adversarial) extra=(--method adversarial --attack deepwordbug --adv-fraction "$ADV_FRACTION") ;;
        canonicalize) extra=(--method standard --canonicalize) ;;
        canonicalize-adversarial) extra=(--method adversarial --attack deepwordbug --adv-fraction "$ADV_FRACTION" --canonicalize) ;;
      esac
      if [[ -f "$dir/summary.json" && -z "${FORCE:-}" ]]; then
        echo "== $ds $model $variant: trained already ($dir)"
      else
        echo "== $ds $model $variant"
        # shellcheck disable=SC2086
        "$BIN" train --dataset "$ds" --model "$model" --epochs "$epochs" --seed "$SEED" \
          --budget "$budget" --fpr "$fpr" --eval-attacks none --force -q $limit \
          "${extra[@]}" --out "$dir"
      fi
      for attack in ${ATTACKS//,/ }; do
        # shellcheck disable=SC2086
        "$BIN" eval --run "$dir" --attack "$attack" --budget "$budget" --fpr "$fpr" -q $limit
      done
    done
  done
  "$BIN" report "${runs[@]}" --out "$OUT/$ds-report.html" --force
  python3 bench/evasion_table.py "${runs[@]}"
done
