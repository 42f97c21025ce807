"""Checks a kiln-exported file with tools kiln did not write.

    python onnx_conformance.py MODEL.onnx INPUTS.json

Runs onnx.checker.check_model(full_check=True), then onnxruntime on the inputs in INPUTS.json
({"name": {"dtype": "int64"|"float32", "shape": [...], "data": [...]}, ...}) and prints every
output, flattened, as {"name": [...]} JSON on stdout.
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort

model_path, inputs_path = sys.argv[1], sys.argv[2]
onnx.checker.check_model(onnx.load(model_path), full_check=True)
with open(inputs_path) as f:
    spec = json.load(f)
feeds = {k: np.array(v["data"], dtype=v["dtype"]).reshape(v["shape"]) for k, v in spec.items()}
sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
names = [o.name for o in sess.get_outputs()]
outs = sess.run(names, feeds)
json.dump({n: o.ravel().tolist() for n, o in zip(names, outs)}, sys.stdout)
