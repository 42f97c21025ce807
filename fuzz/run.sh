#!/usr/bin/env bash
# Runs one cargo-fuzz target for a while, seeding its corpus first from what the project has.
#
#     fuzz/run.sh TARGET [SECONDS]     # TARGET: model, checkpoint, idx or picture; 300 s by default
#
# Needs `cargo install cargo-fuzz` (it builds on the stable toolchain with `-s none`: coverage-
# guided, without a sanitizer) and `cargo xtask bootstrap` (libtorch, Python with numpy).
# A failing input is saved under fuzz/artifacts/TARGET/; replay it with
# `cargo fuzz run -s none -O TARGET fuzz/artifacts/TARGET/crash-…` (the checkpoint target needs
# libtorch's folder in LD_LIBRARY_PATH, as set below).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: fuzz/run.sh model|checkpoint|idx|picture [SECONDS]}
seconds=${2:-300}
corpus=fuzz/corpus/$target
mkdir -p "$corpus"
export LD_LIBRARY_PATH="$(find "$PWD/.deps" -name libtorch_cpu.so -printf '%h\n' | head -1)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -z "$(ls -A "$corpus")" ]; then
    case $target in
    model)
        cp models/seed-lstm.onnx models/ring8-gan.onnx infer/tests/fixtures/*.onnx "$corpus/" ;;
    checkpoint)
        # A small checkpoint of each kind, trained for one epoch.
        cargo build -q -p kiln-train
        tmp=$(mktemp -d)
        printf 'i like dog\ni love coffee\ni hate milk\n' > "$tmp/c.txt"
        target/debug/kiln-train lm --corpus "$tmp/c.txt" --out "$tmp/m.onnx" --epochs 1 --hidden 4 \
            --embed 4 --batch-size 1 --bptt 2 > /dev/null
        target/debug/kiln-train gan --data ring8 --out "$tmp/g.onnx" --epochs 1 --hidden 8 > /dev/null
        cp "$tmp"/*.safetensors "$corpus/"
        rm -rf "$tmp" ;;
    idx | picture)
        .deps/venv/bin/python - "$target" "$corpus" <<'PY'
import gzip, struct, sys, zlib
import numpy as np
target, corpus = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
if target == "idx":
    def idx(dims, data):
        return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)
    images = idx([3, 4, 4], rng.integers(0, 256, 48))
    open(f"{corpus}/images", "wb").write(images)
    open(f"{corpus}/images.gz", "wb").write(gzip.compress(images))
    open(f"{corpus}/labels", "wb").write(idx([3], [1, 2, 3]))
else:
    def png(w, h, channels):
        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        pixels = rng.integers(0, 256, w * h * channels).astype(np.uint8).tobytes()
        rows = b"".join(b"\0" + pixels[y * w * channels:(y + 1) * w * channels] for y in range(h))
        header = struct.pack(">IIBBBBB", w, h, 8, {1: 0, 3: 2}[channels], 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    open(f"{corpus}/grey.png", "wb").write(png(5, 3, 1))
    open(f"{corpus}/rgb.png", "wb").write(png(4, 6, 3))
PY
        ;;
    *) echo "unknown target $target (model, checkpoint, idx, picture)" >&2; exit 2 ;;
    esac
fi
# A case over 10 s or 2 GB fails: a hang or runaway memory. (The suite's model-file fuzzer,
# infer/tests/fuzz.rs, holds each case to the tighter 2 s and 200 MB.)
exec cargo fuzz run -s none -O "$target" -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=400000
