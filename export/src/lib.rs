//! `kiln-export`: kiln's own ONNX writer.
//!
//! libtorch has no ONNX exporter, so kiln writes ONNX itself, op by op, from plain weight arrays
//! (the trainer copies them out of its tch `VarStore`). Nothing here needs libtorch, so the
//! exporter's tests run anywhere.
//!
//! - [`graph`]: a small builder over tract's ONNX protobuf types (initializers, nodes,
//!   symbolic shapes, metadata) and the atomic file writer.
//! - [`layers`]: one emitter per layer kind (embedding, LSTM, linear, activations, reshape,
//!   transposed convolution, batch normalisation), each a small function.
//! - [`next_word`]: assembles a next-word model that meets [`kiln_infer::contract`].
//! - [`generator`]: assembles a GAN generator (dense or transposed-convolution stacks).

pub mod generator;
pub mod graph;
pub mod layers;
pub mod next_word;

/// The opset kiln writes. 17 is what `torch.onnx.export` of the seed writes too; ≥ 13 gives
/// `Squeeze`/`Slice` axes as inputs.
pub const OPSET: i64 = 17;
/// ONNX IR version matching [`OPSET`] (ONNX 1.12+).
pub const IR_VERSION: i64 = 8;

/// What can go wrong turning weights into a graph.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{what}: expected {expected} values, found {found}")]
    Shape { what: String, expected: usize, found: usize },
    #[error("{0}")]
    Invalid(String),
    #[error("parameter `{0}` is in the model but no exported layer uses it")]
    UnusedParameter(String),
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

pub use generator::{generator_model, GenLayer};
pub use graph::write_model;
pub use next_word::{next_word_model, NextWordWeights};
