"""Checks a kiln-exported file with tools kiln did not write.

    python onnx_conformance.py MODEL.onnx INPUTS.json

Runs onnx.checker.check_model(full_check=True), then onnxruntime on the inputs in INPUTS.json
({"tokens": [...], "batch": B, "seq": S, "h0": [...], "c0": [...], "layers": L, "hidden": H})
and prints {"logits": [...], "hn": [...], "cn": [...]} as JSON on stdout.
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort

model_path, inputs_path = sys.argv[1], sys.argv[2]
model = onnx.load(model_path)
onnx.checker.check_model(model, full_check=True)
with open(inputs_path) as f:
    inp = json.load(f)
b, s, l, h = inp["batch"], inp["seq"], inp["layers"], inp["hidden"]
sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
logits, hn, cn = sess.run(
    ["logits", "hn", "cn"],
    {
        "tokens": np.array(inp["tokens"], dtype=np.int64).reshape(b, s),
        "h0": np.array(inp["h0"], dtype=np.float32).reshape(l, b, h),
        "c0": np.array(inp["c0"], dtype=np.float32).reshape(l, b, h),
    },
)
json.dump({"logits": logits.ravel().tolist(), "hn": hn.ravel().tolist(), "cn": cn.ravel().tolist()}, sys.stdout)
