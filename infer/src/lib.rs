//! `kiln-infer`: runs kiln's exported ONNX models with [tract](https://github.com/sonos/tract),
//! without libtorch, on workstations and small ARM boards alike.
//!
//! ```no_run
//! use kiln_infer::next_word::{LoadOptions, NextWordModel};
//!
//! let model = NextWordModel::load("models/seed-lstm.onnx", &LoadOptions::default())?;
//! let prediction = model.predict("i like", 3)?;
//! println!("{} ({:.2})", prediction.top[0].word, prediction.top[0].probability);
//! # Ok::<(), kiln_infer::next_word::Error>(())
//! ```
//!
//! - [`contract`]: the metadata keys and graph names shared with the trainer.
//! - [`text`]: the tokenizer and vocabulary.
//! - [`next_word`]: next-word prediction and text generation.
//! - [`generator`]: sampling from exported GAN generators; [`noise`]: portable seeded noise;
//!   [`samples`]: PNG grids, CSV and `.npy` files.
//! - [`bench`]: latency and throughput of a model on the machine at hand (`kiln bench`).

pub mod bench;
pub mod contract;
pub mod error;
pub mod fsx;
pub mod generator;
pub mod next_word;
pub mod noise;
pub mod samples;
pub mod text;

/// tract's ONNX protobuf types, re-exported for the exporter.
pub use tract_onnx::pb;

/// A model file of either kind, as [`load`] found it.
#[derive(Debug, Clone)]
pub enum Model {
    NextWord(next_word::NextWordModel),
    Generator(generator::GeneratorModel),
}

/// Loads a model file, reading and parsing it once, as the kind its `kiln.kind` metadata
/// declares: a generator, or else a next-word model (`options` serve models without kiln
/// metadata; a generator needs none).
pub fn load(path: impl AsRef<std::path::Path>, options: &next_word::LoadOptions) -> error::Result<Model> {
    let path = path.as_ref();
    let (model, props) = error::read_model(path)?;
    if props.get(contract::key::KIND).map(String::as_str) == Some(contract::KIND_GENERATOR) {
        Ok(Model::Generator(generator::GeneratorModel::from_parsed(path, model, &props)?))
    } else {
        Ok(Model::NextWord(next_word::NextWordModel::from_parsed(path, model, &props, options)?))
    }
}
