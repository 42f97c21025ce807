//! `kiln-train`: trains kiln's models on libtorch through `tch` and exports them to ONNX with
//! kiln's own exporter (`kiln-export`).
//!
//! Grouped by what is trained:
//! - [`lm`]: next-word language models — the TextLSTM ([`lm::model`]), text to training windows
//!   ([`lm::corpus`]), presets, defaults and checks ([`lm::config`]), the training loop
//!   ([`lm::train`]) and the mapping to the exporter ([`lm::export`]).
//! - [`gan`]: GANs — the fully connected ([`gan::mlp`]) and convolutional ([`gan::dcgan`])
//!   families, the weight average ([`gan::ema`]), defaults and checks ([`gan::config`]), the
//!   training loop ([`gan::train`]) and the training data ([`gan::data`]: 2-D mixtures, image
//!   sets).
//! - [`eval`]: how good a generator is — mode metrics on 2-D mixtures ([`eval::modes`]), and a
//!   Fashion-MNIST classifier with the figures built on it ([`eval::classifier`],
//!   [`eval::fashion`]).
//!
//! Shared by both loops: [`optim`] (Adam, learning-rate schedules), [`checkpoint`] (safetensors
//! checkpoints with a kind and a format version), [`run`] (progress and log lines, per-epoch
//! seeds, output paths, the check of an exported file), [`weights`] (parameters out of a
//! `VarStore` for the exporter), [`plots`] and [`device`].

pub mod checkpoint;
pub mod device;
pub mod eval;
pub mod gan;
pub mod lm;
pub mod optim;
pub mod plots;
pub mod run;
pub mod weights;

pub use device::device;
