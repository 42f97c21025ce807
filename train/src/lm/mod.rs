//! Next-word language models: the TextLSTM, its data, its training run and its export.
//!
//! - [`model`]: the LSTM stack and the TextLSTM, top to bottom.
//! - [`corpus`]: text to vocabulary, and to one token stream or `(context words → next word)`
//!   windows.
//! - [`config`]: what a run is made of, the seed preset, the defaults for a corpus, the checks.
//! - [`train`]: the training loop, checkpoints, resume, and the checked export at the end.
//! - [`export`]: from a trained model's parameters to the exporter's layers.

pub mod config;
pub mod corpus;
pub mod export;
pub mod model;
pub mod train;

pub use config::{LmOptions, LmRun, Preset, Protocol, Source, TrainConfig};
pub use model::{InputKind, LmConfig, TextLstm};
pub use train::{resume, train, EpochStats, Examples, LmData, LmOutcome, Resume};
