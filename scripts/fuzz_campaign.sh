#!/usr/bin/env bash
# The fuzz campaign of BENCHMARKS.md: every fuzz target of fuzz/ run for SECONDS each from
# its committed seeds (and what earlier runs added under fuzz/work/), one process per
# target, then a markdown table of executions, corpus growth and peak memory per target.
# Fails on any crash, panic, timeout or out-of-memory (the input is under fuzz/artifacts/).
#
#   scripts/fuzz_campaign.sh [SECONDS_PER_TARGET]    (default 300)
#
# Same build and limits as scripts/fuzz_smoke.sh (which CI runs for 15 s per target).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
secs="${1:-300}"
targets=(idx cifar npy npz image safetensors checkpoint records text_files onnx)
if [ -z "${FUZZ_NO_BUILD:-}" ]; then
    cargo fuzz build --sanitizer none --fuzz-dir fuzz
fi
bin="fuzz/target/x86_64-unknown-linux-gnu/release"
stats() { grep -E "^stat::$2:" "$1" | awk '{print $2}'; }
echo "| target | seconds | executions | exec/s | new corpus units | peak RSS (MB) |"
echo "|---|---|---|---|---|---|"
total=0
failed=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t"
    log="fuzz/work/$t.campaign.log"
    if ! "$bin/$t" -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$secs" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
        "fuzz/work/$t" "fuzz/corpus/$t" 2>"$log"; then
        failed+=("$t")
    fi
    n=$(stats "$log" number_of_executed_units)
    total=$((total + ${n:-0}))
    echo "| $t | $secs | ${n:-?} | $(stats "$log" average_exec_per_sec) | $(stats "$log" new_units_added) | $(stats "$log" peak_rss_mb) |"
done
echo
echo "total executions: $total"
if ((${#failed[@]})); then
    echo "crashes in ${failed[*]} (inputs under fuzz/artifacts/; logs fuzz/work/<target>.campaign.log)" >&2
    exit 1
fi
