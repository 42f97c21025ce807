//! The errors of loading and running models.

use crate::text::UnknownWord;

/// What can go wrong loading or querying a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} is not a model tract can load: {reason}")]
    BadModel { path: String, reason: String },
    #[error("{path}: {source}")]
    Contract { path: String, source: crate::contract::ContractError },
    #[error(
        "{0} has no kiln metadata, so its vocabulary is unknown: pass --vocab FILE \
         (a JSON array of the words in index order)"
    )]
    NeedVocab(String),
    #[error("{0} carries its own vocabulary; drop --vocab")]
    VocabNotNeeded(String),
    #[error("the vocabulary has {vocab} words but the model has {model} outputs")]
    VocabMismatch { vocab: usize, model: usize },
    #[error("{path} is not a next-word model: {reason}")]
    Unsupported { path: String, reason: String },
    #[error(transparent)]
    UnknownWord(#[from] UnknownWord),
    #[error("the prompt is empty: give at least one word")]
    EmptyPrompt,
    #[error("this model reads exactly {need} words of context, the prompt has {got}")]
    PromptTooShort { need: usize, got: usize },
    #[error("invalid option: {0}")]
    Option(String),
    #[error("{0}")]
    Output(String),
    #[error("inference failed: {0}")]
    Run(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn run_err(e: impl std::fmt::Display) -> Error {
    Error::Run(format!("{e:#}"))
}

/// Reads and parses an ONNX file; returns tract's model and the file's `metadata_props`
/// (without tract's `onnx.metadata_props.` prefix).
pub(crate) fn read_model(
    path: &std::path::Path,
) -> Result<(tract_onnx::prelude::InferenceModel, std::collections::BTreeMap<String, String>)> {
    use tract_onnx::prelude::Framework;
    let shown = path.display().to_string();
    let bytes =
        std::fs::read(path).map_err(|e| Error::Read { path: shown.clone(), reason: e.to_string() })?;
    let model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .map_err(|e| Error::BadModel { path: shown, reason: format!("{e:#}") })?;
    let props = crate::next_word::metadata(&model);
    Ok((model, props))
}
