#!/usr/bin/env bash
# All of advtrain's tests: unit, property, integration, CLI end-to-end and doc tests.
# No data set or GPU needed: the tests generate their own small data.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
