#!/usr/bin/env bash
# Regenerates the seed corpora under fuzz/corpus/<target>/: a few small valid files per
# fuzz target, written by advtrain's own writers (the ignored test write_seed_corpus in
# crates/advtrain/tests/suite/parser_fuzz_regressions.rs) plus copies of the ONNX test
# fixtures. fuzz/corpus/records/ is not generated: it holds the metrics.jsonl, eval JSON
# and summary.json of a small demo run (`advtrain train`), committed as they are.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
corpus="$root/fuzz/corpus"
for t in idx cifar npy npz image safetensors checkpoint text_files onnx; do
    rm -rf "${corpus:?}/$t"
done
cd "$root"
ADVTRAIN_FUZZ_CORPUS="$corpus" cargo test --workspace --offline --test suite \
    parser_fuzz_regressions::write_seed_corpus -- --ignored --exact
mkdir -p "$corpus/onnx"
for m in resnet nhwc_cnn cnn_bn tiny_vit; do
    cp "crates/advtrain/tests/fixtures/onnx/$m.onnx" "$corpus/onnx/"
done
du -sh "$corpus"
