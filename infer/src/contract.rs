//! The model-file contract between `kiln-train` (which writes `.onnx` files) and `kiln-infer`
//! (which reads them). Every name that crosses that boundary lives here, so the two cannot drift.
//!
//! A kiln model is one ONNX file. Its `metadata_props` carry everything inference needs:
//!
//! | key                    | value                                                    |
//! |------------------------|----------------------------------------------------------|
//! | `kiln.format_version`  | [`FORMAT_VERSION`]                                       |
//! | `kiln.kind`            | [`KIND_NEXT_WORD`]                                       |
//! | `kiln.vocab`           | JSON array of words, in token-id order                   |
//! | `kiln.tokenizer`       | JSON [`TokenizerSpec`]                                   |
//! | `kiln.context`         | number of context words the model was trained on         |
//! | `kiln.layers`, `kiln.hidden` | LSTM depth and width (shape of `h0`/`c0`)          |
//! | `kiln.stream`          | `true` when the model reads text as one stream with the  |
//! |                        | state carried and [`EOS`] ending each line (absent: false) |
//! | `kiln.train_config`    | JSON: the training configuration, for provenance         |
//!
//! Next-word graphs take `tokens` int64 `[batch, seq]`, `h0`/`c0` float `[layers, batch, hidden]`
//! and give `logits` float `[batch, vocab]` (last position), `hn`, `cn`, and optionally
//! `logits_all` `[batch, seq, vocab]` (every position; kiln-train writes it), with which scoring
//! a text is one run per chunk instead of one per word.
//!
//! A stream model's text starts with [`EOS`] (the state after a line end), each line's words
//! follow, and [`EOS`] ends each line: it predicts where lines end, and reads a prompt whole.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Bumped whenever a reader of an older file would misread a newer one.
pub const FORMAT_VERSION: u32 = 1;
/// `kiln.kind` of a next-word language model.
pub const KIND_NEXT_WORD: &str = "next-word";
/// `kiln.kind` of a generator (GAN) model.
pub const KIND_GENERATOR: &str = "generator";

/// Metadata keys, as written into ONNX `metadata_props`.
pub mod key {
    pub const FORMAT_VERSION: &str = "kiln.format_version";
    pub const KIND: &str = "kiln.kind";
    pub const VOCAB: &str = "kiln.vocab";
    pub const TOKENIZER: &str = "kiln.tokenizer";
    pub const CONTEXT: &str = "kiln.context";
    pub const LAYERS: &str = "kiln.layers";
    pub const HIDDEN: &str = "kiln.hidden";
    pub const STREAM: &str = "kiln.stream";
    pub const TRAIN_CONFIG: &str = "kiln.train_config";
    pub const LATENT: &str = "kiln.latent";
    pub const OUTPUT_SHAPE: &str = "kiln.output_shape";
    pub const VALUE_RANGE: &str = "kiln.value_range";
    pub const DATASET: &str = "kiln.dataset";
}

/// Graph input and output names of a next-word model.
pub mod io {
    pub const TOKENS: &str = "tokens";
    pub const H0: &str = "h0";
    pub const C0: &str = "c0";
    pub const LOGITS: &str = "logits";
    pub const HN: &str = "hn";
    pub const CN: &str = "cn";
    /// Logits of every position, `[batch, seq, vocab]`.
    pub const LOGITS_ALL: &str = "logits_all";
    /// Generator input `[batch, latent]` and output `[batch, …sample shape]`.
    pub const Z: &str = "z";
    pub const SAMPLES: &str = "samples";
    /// Names of the symbolic dimensions.
    pub const BATCH: &str = "batch";
    pub const SEQ: &str = "seq";
}

/// The word used for out-of-vocabulary words, when the vocabulary has one.
pub const UNK: &str = "<unk>";
/// The end of a line, a word of stream models' vocabularies.
pub const EOS: &str = "<eos>";

/// How text is cut into words. Training and inference must agree, so it travels in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerSpec {
    /// Lower-case the text before splitting.
    pub lowercase: bool,
    /// Make each punctuation character a token of its own (`dog.` → `dog`, `.`).
    pub split_punctuation: bool,
}

impl Default for TokenizerSpec {
    fn default() -> Self {
        TokenizerSpec { lowercase: true, split_punctuation: true }
    }
}

/// Errors reading the contract from a file's metadata.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("the model has no `{0}` metadata: it was not written by kiln-train")]
    Missing(&'static str),
    #[error("metadata `{key}` is malformed: {reason}")]
    Malformed { key: &'static str, reason: String },
    #[error(
        "the model's format version {found} is newer than this kiln understands ({FORMAT_VERSION}): \
         upgrade kiln"
    )]
    TooNew { found: u32 },
    #[error("it is a {found} model, and this needs a {expected} model")]
    WrongKind { found: String, expected: &'static str },
}

