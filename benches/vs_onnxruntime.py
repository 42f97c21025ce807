"""kiln against onnxruntime on every shipped model, side by side, one thread each.

    .deps/venv/bin/python benches/vs_onnxruntime.py KILN_BINARY [--rounds 3] [--json OUT.json]

(`benches/vs_onnxruntime.sh` builds the release binary and runs this.) For each model and batch
(1, and a throughput batch: 64 windows, 256 points, 64 images) it runs, in interleaved rounds,
`kiln bench --json` (kiln times its own calls in-process: the library's load, its first call
and the per-call latency) and onnxruntime's `InferenceSession.run` on the same file with inputs of the same
shapes, `intra_op_num_threads = inter_op_num_threads = 1`, sequential execution.

A next-word model is timed on the call `kiln predict` makes (onnxruntime asked for the same
outputs: logits, hn, cn) and, where the file also writes every position's logits, on the call
`kiln score` makes (every output, both sides). Each side's
figure is the median over rounds of its p50 per call. It also times an empty onnxruntime call
(an Identity model on one float): Python's share of every onnxruntime figure, which matters on
the tiny models. Prints a Markdown table; `--json` writes the figures.
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

THROUGHPUT = {"next-word": 64, "generator-points": 256, "generator-images": 64}


def meta(path):
    return {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}


def batches(props):
    if props["kiln.kind"] == "next-word":
        return [1, THROUGHPUT["next-word"]]
    images = len(json.loads(props["kiln.output_shape"])) > 1
    return [1, THROUGHPUT["generator-images" if images else "generator-points"]]


def inputs(props, batch):
    rng = np.random.default_rng(0)
    if props["kiln.kind"] == "next-word":
        vocab = len(json.loads(props["kiln.vocab"]))
        seq, layers, hidden = (int(props[k]) for k in ("kiln.context", "kiln.layers", "kiln.hidden"))
        state = np.zeros((layers, batch, hidden), np.float32)
        return {"tokens": rng.integers(0, vocab, (batch, max(seq, 1)), dtype=np.int64), "h0": state, "c0": state}
    return {"z": rng.standard_normal((batch, int(props["kiln.latent"])), dtype=np.float32)}


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    start = time.perf_counter()
    s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return s, (time.perf_counter() - start) * 1e3


def ort_start(path, feed, outputs):
    """A fresh session's creation time and its first call's, in milliseconds."""
    sess, load = session(path)
    start = time.perf_counter()
    sess.run(outputs, feed)
    return load, (time.perf_counter() - start) * 1e3


def ort_p50(sess, feed, iters, warmup, outputs=None):
    for _ in range(warmup):
        sess.run(outputs, feed)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        sess.run(outputs, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def calls(path, props):
    """The calls timed on a model: (name, kiln bench flags, onnxruntime output names or None for all)."""
    if props["kiln.kind"] != "next-word":
        return [("samples", [], None)]
    rows = [("next word", [], ["logits", "hn", "cn"])]
    outputs = [o.name for o in onnx.load(path, load_external_data=False).graph.output]
    if "logits_all" in outputs:
        rows.append(("every position", ["--every-position"], None))
    return rows


def kiln_bench(binary, path, batch, iters, warmup, flags):
    out = subprocess.run(
        [binary, "bench", path, "--batch", str(batch), "--iters", str(iters), "--warmup", str(warmup), "--threads", "1", "--json", *flags],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    d = json.loads(out)
    return d["latency"]["p50_ms"], d["load_ms"], d["first_call_ms"]


def identity_model(folder):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "empty", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = os.path.join(folder, "identity.onnx")
    onnx.save(model, path)
    return path


def fmt_ms(ms):
    return f"{ms * 1e3:.1f} µs" if ms < 1 else f"{ms:.2f} ms"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kiln")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default="models")
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = []
    models = sorted(glob.glob(os.path.join(args.models, "*.onnx")))
    with tempfile.TemporaryDirectory() as tmp:
        empty, _ = session(identity_model(tmp))
        empty_feed = {"x": np.zeros(1, np.float32)}
        empties = []
        for path in models:
            props = meta(path)
            for call, flags, outputs in calls(path, props):
                for batch in batches(props):
                    feed = inputs(props, batch)
                    sess, _ = session(path)
                    # Enough calls for about a second per side and round, at least 20.
                    one = max(ort_p50(sess, feed, 5, 2, outputs), 1e-3)
                    iters = int(min(2000, max(20, 1000 / one)))
                    kiln, orts, kiln_loads, ort_loads, kiln_firsts, ort_firsts = [], [], [], [], [], []
                    for _ in range(args.rounds):
                        p50, load, first = kiln_bench(args.kiln, path, batch, iters, max(5, iters // 10), flags)
                        kiln.append(p50)
                        kiln_loads.append(load)
                        kiln_firsts.append(first)
                        orts.append(ort_p50(sess, feed, iters, max(5, iters // 10), outputs))
                        load, first = ort_start(path, feed, outputs)
                        ort_loads.append(load)
                        ort_firsts.append(first)
                        empties.append(ort_p50(empty, empty_feed, 2000, 100))
                    row = {
                        "model": os.path.basename(path).removesuffix(".onnx"),
                        "call": call,
                        "batch": batch,
                        "kiln_p50_ms": statistics.median(kiln),
                        "ort_p50_ms": statistics.median(orts),
                        "kiln_load_ms": statistics.median(kiln_loads),
                        "ort_load_ms": statistics.median(ort_loads),
                        "kiln_first_call_ms": statistics.median(kiln_firsts),
                        "ort_first_call_ms": statistics.median(ort_firsts),
                    }
                    row["ratio"] = row["kiln_p50_ms"] / row["ort_p50_ms"]
                    rows.append(row)
                    print(f"{row['model']} {call} batch {batch}: kiln {fmt_ms(row['kiln_p50_ms'])}, onnxruntime "
                          f"{fmt_ms(row['ort_p50_ms'])}", flush=True)
    empty_ms = statistics.median(empties)
    print()
    print("| model | call | batch | kiln p50 | onnxruntime p50 | kiln / ORT | kiln load + first call | ORT session + first run |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['call']} | {r['batch']} | {fmt_ms(r['kiln_p50_ms'])} | {fmt_ms(r['ort_p50_ms'])} | "
              f"{r['ratio']:.2f} | {r['kiln_load_ms']:.1f} + {r['kiln_first_call_ms']:.1f} ms | "
              f"{r['ort_load_ms']:.1f} + {r['ort_first_call_ms']:.1f} ms |")
    print(f"\nAn empty onnxruntime call (Identity on one float) costs {fmt_ms(empty_ms)} from Python: "
          "part of every onnxruntime figure above.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "ort_empty_call_ms": empty_ms, "onnxruntime": ort.__version__}, f, indent=1)


if __name__ == "__main__":
    main()
