#!/usr/bin/env bash
# kiln against onnxruntime on every shipped model, one thread each, interleaved rounds in one run
# (benches/vs_onnxruntime.py has the method). Not part of the test suite: timings belong in
# benchmarks. Run it on a quiet machine.
#
#     benches/vs_onnxruntime.sh [--rounds N]
#
# Writes target/bench-vs-onnxruntime.json beside the printed table.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo xtask bootstrap
cargo build --release -q -p kiln-infer --bin kiln
.deps/venv/bin/python benches/vs_onnxruntime.py target/release/kiln --json target/bench-vs-onnxruntime.json "$@"