/// Everything a next-word model file says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct NextWordMeta {
    /// The words, in token-id order (shared with the model's [`crate::Vocab`]).
    pub vocab: Arc<[String]>,
    pub tokenizer: TokenizerSpec,
    pub context: usize,
    pub layers: usize,
    pub hidden: usize,
    /// Reads text as one stream, the state carried, [`EOS`] ending each line (else: windows
    /// of `context` words read from a zero state).
    pub stream: bool,
    /// The training configuration, kept for provenance (`kiln info` shows it).
    pub train_config: serde_json::Value,
}

impl NextWordMeta {
    /// The `(key, value)` pairs to write into `metadata_props`.
    pub fn to_props(&self) -> Vec<(String, String)> {
        vec![
            (key::FORMAT_VERSION.into(), FORMAT_VERSION.to_string()),
            (key::KIND.into(), KIND_NEXT_WORD.into()),
            (key::VOCAB.into(), json(&self.vocab[..])),
            (key::TOKENIZER.into(), json(&self.tokenizer)),
            (key::CONTEXT.into(), self.context.to_string()),
            (key::LAYERS.into(), self.layers.to_string()),
            (key::HIDDEN.into(), self.hidden.to_string()),
            (key::STREAM.into(), self.stream.to_string()),
            (key::TRAIN_CONFIG.into(), json(&self.train_config)),
        ]
    }

    /// Reads the metadata back; `props` maps keys (without tract's `onnx.metadata_props.` prefix)
    /// to values.
    pub fn from_props(props: &BTreeMap<String, String>) -> Result<Self, ContractError> {
        check_header(props, KIND_NEXT_WORD)?;
        let get = |k: &'static str| props.get(k).ok_or(ContractError::Missing(k));
        let meta = NextWordMeta {
            vocab: parse_json::<Vec<String>>(key::VOCAB, get(key::VOCAB)?)?.into(),
            tokenizer: parse_json(key::TOKENIZER, get(key::TOKENIZER)?)?,
            context: parse(key::CONTEXT, get(key::CONTEXT)?)?,
            layers: parse(key::LAYERS, get(key::LAYERS)?)?,
            hidden: parse(key::HIDDEN, get(key::HIDDEN)?)?,
            stream: match props.get(key::STREAM) {
                Some(v) => parse(key::STREAM, v)?,
                None => false,
            },
            train_config: train_config(props)?,
        };
        if meta.vocab.is_empty() {
            return Err(malformed(key::VOCAB, "the vocabulary is empty"));
        }
        for (k, v) in [(key::CONTEXT, meta.context), (key::LAYERS, meta.layers), (key::HIDDEN, meta.hidden)] {
            if v == 0 {
                return Err(malformed(k, "it must be at least 1"));
            }
        }
        if meta.stream && !meta.vocab.iter().any(|w| w == EOS) {
            return Err(malformed(key::VOCAB, "a stream model's vocabulary must hold <eos>"));
        }
        Ok(meta)
    }
}

/// Everything a generator model file says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorMeta {
    /// Length of the noise vector `z`.
    pub latent: usize,
    /// Shape of one sample: `[2]` for points, `[C, H, W]` for images.
    pub output_shape: Vec<usize>,
    /// The range the samples are meant to lie in (e.g. `[-1, 1]` after a Tanh).
    pub value_range: [f32; 2],
    /// The data set the generator learnt (`ring8`, `fashion-mnist`, …).
    pub dataset: String,
    pub train_config: serde_json::Value,
}

impl GeneratorMeta {
    pub fn to_props(&self) -> Vec<(String, String)> {
        vec![
            (key::FORMAT_VERSION.into(), FORMAT_VERSION.to_string()),
            (key::KIND.into(), KIND_GENERATOR.into()),
            (key::LATENT.into(), self.latent.to_string()),
            (key::OUTPUT_SHAPE.into(), json(&self.output_shape)),
            (key::VALUE_RANGE.into(), json(&self.value_range)),
            (key::DATASET.into(), self.dataset.clone()),
            (key::TRAIN_CONFIG.into(), json(&self.train_config)),
        ]
    }

    pub fn from_props(props: &BTreeMap<String, String>) -> Result<Self, ContractError> {
        check_header(props, KIND_GENERATOR)?;
        let get = |k: &'static str| props.get(k).ok_or(ContractError::Missing(k));
        let meta = GeneratorMeta {
            latent: parse(key::LATENT, get(key::LATENT)?)?,
            output_shape: parse_json(key::OUTPUT_SHAPE, get(key::OUTPUT_SHAPE)?)?,
            value_range: parse_json(key::VALUE_RANGE, get(key::VALUE_RANGE)?)?,
            dataset: get(key::DATASET)?.clone(),
            train_config: train_config(props)?,
        };
        if meta.latent == 0 {
            return Err(malformed(key::LATENT, "it must be at least 1"));
        }
        if meta.output_shape.is_empty() || meta.output_shape.contains(&0) {
            return Err(malformed(key::OUTPUT_SHAPE, "every dimension of a sample must be at least 1"));
        }
        Ok(meta)
    }
}

