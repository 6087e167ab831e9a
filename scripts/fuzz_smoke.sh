#!/usr/bin/env bash
# Fuzz smoke test: builds the fuzz targets of fuzz/ (coverage-guided, libFuzzer through
# cargo-fuzz, on the stable toolchain with --sanitizer none) and runs each for a short fixed
# time from its committed seeds; fails on any crash, panic, timeout or out-of-memory.
#
#   scripts/fuzz_smoke.sh [SECONDS_PER_TARGET]    (default 15: 10 targets, 150 s of fuzzing)
#
# Needs only crates.io: cargo-fuzz is installed (--locked) when missing. New inputs go to
# fuzz/work/<target>/ (git-ignored), never into the committed fuzz/corpus/; a crashing input
# is written to fuzz/artifacts/<target>/ — copy it to fuzz/regressions/<target>/ with the
# fix, so the replay test in the library's suite keeps it covered.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
secs="${1:-15}"
targets=(idx cifar npy npz image safetensors checkpoint records text_files onnx)

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cargo fuzz build --sanitizer none --fuzz-dir fuzz

failed=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t"
    echo "== fuzzing $t for ${secs}s"
    # -rss_limit_mb / -malloc_limit_mb: an input may not make the parser take more than
    # 2 GiB, nor any single allocation above 1 GiB; -timeout: 10 s for one input is a hang.
    if ! cargo fuzz run --sanitizer none --fuzz-dir fuzz "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -print_final_stats=1 2>"fuzz/work/$t.log"; then
        failed+=("$t")
        tail -40 "fuzz/work/$t.log"
    fi
    grep -E '^stat::number_of_executed_units|^stat::average_exec_per_sec' "fuzz/work/$t.log" || true
done

if ((${#failed[@]})); then
    echo "fuzz smoke: crashes in ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz smoke: ${#targets[@]} targets, ${secs}s each, no crash"
