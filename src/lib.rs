//! The `kiln` root package holds no code of its own: its `tests/` are the cross-crate tests
//! (tch → ONNX → tract round trips, onnx/onnxruntime conformance, learning quality) and its
//! `benches/` the criterion benchmarks. The crates are `infer/` (`kiln-infer`), `export/`
//! (`kiln-export`) and `train/` (`kiln-train`); see the README.