/// Checks the format version and that the file is a `expected` model.
fn check_header(props: &BTreeMap<String, String>, expected: &'static str) -> Result<(), ContractError> {
    let get = |k: &'static str| props.get(k).ok_or(ContractError::Missing(k));
    let version: u32 = parse(key::FORMAT_VERSION, get(key::FORMAT_VERSION)?)?;
    if version > FORMAT_VERSION {
        return Err(ContractError::TooNew { found: version });
    }
    let kind = get(key::KIND)?;
    if kind != expected {
        return Err(ContractError::WrongKind { found: kind.clone(), expected });
    }
    Ok(())
}

/// The optional training configuration (kept for provenance).
fn train_config(props: &BTreeMap<String, String>) -> Result<serde_json::Value, ContractError> {
    match props.get(key::TRAIN_CONFIG) {
        Some(v) => parse_json(key::TRAIN_CONFIG, v),
        None => Ok(serde_json::Value::Null),
    }
}

fn malformed(key: &'static str, reason: impl Into<String>) -> ContractError {
    ContractError::Malformed { key, reason: reason.into() }
}

fn parse<T: std::str::FromStr>(key: &'static str, v: &str) -> Result<T, ContractError>
where
    T::Err: std::fmt::Display,
{
    v.trim().parse().map_err(|e: T::Err| malformed(key, e.to_string()))
}

fn parse_json<T: serde::de::DeserializeOwned>(key: &'static str, v: &str) -> Result<T, ContractError> {
    serde_json::from_str(v).map_err(|e| malformed(key, e.to_string()))
}

fn json<T: Serialize + ?Sized>(v: &T) -> String {
    // Strings, numbers and `serde_json::Value`s: serialising them cannot fail.
    serde_json::to_string(v).expect("plain data serialises to JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> NextWordMeta {
        NextWordMeta {
            vocab: vec!["<unk>".into(), "a".into(), "b".into()].into(),
            tokenizer: TokenizerSpec { lowercase: false, split_punctuation: true },
            context: 3,
            layers: 2,
            hidden: 8,
            stream: false,
            train_config: serde_json::json!({"epochs": 4}),
        }
    }

    /// A zero is blamed on the key that holds it.
    #[test]
    fn a_zero_size_names_its_own_key() {
        for k in [key::CONTEXT, key::LAYERS, key::HIDDEN] {
            let mut props: BTreeMap<_, _> = meta().to_props().into_iter().collect();
            props.insert(k.into(), "0".into());
            let e = NextWordMeta::from_props(&props).unwrap_err().to_string();
            assert!(e.contains(&format!("`{k}`")) && e.contains("at least 1"), "{e}");
        }
    }

    #[test]
    fn props_round_trip() {
        let props: BTreeMap<_, _> = meta().to_props().into_iter().collect();
        assert_eq!(NextWordMeta::from_props(&props).unwrap(), meta());
    }

    #[test]
    fn generator_props_round_trip_and_are_not_next_word() {
        let g = GeneratorMeta {
            latent: 16,
            output_shape: vec![1, 28, 28],
            value_range: [-1.0, 1.0],
            dataset: "fashion-mnist".into(),
            train_config: serde_json::json!({"epochs": 2}),
        };
        let props: BTreeMap<_, _> = g.to_props().into_iter().collect();
        assert_eq!(GeneratorMeta::from_props(&props).unwrap(), g);
        assert!(
            matches!(NextWordMeta::from_props(&props), Err(ContractError::WrongKind { found, .. }) if found == "generator")
        );
    }

    #[test]
    fn newer_format_and_other_kinds_are_refused() {
        let mut props: BTreeMap<_, _> = meta().to_props().into_iter().collect();
        props.insert(key::FORMAT_VERSION.into(), (FORMAT_VERSION + 1).to_string());
        assert!(matches!(NextWordMeta::from_props(&props), Err(ContractError::TooNew { .. })));
        props.insert(key::FORMAT_VERSION.into(), FORMAT_VERSION.to_string());
        props.insert(key::KIND.into(), "generator".into());
        assert!(matches!(NextWordMeta::from_props(&props), Err(ContractError::WrongKind { .. })));
        props.remove(key::VOCAB);
        props.insert(key::KIND.into(), KIND_NEXT_WORD.into());
        assert!(matches!(NextWordMeta::from_props(&props), Err(ContractError::Missing(_))));
    }
}
