#!/usr/bin/env bash
# Fuzz smoke test: builds the fuzz targets of fuzz/ (coverage-guided, libFuzzer through
# cargo-fuzz, on the stable toolchain with --sanitizer none) and runs each from its committed
# seeds for a fixed number of inputs with a fixed random seed, so that the same code always
# meets the same inputs: a red CI is a real regression, never a lucky find (the open-ended
# search is scripts/fuzz_campaign.sh). Fails on any crash, panic, timeout or out-of-memory.
#
#   scripts/fuzz_smoke.sh [SCALE]    (default 5: about 5 million inputs, 2-3 minutes on 2 cores)
#
# SCALE multiplies every target's number of inputs. Needs only crates.io: cargo-fuzz is
# installed (--locked) when missing. New inputs go to a fresh temporary corpus, never into
# the committed fuzz/corpus/; a crashing input is written to fuzz/artifacts/<target>/ —
# copy it to fuzz/regressions/<target>/ with the fix, so the replay test in the library's
# suite keeps it covered.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scale="${1:-5}"
targets=(idx cifar npy npz image safetensors checkpoint records text_files onnx)
# Inputs per target: ~10-20 s each at the rates of BENCHMARKS.md §7 (image decoding and ONNX
# graphs are slow, the binary formats fast).
declare -A runs=([idx]=100000 [cifar]=200000 [npy]=200000 [npz]=100000 [image]=3000
    [safetensors]=100000 [checkpoint]=200000 [records]=100000 [text_files]=30000 [onnx]=5000)

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cargo fuzz build --sanitizer none --fuzz-dir fuzz

failed=()
for t in "${targets[@]}"; do
    work="$(mktemp -d)"
    mkdir -p "fuzz/artifacts/$t" fuzz/work
    n=$((runs[$t] * scale))
    echo "== fuzzing $t: $n inputs, seed 1"
    # -rss_limit_mb / -malloc_limit_mb: an input may not make the parser take more than
    # 2 GiB, nor any single allocation above 1 GiB; -timeout: 10 s for one input is a hang;
    # -max_total_time: a ceiling for a very slow machine.
    if ! cargo fuzz run --sanitizer none --fuzz-dir fuzz "$t" "$work" "fuzz/corpus/$t" -- \
        -seed=1 -runs="$n" -max_total_time=300 -timeout=10 -rss_limit_mb=2048 \
        -malloc_limit_mb=1024 -print_final_stats=1 2>"fuzz/work/$t.log"; then
        failed+=("$t")
        tail -40 "fuzz/work/$t.log"
    fi
    rm -rf "$work"
    grep -E '^stat::number_of_executed_units|^stat::average_exec_per_sec' "fuzz/work/$t.log" || true
done

if ((${#failed[@]})); then
    echo "fuzz smoke: crashes in ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz smoke: ${#targets[@]} targets, seed 1, scale $scale, no crash"
