//! `kiln-infer`: runs kiln's exported ONNX models with [tract](https://github.com/sonos/tract),
//! without libtorch, on workstations and small ARM boards alike.
//!
//! ```no_run
//! use kiln_infer::{LoadOptions, NextWordModel};
//!
//! let model = NextWordModel::load("models/seed-lstm.onnx", &LoadOptions::default())?;
//! let prediction = model.predict("i like", 3)?;
//! println!("{} ({:.2})", prediction.top[0].word, prediction.top[0].probability);
//! # Ok::<(), kiln_infer::Error>(())
//! ```
//!
//! Arrays cross the API as [`ndarray`] arrays (tract's own version, re-exported here).
//!
//! - [`contract`]: the metadata keys and graph names shared with the trainer.
//! - [`next_word`]: next-word prediction and text generation; [`sampling`]: softmax,
//!   temperature and top-k; [`text`]: the tokenizer and vocabulary; [`foreign`]: next-word
//!   models kiln did not write.
//! - [`generator`]: sampling from exported GAN generators; [`noise`]: portable seeded noise;
//!   [`samples`]: PNG grids, CSV and `.npy` files.
//! - [`numeric`]: the NaN-aware difference every equivalence check uses.
//! - [`bench`]: latency and throughput of a model on the machine at hand (`kiln bench`);
//!   [`heap`]: the allocator setting `kiln` makes at start (freed memory kept for the next call).
//! - [`load`], [`load_bytes`]: one read and parse of a model file, from a path or bytes, as
//!   the kind it declares (a next-word model's large weights read straight into tract's
//!   tensors); [`fsx`]: bounded reads and atomic file writes.

pub mod bench;
pub mod contract;
mod error;
pub mod foreign;
pub mod fsx;
mod fuse;
pub mod generator;
mod guard;
pub mod heap;
pub mod next_word;
pub mod noise;
pub mod numeric;
mod read;
pub mod samples;
pub mod sampling;
pub mod text;
mod weights;

pub use error::{Error, Result, Source as ErrorSource};
pub use generator::GeneratorModel;
pub use next_word::NextWordModel;
pub use read::{Limits, LoadOptions};
/// tract's ONNX protobuf types, re-exported for the exporter.
pub use tract_onnx::pb;
/// The `ndarray` version of the API's arrays.
pub use tract_onnx::prelude::tract_ndarray as ndarray;

/// Applies kiln's load-time rewrites ([`load`] applies them to every file) to a parsed ONNX
/// model: batch normalisation folded into the layer before it, a transposed convolution of a
/// one-pixel input turned into a matrix product. Each gives the same answers for less work;
/// returns how many nodes were rewritten. For tools that drive tract themselves, such as the
/// `profile` example.
pub fn rewrite_for_tract(model: &mut pb::ModelProto) -> usize {
    fuse::optimise(model)
}

/// The form of a model (after [`rewrite_for_tract`]) that a generator's calls of many rows run:
/// each chain of dense layers computed feature-major. `None` when the model has no such chain.
/// For tools that drive tract themselves, such as the `profile` example.
pub fn rewrite_for_many_rows(model: &pb::ModelProto) -> Option<pb::ModelProto> {
    fuse::for_many_rows(model)
}

/// Threads a batch is split across unless told otherwise: the cores this process may use (1
/// when that cannot be known).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A model file of either kind, as [`load`] found it.
// One value a loaded model: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Model {
    NextWord(NextWordModel),
    Generator(GeneratorModel),
}

/// Loads a model file, reading and parsing it once, as the kind its `kiln.kind` metadata
/// declares: a generator, or else a next-word model (`options` serve models without kiln
/// metadata; a generator needs none).
pub fn load(path: impl AsRef<std::path::Path>, options: &LoadOptions) -> Result<Model> {
    from_file(read::ModelFile::read(path.as_ref(), options)?, options)
}

/// Like [`load`], from the file's bytes; `name` names it in messages.
pub fn load_bytes(bytes: &[u8], name: &str, options: &LoadOptions) -> Result<Model> {
    from_file(read::ModelFile::parse(bytes, name.to_string(), options)?, options)
}

fn from_file(file: read::ModelFile, options: &LoadOptions) -> Result<Model> {
    if file.kind() == Some(contract::KIND_GENERATOR) {
        Ok(Model::Generator(GeneratorModel::from_file(file)?))
    } else {
        Ok(Model::NextWord(NextWordModel::from_file(file, options)?))
    }
}
