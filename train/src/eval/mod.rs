//! How good a trained generator is, measured on samples drawn from its exported file through
//! `kiln-infer`, as a user would draw them.
//!
//! - [`modes`]: mode coverage and sample quality on the built-in 2-D mixtures.
//! - [`classifier`]: a Fashion-MNIST classifier and the figures built on it (Inception Score,
//!   Fréchet distance, class histogram); [`fashion`]: the report that compares a generator's
//!   figures with real images'.

pub mod classifier;
pub mod fashion;
pub mod modes;
