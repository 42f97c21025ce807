//! Words in, token ids out: the tokenizer and vocabulary shared by training and inference.

use hashbrown::hash_table::{Entry, HashTable};
use hashbrown::DefaultHashBuilder;
use std::hash::BuildHasher as _;
use std::sync::Arc;

use crate::contract::{TokenizerSpec, EOS, UNK};

/// Cuts text into words as a [`TokenizerSpec`] says.
///
/// Words are separated by whitespace. With `split_punctuation`, every punctuation character is
/// a word of its own, except an apostrophe or hyphen between two letters (`don't`, `well-known`).
pub fn words(spec: &TokenizerSpec, text: &str) -> Vec<String> {
    let text = if spec.lowercase { text.to_lowercase() } else { text.to_string() };
    let mut out = Vec::new();
    for chunk in text.split_whitespace() {
        if !spec.split_punctuation {
            out.push(chunk.to_string());
            continue;
        }
        let chars: Vec<char> = chunk.chars().collect();
        let mut word = String::new();
        for (i, &c) in chars.iter().enumerate() {
            let inner_joiner = (c == '\'' || c == '-')
                && i > 0
                && i + 1 < chars.len()
                && chars[i - 1].is_alphanumeric()
                && chars[i + 1].is_alphanumeric();
            if is_punctuation(c) && !inner_joiner {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                out.push(c.to_string());
            } else {
                word.push(c);
            }
        }
        if !word.is_empty() {
            out.push(word);
        }
    }
    out
}

fn is_punctuation(c: char) -> bool {
    // `<` and `>` stay inside words so that `<unk>` written in a corpus stays one token.
    (c.is_ascii_punctuation() && c != '<' && c != '>')
        || matches!(c, '“' | '”' | '‘' | '’' | '«' | '»' | '…' | '—' | '–' | '¿' | '¡')
}

/// Joins words back into text, one at a time, as [`words`] with `split_punctuation` cut it:
/// no space before closing punctuation (`dog .` → `dog.`), none after opening brackets, quotes
/// paired, and [`EOS`] as a line break.
#[derive(Debug, Clone, Default)]
pub struct Joiner {
    /// Nothing written yet on this line.
    line_start: bool,
    /// The last word opens something (a bracket or an opening quote): no space after it.
    no_space_next: bool,
    /// Inside a `"…"` pair.
    in_quote: bool,
}

impl Joiner {
    pub fn new() -> Self {
        Joiner { line_start: true, ..Default::default() }
    }

    /// The text to write for `word`: a separator (or none), then the word; a newline for
    /// [`EOS`].
    pub fn push(&mut self, word: &str) -> String {
        if word == EOS {
            *self = Joiner::new();
            return "\n".into();
        }
        let closing = matches!(word, "." | "," | ";" | ":" | "!" | "?" | ")" | "]" | "}" | "…" | "’" | "”")
            || (word == "\"" && self.in_quote);
        let space = !(self.line_start || self.no_space_next || closing);
        // A lone apostrophe most often starts a word ('tis, 'twas).
        self.no_space_next =
            matches!(word, "(" | "[" | "{" | "“" | "‘" | "'") || (word == "\"" && !self.in_quote);
        if word == "\"" {
            self.in_quote = !self.in_quote;
        }
        self.line_start = false;
        if space {
            format!(" {word}")
        } else {
            word.to_string()
        }
    }
}

/// `words` joined into text by a [`Joiner`].
pub fn join(words: &[String]) -> String {
    let mut j = Joiner::new();
    words.iter().map(|w| j.push(w)).collect()
}

/// The words a model knows, in token-id order.
#[derive(Debug, Clone)]
pub struct Vocab {
    /// Shared with the model's metadata ([`crate::NextWordMeta::vocab`]): a model's 8,000 words
    /// copied took 0.35 ms of its load.
    words: Arc<[String]>,
    /// Each word's id, found by the word's hash and checked against `words`: the words are not
    /// stored twice (indexing the Shakespeare LSTM's 8,000 words took 0.65 ms with a map of
    /// copied words and SipHash).
    index: HashTable<usize>,
    hasher: DefaultHashBuilder,
    unk: Option<usize>,
}

/// A word the vocabulary does not have, in a vocabulary without `<unk>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the word {} is not in the model's vocabulary (and the vocabulary has no <unk>)", shorten(word))]
pub struct UnknownWord {
    pub word: String,
}

/// `word` quoted as a message shows it: whole up to 40 characters, else its start and its length
/// (a prompt can hold one word of megabytes).
pub fn shorten(word: &str) -> String {
    const SHOWN: usize = 40;
    let count = word.chars().count();
    if count <= SHOWN {
        format!("{word:?}")
    } else {
        let start: String = word.chars().take(SHOWN).collect();
        format!("{start:?}… ({count} characters)")
    }
}

