//! The errors of loading and running models.
//!
//! Messages speak of the library's terms (an argument's name as the API spells it); each error
//! keeps its cause as its `source`, so printing the chain (`{:#}` with anyhow) shows the whole
//! story once. The `kiln` command line renames arguments to its flags.

use crate::text::UnknownWord;

/// A boxed cause (tract's errors, I/O errors, JSON errors).
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong loading or querying a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a JSON array of words")]
    BadVocab {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the vocabulary in {0} is empty")]
    EmptyVocab(String),
    #[error("{path} is not a model tract can load")]
    BadModel {
        path: String,
        #[source]
        source: Source,
    },
    #[error("{path}")]
    Contract {
        path: String,
        #[source]
        source: crate::contract::ContractError,
    },
    #[error("{path} has more than {limit} {what}, the most a model may have unless the limit is raised")]
    TooLarge { path: String, what: &'static str, limit: usize },
    /// A call whose values would not fit [`Limits::max_call_bytes`](crate::Limits).
    #[error(
        "this call would hold up to {need_mb} MB of values, more than the {limit_mb} MB a call may \
         use unless the limit is raised: use a smaller batch"
    )]
    CallTooLarge { need_mb: u64, limit_mb: u64 },
    /// A graph whose smallest call (every input symbol at 1, fixed shapes as declared) would not
    /// fit [`Limits::max_call_bytes`](crate::Limits): refused at load.
    #[error(
        "{path}: even its smallest call would hold up to {need_mb} MB of values, more than the \
         {limit_mb} MB a call may use unless the limit is raised"
    )]
    NoCallFits { path: String, need_mb: u64, limit_mb: u64 },
    /// A node that would build, at load, a tensor beyond [`Limits::max_call_bytes`](crate::Limits),
    /// or whose size cannot be known before it is built.
    #[error(
        "{path}: {node} would build {} at load, more than the {limit_mb} MB a model's values \
         may use unless the limit is raised",
        need_mb.map_or("a tensor of a size computed by ops kiln does not check".to_string(), |mb| format!("a tensor of {mb} MB"))
    )]
    BuildsTooMuch { path: String, node: String, need_mb: Option<u64>, limit_mb: u64 },
    /// Heavy arithmetic (a convolution, a recurrence) on constants only, which tract would run
    /// at load.
    #[error(
        "{path}: {node} reads only constants, so it would run while the model loads; a model's \
         convolutions and recurrences compute on its inputs (the file is damaged or not a model)"
    )]
    ComputesOnConstants { path: String, node: String },
    #[error("{path}: metadata `{key}` says {file}, but the graph has {graph}")]
    Disagrees { path: String, key: &'static str, file: String, graph: String },
    #[error(
        "{0} has no kiln metadata, so its vocabulary is unknown: give the vocabulary \
         (a JSON array of the words in index order)"
    )]
    NeedVocab(String),
    #[error("{0} carries its own vocabulary; no other is needed")]
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
    /// An argument out of its range; `name` is the argument as the API spells it (`k`,
    /// `temperature`, `top_k`, `n`, `steps`, `batch`, `iters`, `every_position`).
    #[error("invalid argument: {name} {rule}")]
    Argument { name: &'static str, rule: String },
    /// Inputs whose shapes or values do not fit the model.
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Output(String),
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("inference failed")]
    Run(#[source] Source),
    /// A panic while loading or running a model, caught and returned: tract's shape inference
    /// and kernels assert on some inconsistent graphs that kiln's checks before it do not cover.
    /// (Caught where panics unwind, as they do by default; the panic hook still runs first. A
    /// program built with `panic = "abort"` cannot catch it and should install a hook, as `kiln`
    /// does.)
    #[error(
        "{path}: internal failure while {doing} ({message}): the file is probably damaged or \
         inconsistent; if it is not, please report it"
    )]
    Internal { path: String, doing: &'static str, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// `name` breaks `rule` (e.g. `argument("k", "must be at least 1")`).
    pub(crate) fn argument(name: &'static str, rule: impl Into<String>) -> Self {
        Error::Argument { name, rule: rule.into() }
    }
}

/// Runs `f` (loading or running model `path`), returning a panic inside it as
/// [`Error::Internal`].
pub(crate) fn catching<T>(path: &str, doing: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        let message: String = message.chars().take(200).collect::<String>().replace('\n', " ");
        Err(Error::Internal { path: path.to_string(), doing, message })
    })
}

/// A failure inside tract while running a plan.
pub(crate) fn run_err(e: impl Into<Source>) -> Error {
    Error::Run(e.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_is_returned_as_an_error_naming_the_file_and_the_step() {
        let e = catching::<()>("m.onnx", "loading the model", || {
            let dims: Vec<usize> = Vec::new();
            // An index past the end, as tract's shape inference does on some broken graphs.
            let _ = dims[std::hint::black_box(3)];
            Ok(())
        })
        .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::Internal { doing: "loading the model", .. }), "{e:?}");
        assert!(
            text.starts_with("m.onnx: internal failure while loading the model (index out of bounds"),
            "{text}"
        );
        // What does not panic passes through, error or not.
        assert_eq!(catching("m.onnx", "x", || Ok(7)).unwrap(), 7);
        let e = catching::<()>("m.onnx", "x", || Err(Error::EmptyPrompt)).unwrap_err();
        assert!(matches!(e, Error::EmptyPrompt));
    }
}
