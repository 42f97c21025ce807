#!/usr/bin/env bash
# Word LM on the Shakespeare split (`cargo xtask bootstrap` fetches it): kiln-train against
# PyTorch's word_language_model procedure (benches/word_lm_pytorch.py), same machine, same
# token streams, same wall time; both held-out figures as `kiln score` computes them.
#
#     benches/word_lm.sh [EPOCHS] [extra kiln-train flags…]
#
# Not part of the test suite: it installs the full torch==2.13.0 wheel set (about 4.9 GB) into
# .deps/torch-venv on first use, and trains for as long as EPOCHS epochs of kiln take (twice).
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-3}
shift || true
cargo xtask bootstrap
venv=.deps/torch-venv
if ! "$venv/bin/python" -c "import torch, onnx" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check torch==2.13.0 numpy onnx
fi
# KILN_BIN_DIR: binaries built elsewhere (e.g. target/debug; the training itself is libtorch's).
bin=${KILN_BIN_DIR:-target/release}
[ -n "${KILN_BIN_DIR:-}" ] || cargo build --release -q -p kiln-train -p kiln-infer
data=.deps/shakespeare
out=target/bench-word-lm
mkdir -p "$out"
start=$(date +%s.%N)
"$bin/kiln-train" lm --corpus "$data/train.txt" --valid "$data/valid.txt" --max-vocab 8000 \
    --epochs "$epochs" --device cpu --out "$out/kiln.onnx" "$@" | tee "$out/kiln.log"
seconds=$(python3 -c "print($(date +%s.%N) - $start)")
"$bin/kiln" score "$out/kiln.onnx" "$data/valid.txt" --json > "$out/kiln-score.json"
"$venv/bin/python" benches/word_lm_pytorch.py "$out/kiln.onnx" "$data/train.txt" "$data/valid.txt" "$seconds" \
    > "$out/pytorch.json"
"$venv/bin/python" - "$out" "$seconds" <<'PY'
import json, re, sys
out, seconds = sys.argv[1], float(sys.argv[2])
kiln = json.load(open(f"{out}/kiln-score.json"))
torch = json.load(open(f"{out}/pytorch.json"))
speeds = [float(m) for m in re.findall(r"([0-9.]+) words/s", open(f"{out}/kiln.log").read())]
assert kiln["predictions"] == torch["predictions"], "the two token streams differ"
print(f"\n{'':<34}{'kiln':>12}{'PyTorch':>12}")
print(f"{'wall time (s)':<34}{seconds:>12.0f}{torch['seconds']:>12.0f}")
print(f"{'training words/s (mean of epochs)':<34}{sum(speeds) / len(speeds):>12.0f}{torch['words_per_second']:>12.0f}")
print(f"{'held-out perplexity':<34}{kiln['perplexity']:>12.2f}{torch['perplexity']:>12.2f}")
print(f"{'held-out predictions':<34}{kiln['predictions']:>12}{torch['predictions']:>12}")
print(f"(PyTorch: {torch['epochs']} epoch(s) in the same time, {torch['threads']} threads)")
PY
