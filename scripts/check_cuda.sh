#!/usr/bin/env bash
# Type-checks the `cuda` build (burn's CUDA backend and advtrain's `--device cuda` path) so
# its code cannot rot; CI runs it. It needs no GPU and no CUDA toolkit. The linked GPU binary
# is scripts/build_gpu.sh's (NVRTC compiles the kernels; vendor/cubecl-llvm-stub/README.md
# says why no LLVM is linked); this check stops before code generation to stay cheap.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/cuda-check" \
  cargo check --locked --release -p advtrain-cli --features cuda "$@"
echo "cuda feature: type-check passed (scripts/build_gpu.sh builds and links the GPU binary)"
