#!/usr/bin/env bash
# Builds the GPU binary: advtrain with burn's CUDA backend, linked and stripped, at
# target/gpu/advtrain (`--device cuda`), and gzipped beside it. Works on a fresh clone with nothing but crates.io:
#
#   scripts/build_gpu.sh            # ~25 min cold on 2 cores; then copy target/gpu/advtrain
#
# How it links without LLVM: burn 0.22.1's CUDA backend (cubecl-cuda 0.11.3) compiles its
# kernels either as CUDA C++ through NVRTC or through LLVM, and always builds both; the LLVM
# half (cubecl-llvm) downloads an LLVM 23 bundle from GitHub in its build script. advtrain's
# `cuda` feature turns on cubecl-cuda's `cpp` feature (NVRTC compiles every kernel), and the
# workspace patches cubecl-llvm with vendor/cubecl-llvm-stub, which keeps the interface
# cubecl-cuda names and no LLVM (README.md there says why and what). The CUDA driver and
# NVRTC are loaded at run time (cudarc's dynamic loading), so building needs no CUDA toolkit
# and the binary runs on any machine with an NVIDIA driver and the CUDA libraries.
#
# It builds in its own target directory (target/gpu-build), so the CPU binary at
# target/release/advtrain is left as it is. The result runs on the CPU too (--device flex).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/gpu-build}"
# No debug line tables and no symbols: the binary is copied to the GPU machine with the tree.
export CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols
cargo build --locked --release -p advtrain-cli --features cuda "$@"
mkdir -p target/gpu
cp "$CARGO_TARGET_DIR/release/advtrain" target/gpu/advtrain.partial
mv target/gpu/advtrain.partial target/gpu/advtrain
# Undefined dynamic symbols would mean a library it needs at start-up; CUDA is not one.
if ldd target/gpu/advtrain | grep -qi "cuda\|nvrtc\|not found"; then
    echo "error: target/gpu/advtrain links a CUDA library or misses one at start-up:" >&2
    ldd target/gpu/advtrain >&2
    exit 1
fi
target/gpu/advtrain --version
# The binary is ~80 MB (burn's CUDA kernels are generated code); gzipped it is ~20 MB, small
# enough to travel with the working tree to a GPU machine. scripts/gpu_check.sh unpacks it.
gzip -9 -c target/gpu/advtrain > target/gpu/advtrain.gz.partial
mv target/gpu/advtrain.gz.partial target/gpu/advtrain.gz
echo "built target/gpu/advtrain ($(du -h target/gpu/advtrain | cut -f1); target/gpu/advtrain.gz $(du -h target/gpu/advtrain.gz | cut -f1)): run with --device cuda; scripts/gpu_check.sh checks it on a GPU"
