//! Next-word models that kiln did not write: a plain one-hot model such as `torch.onnx.export`
//! writes for the seed lecture's code — one float input `[batch, seq, vocab]`, logits out, no
//! metadata. Its interface is read from the graph; its vocabulary comes from a JSON file of the
//! words in index order.

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::contract::{NextWordMeta, TokenizerSpec};
use crate::error::{Error, Result};
use crate::next_word::Interface;
use crate::read::LoadOptions;

/// A model without kiln metadata: accept a single one-hot float input `[batch, seq, vocab]`.
pub(crate) fn one_hot(
    model: InferenceModel,
    shown: &str,
    options: &LoadOptions,
) -> Result<(InferenceModel, NextWordMeta, Interface)> {
    let unsupported = |reason: String| Error::Unsupported { path: shown.to_string(), reason };
    let vocab_path = options.vocab.as_ref().ok_or_else(|| Error::NeedVocab(shown.to_string()))?;
    let shown_vocab = vocab_path.display().to_string();
    let vocab_text = std::fs::read_to_string(vocab_path)
        .map_err(|source| Error::Read { path: shown_vocab.clone(), source })?;
    let words: Vec<String> = serde_json::from_str(&vocab_text)
        .map_err(|source| Error::BadVocab { path: shown_vocab.clone(), source })?;
    if words.is_empty() {
        return Err(Error::EmptyVocab(shown_vocab));
    }
    let inputs = model.input_outlets().map_err(|e| unsupported(e.to_string()))?.len();
    if inputs != 1 {
        return Err(unsupported(format!(
            "it has {inputs} inputs; a model without kiln metadata must take one one-hot \
             float input [batch, seq, vocab]"
        )));
    }
    let fact = model.input_fact(0).map_err(|e| unsupported(e.to_string()))?;
    let dims: Vec<Option<usize>> = (0..fact.shape.rank().concretize().unwrap_or(0) as usize)
        .map(|i| fact.shape.dim(i).and_then(|d| d.concretize()).and_then(|d| d.as_i64().map(|v| v as usize)))
        .collect();
    let (seq, vocab) = match (fact.datum_type.concretize(), dims.as_slice()) {
        (Some(dt), [_, Some(seq), Some(vocab)]) if dt == f32::datum_type() => (*seq, *vocab),
        _ => {
            return Err(unsupported(format!(
                "its input is {fact:?}; expected one-hot float [batch, seq, vocab]"
            )))
        }
    };
    if words.len() != vocab {
        return Err(Error::VocabMismatch { vocab: words.len(), model: vocab });
    }
    let model = model
        .with_input_fact(0, f32::fact([1, seq, vocab]).into())
        .map_err(|e| unsupported(format!("{e:#}")))?;
    let meta = NextWordMeta {
        vocab: words,
        // The seed's vocabulary is plain lower-case words split on spaces.
        tokenizer: TokenizerSpec { lowercase: true, split_punctuation: false },
        context: seq,
        layers: 0,
        hidden: 0,
        stream: false,
        train_config: serde_json::Value::Null,
    };
    Ok((model, meta, Interface::OneHot { seq }))
}
