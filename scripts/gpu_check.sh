#!/usr/bin/env bash
# The device check: on a machine with an NVIDIA GPU, checks that advtrain's GPU build
# computes what its CPU path computes, measures it beside PyTorch on the same GPU, and trains
# end to end. Prints a table last. About 5-8 minutes on one H200.
#
#   scripts/build_gpu.sh                  # here: builds target/gpu/advtrain
#   scripts/gpu_check.sh [BIN]            # there: BIN defaults to target/gpu/advtrain
#
# Needs on the GPU machine: the NVIDIA driver and CUDA libraries (NVRTC), python3 with
# PyTorch (CUDA build) and NumPy. Writes everything to $OUT (default runs/gpu-check).
#
# 1. Agreement, GPU vs CPU (`advtrain bench --check-against flex`): every zoo model, same
#    weights and inputs: logits, input gradient, logits after one SGD step, to float32
#    tolerance (crates/advtrain/src/device_check.rs). A disagreement fails the script.
# 2. Speed: `advtrain bench --device cuda` with preact-resnet18 on 3x32x32 inputs at batch
#    128 and 512 (forward, PGD-10, fgsm-rs step, PGD-AT step), and bench/peer_pytorch.py with
#    the same settings on the same GPU; advtrain/PyTorch ratios of images/s.
# 3. End to end: a 2-epoch fgsm-rs training run of preact-resnet18 on generated 3x32x32 data
#    (bench-free: the CLI as a user runs it) and a PGD-10 evaluation of it, on the GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/gpu/advtrain}"
OUT="${OUT:-runs/gpu-check}"
PY="${PYTHON:-python3}"
REPS="${REPS:-5}"
WARMUP="${WARMUP:-2}"
mkdir -p "$OUT"
status=0
step() { echo; echo "== $*"; }
fail() { echo "FAILED: $*" >&2; status=1; }

if [ ! -x "$BIN" ] && [ -f "$BIN.gz" ]; then
    # Carried gzipped (scripts/build_gpu.sh writes both): unpack beside the outputs.
    gunzip -c "$BIN.gz" > "$OUT/advtrain" && chmod +x "$OUT/advtrain" && BIN="$OUT/advtrain"