impl Vocab {
    /// The vocabulary of `words`, the word of id `i` at `words[i]`. A word listed twice has
    /// the id of its last place.
    pub fn new(words: impl Into<Arc<[String]>>) -> Self {
        let words = words.into();
        let hasher = DefaultHashBuilder::default();
        let mut index = HashTable::with_capacity(words.len());
        for (id, word) in words.iter().enumerate() {
            let found = index.entry(
                hasher.hash_one(word.as_str()),
                |&other: &usize| words[other] == *word,
                |&other: &usize| hasher.hash_one(words[other].as_str()),
            );
            match found {
                Entry::Occupied(mut entry) => *entry.get_mut() = id,
                Entry::Vacant(entry) => {
                    entry.insert(id);
                }
            }
        }
        let mut vocab = Vocab { words, index, hasher, unk: None };
        vocab.unk = vocab.find(UNK);
        vocab
    }

    /// The id of `word`, if the vocabulary has it.
    fn find(&self, word: &str) -> Option<usize> {
        self.index.find(self.hasher.hash_one(word), |&id| self.words[id] == word).copied()
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// The word of `id`; `"<unk>"` for an id beyond the vocabulary (the models' outputs are
    /// checked against its size, so that is never a word a model chose).
    pub fn word(&self, id: usize) -> &str {
        self.words.get(id).map_or(UNK, String::as_str)
    }

    /// The id of `<unk>`, if the vocabulary has one.
    pub fn unk(&self) -> Option<usize> {
        self.unk
    }

    /// The id of `word`: `<unk>`'s id for unknown words where there is one, else an error.
    pub fn id(&self, word: &str) -> Result<usize, UnknownWord> {
        self.find(word).or(self.unk).ok_or_else(|| UnknownWord { word: word.to_string() })
    }

    /// Whether `word` is in the vocabulary (not counting the `<unk>` fallback).
    pub fn contains(&self, word: &str) -> bool {
        self.find(word).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_punctuation_but_keeps_contractions_and_unk() {
        let spec = TokenizerSpec { lowercase: true, split_punctuation: true };
        assert_eq!(
            words(&spec, "Don't stop, well-known <unk> dog.\n\"Yes!\""),
            ["don't", "stop", ",", "well-known", "<unk>", "dog", ".", "\"", "yes", "!", "\""]
        );
    }

    #[test]
    fn plain_whitespace_split_keeps_case_and_punctuation() {
        let spec = TokenizerSpec { lowercase: false, split_punctuation: false };
        assert_eq!(words(&spec, "  I like\tDog. "), ["I", "like", "Dog."]);
    }

    #[test]
    fn joining_undoes_the_punctuation_split() {
        let spec = TokenizerSpec { lowercase: false, split_punctuation: true };
        for text in ["I like dog.", "Yes, \"no\" (maybe): well-known; don't!", "Who's there? 'Tis I."] {
            assert_eq!(join(&words(&spec, text)), text);
        }
        let lines: Vec<String> = ["a", ".", EOS, "b"].map(String::from).to_vec();
        assert_eq!(join(&lines), "a.\nb");
    }

    #[test]
    fn unknown_words_fall_back_to_unk_only_when_present() {
        let with = Vocab::new(vec!["<unk>".into(), "dog".into()]);
        assert_eq!(with.id("dog"), Ok(1));
        assert_eq!(with.id("cat"), Ok(0));
        let without = Vocab::new(vec!["dog".into()]);
        assert_eq!(without.id("cat"), Err(UnknownWord { word: "cat".into() }));
        let long = "x".repeat(131_000);
        let e = without.id(&long).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("the word \"{}\"… (131000 characters) is not", "x".repeat(40))),
            "{e}"
        );
    }

    #[test]
    fn every_word_of_a_large_vocabulary_finds_its_own_id() {
        // Words that share prefixes and lengths, as a real vocabulary's do, and one listed twice.
        let mut words: Vec<String> = (0..20_000).map(|i| format!("w{}", i * 7919 % 20_000)).collect();
        words.push("w5".into());
        let vocab = Vocab::new(words.clone());
        assert_eq!(vocab.len(), 20_001);
        for (id, word) in words.iter().enumerate().take(20_000) {
            let want = if word == "w5" { 20_000 } else { id };
            assert_eq!(vocab.id(word), Ok(want), "{word}");
            assert_eq!(vocab.word(id), word);
        }
        for absent in ["w20000", "w", "", "W5", "w05"] {
            assert!(!vocab.contains(absent), "{absent:?}");
            assert!(vocab.id(absent).is_err(), "{absent:?}");
        }
        assert_eq!(vocab.unk(), None);
    }
}