fi
[ -x "$BIN" ] || { echo "error: $BIN is not an executable (build it with scripts/build_gpu.sh)" >&2; exit 2; }
# NVRTC compiles the kernels at run time: the CUDA toolkit's copy, or PyTorch's pip wheels'.
nvrtc_dirs=$( { ls -d /usr/local/cuda/lib64 2>/dev/null
    "$PY" -c "import glob, os, site
for s in site.getsitepackages():
    for d in glob.glob(os.path.join(s, 'nvidia', '*', 'lib')): print(d)" 2>/dev/null; } | paste -sd: -)
export LD_LIBRARY_PATH="${nvrtc_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
step "GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt" \
    || fail "nvidia-smi"
"$BIN" --version | tee "$OUT/version.txt"

step "1. agreement with the CPU"
timeout 240 "$BIN" bench --device cuda --check-against flex --models small-cnn,madry-cnn,mlp \
    --workloads forward --batch 8 --reps 1 --warmup 0 -q 2>&1 | tee "$OUT/check-1x28x28.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "agreement on 1x28x28 models"
timeout 240 "$BIN" bench --device cuda --check-against flex --models preact-resnet18 \
    --input-shape 3,32,32 --workloads forward --batch 8 --reps 1 --warmup 0 -q 2>&1 \
    | tee "$OUT/check-3x32x32.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "agreement on preact-resnet18"

step "2. preact-resnet18, 3x32x32: advtrain and PyTorch on the same GPU"
common=(--models preact-resnet18 --input-shape 3,32,32 --reps "$REPS" --warmup "$WARMUP")
for batch in 128 512; do
    # Alternate which side goes first, so neither always gets the cooler GPU.
    if [ "$batch" = 128 ]; then order="advtrain pytorch"; else order="pytorch advtrain"; fi
    for side in $order; do
        echo "-- $side, batch $batch"
        if [ "$side" = advtrain ]; then
            timeout 240 "$BIN" bench --device cuda "${common[@]}" --batch "$batch" \
                --out "$OUT/advtrain-b$batch.json" || fail "advtrain bench, batch $batch"
        else
            timeout 240 "$PY" bench/peer_pytorch.py --device cuda "${common[@]}" --batch "$batch" \
                --json -q --out "$OUT/pytorch-b$batch.json" || fail "PyTorch peer, batch $batch"
        fi
    done
done

step "3. end to end: train and evaluate on generated data"
rm -rf "$OUT/synthetic" "$OUT/train-run"
"$PY" - "$OUT/synthetic" <<'PYEOF' || fail "generating the data"
# Ten classes, each a fixed random 3x32x32 pattern plus noise: learnable in two epochs.
import sys, os, numpy as np
out = sys.argv[1]; os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)
patterns = rng.uniform(0.2, 0.8, size=(10, 3, 32, 32)).astype(np.float32)
for split, n in (("train", 4096), ("test", 512)):
    y = rng.integers(0, 10, size=n).astype(np.int64)
    x = np.clip(patterns[y] + rng.normal(0, 0.15, size=(n, 3, 32, 32)), 0, 1).astype(np.float32)
    np.savez(os.path.join(out, f"{split}.npz"), x=x, y=y)
PYEOF
start=$(date +%s)
timeout 300 "$BIN" train --dataset npy --data "$OUT/synthetic" --model preact-resnet18 \
    --method fgsm-rs --eps 0.03 --epochs 2 --device cuda --out "$OUT/train-run" -q 2>&1 \
    | tee "$OUT/train.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "training on the GPU"
echo "train wall time: $(( $(date +%s) - start )) s" | tee -a "$OUT/train.txt"
timeout 120 "$BIN" eval --run "$OUT/train-run" --attack pgd --steps 10 --device cuda -q 2>&1 \
    | tee "$OUT/eval.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "evaluating on the GPU"

step "table"
"$PY" - "$OUT" <<'PYEOF'
import json, os, re, sys
out = sys.argv[1]
def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None
gpu = open(os.path.join(out, "gpu.txt")).read().strip() if os.path.exists(os.path.join(out, "gpu.txt")) else "?"
print(f"GPU: {gpu}")
for f in ("check-1x28x28.txt", "check-3x32x32.txt"):
    p = os.path.join(out, f)
    text = open(p).read() if os.path.exists(p) else ""
    ok, bad = text.count(": ok"), text.count("DISAGREES")
    print(f"agreement {f[6:-4]}: {ok} ok, {bad} disagree" + ("" if ok or bad else " (did not run)"))
print(f"{'batch':>5} {'workload':<13} {'advtrain img/s':>15} {'pytorch img/s':>14} {'ratio':>6}")
for batch in (128, 512):
    a, p = load(f"advtrain-b{batch}.json"), load(f"pytorch-b{batch}.json")
    if not a or not p:
        print(f"{batch:>5} (missing: {'advtrain' if not a else 'pytorch'})")
        continue
    pm = {r["workload"]: r for r in p["results"]}
    for r in a["results"]:
        q = pm.get(r["workload"])
        if q:
            ratio = r["images_per_s_median"] / q["images_per_s_median"]
            print(f"{batch:>5} {r['workload']:<13} {r['images_per_s_median']:>15.1f} "
                  f"{q['images_per_s_median']:>14.1f} {ratio:>5.2f}x")
for f in ("train.txt", "eval.txt"):
    p = os.path.join(out, f)
    if os.path.exists(p):
        lines = [l for l in open(p).read().splitlines() if l.strip()]
        print(f"{f[:-4]}: " + " | ".join(lines[-3:]))
PYEOF
exit $status
