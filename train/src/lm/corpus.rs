//! From text to training examples: the vocabulary, and either one token stream or
//! `(context words → next word)` windows.
//!
//! - **Stream** (corpora): the lines' words one after another, `<eos>` after each line and once
//!   before the first, as `kiln score` and `kiln generate` read text (see
//!   [`kiln_infer::contract`]).
//! - **Windows** (the seed lecture): each non-empty line is one sequence; windows never cross a
//!   line break, so a corpus of sentences trains on sentences.

use std::collections::HashMap;
use std::path::Path;

use kiln_infer::contract::{TokenizerSpec, EOS, UNK};
use kiln_infer::text::{self, Vocab};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The seed lecture's six sentences.
/// The most text a corpus or held-out file may hold: 2,000 MB (about 350 million words, more
/// than this machine class can hold as training data). A larger file, or a device or pipe that
/// never ends (`/dev/zero` was read until memory ran out), is refused after reading this much.
pub const MAX_TEXT_BYTES: u64 = 2_000_000_000;

/// Reads the UTF-8 text file at `path` (`what` names it in messages: "corpus"), reading no more
/// than `max` bytes.
pub fn read_text(path: &Path, what: &str, max: u64) -> anyhow::Result<String> {
    kiln_infer::fsx::read_text_bounded(path, max).map_err(|e| match e {
        kiln_infer::fsx::ReadError::TooLarge { .. } => anyhow::anyhow!(
            "{what} {} holds more than the {} MB of text a run may read",
            path.display(),
            max / 1_000_000
        ),
        kiln_infer::fsx::ReadError::Io(e) => anyhow::anyhow!(e)
            .context(format!("cannot read {what} {} (it must be a UTF-8 text file)", path.display())),
    })
}

pub const SEED_SENTENCES: [&str; 6] =
    ["i like dog", "i love coffee", "i hate milk", "you like cat", "you love milk", "you hate coffee"];

/// How the vocabulary is chosen.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VocabOptions {
    /// Words seen fewer times become `<unk>`.
    pub min_count: usize,
    /// Keep at most this many words (most frequent first), `<unk>` included.
    pub max_vocab: Option<usize>,
}

/// Builds a vocabulary from tokenised lines: sorted by frequency, then alphabetically, so the
/// same corpus always gives the same ids. `<unk>` is added (first) only when some word is left
/// out or the corpus itself writes `<unk>`.
pub fn build_vocab(lines: &[Vec<String>], options: &VocabOptions) -> Vocab {
    let (mut kept, total) = ranked_words(lines, options.min_count);
    let corpus_has_unk = lines.iter().flatten().any(|w| w == UNK);
    if let Some(max) = options.max_vocab {
        let needs_unk = kept.len() > max || kept.len() < total || corpus_has_unk;
        kept.truncate(if needs_unk { max.saturating_sub(1) } else { max });
    }
    let mut out = Vec::with_capacity(kept.len() + 1);
    if kept.len() < total || corpus_has_unk {
        out.push(UNK.to_string());
    }
    out.extend(kept);
    Vocab::new(out)
}

/// The words of `lines` seen at least `min_count` times (never `<unk>` or `<eos>`), most
/// frequent first, then alphabetically; and how many distinct words there are in all.
fn ranked_words(lines: &[Vec<String>], min_count: usize) -> (Vec<String>, usize) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for w in lines.iter().flatten() {
        *counts.entry(w.as_str()).or_default() += 1;
    }
    let mut words: Vec<(&str, usize)> = counts.into_iter().filter(|&(w, _)| w != UNK && w != EOS).collect();
    words.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let total = words.len();
    let kept =
        words.into_iter().filter(|(_, c)| *c >= min_count.max(1)).map(|(w, _)| w.to_string()).collect();
    (kept, total)
}

/// A stream model's vocabulary: `<unk>` and `<eos>` first (held-out text always has words the
/// training text lacks, and every line ends), then the training words as [`build_vocab`] orders
/// and cuts them, `max_vocab` counting all.
pub fn build_stream_vocab(lines: &[Vec<String>], options: &VocabOptions) -> Vocab {
    let (mut kept, _) = ranked_words(lines, options.min_count);
    if let Some(max) = options.max_vocab {
        kept.truncate(max.saturating_sub(2));
    }
    let mut out = vec![UNK.to_string(), EOS.to_string()];
    out.extend(kept);
    Vocab::new(out)
}

/// Token ids of `lines` as one stream: `<eos>`, then each line's words followed by `<eos>`.
/// Returns the ids and how many words were read as `<unk>`; a vocabulary without `<eos>` or
/// `<unk>` (one read from a damaged checkpoint) is an error.
pub fn stream(lines: &[Vec<String>], vocab: &Vocab) -> anyhow::Result<(Vec<i64>, usize)> {
    if !(vocab.contains(EOS) && vocab.unk().is_some()) {
        anyhow::bail!("the vocabulary has no <eos> or no <unk>, which stream training needs");
    }
    let eos = vocab.id(EOS)? as i64;
    let mut ids = vec![eos];
    let mut unknown = 0;
    for line in lines {
        for w in line {
            unknown += usize::from(!vocab.contains(w));
            ids.push(vocab.id(w)? as i64);
        }
        ids.push(eos);
    }
    Ok((ids, unknown))
}

/// Tokenises `text` line by line, dropping empty lines.
pub fn tokenize_lines(spec: &TokenizerSpec, text: &str) -> Vec<Vec<String>> {
    text.lines().map(|l| text::words(spec, l)).filter(|w| !w.is_empty()).collect()
}

/// Training examples: `inputs` holds `context` ids per example, row-major.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Windows {
    pub context: usize,
    pub inputs: Vec<i64>,
    pub targets: Vec<i64>,
}

impl Windows {
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    fn push(&mut self, ids: &[i64], target: i64) {
        self.inputs.extend_from_slice(ids);
        self.targets.push(target);
    }
}

/// Every window of `context` words followed by its next word, within each line.
pub fn windows(lines: &[Vec<String>], vocab: &Vocab, context: usize) -> Windows {
    let mut w = Windows { context, ..Default::default() };
    for line in lines {
        // Known words map to themselves, others to <unk> where the vocabulary has it. A word
        // with no id at all (held-out text, vocabulary without <unk>) cuts the line: no window
        // may join the words on either side of it as if they were neighbours.
        for run in line.split(|t| vocab.id(t).is_err()) {
            let ids: Vec<i64> = run.iter().filter_map(|t| vocab.id(t).ok().map(|i| i as i64)).collect();
            for end in context..ids.len() {
                w.push(&ids[end - context..end], ids[end]);
            }
        }
    }
    w
}

/// Splits lines into training and held-out sets: a `fraction` of the lines (at least one when
/// the fraction is positive and there are two or more lines), chosen with `seed`.
pub fn split_lines(
    lines: Vec<Vec<String>>,
    fraction: f64,
    seed: u64,
) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    if fraction <= 0.0 || lines.len() < 2 {
        return (lines, Vec::new());
    }
    let mut order: Vec<usize> = (0..lines.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x005E_ED0F_5971));
    let n_valid = ((lines.len() as f64 * fraction).round() as usize).clamp(1, lines.len() - 1);
    let valid_set: std::collections::HashSet<usize> = order[..n_valid].iter().copied().collect();
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for (i, l) in lines.into_iter().enumerate() {
        if valid_set.contains(&i) {
            valid.push(l)
        } else {
            train.push(l)
        }
    }
    (train, valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<Vec<String>> {
        tokenize_lines(&TokenizerSpec { lowercase: true, split_punctuation: false }, text)
    }

    fn all(min_count: usize, max_vocab: Option<usize>) -> VocabOptions {
        VocabOptions { min_count, max_vocab }
    }

    #[test]
    fn text_is_read_up_to_the_limit_and_refused_beyond_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.txt");
        std::fs::write(&path, "to be or not\n").unwrap();
        assert_eq!(read_text(&path, "corpus", 13).unwrap(), "to be or not\n");
        let e = read_text(&path, "corpus", 12).unwrap_err().to_string();
        assert!(
            e.starts_with("corpus ") && e.ends_with("holds more than the 0 MB of text a run may read"),
            "{e}"
        );
        // A device that never ends is read no further than the limit.
        let e = read_text(Path::new("/dev/zero"), "corpus", 1 << 20).unwrap_err().to_string();
        assert!(e.contains("/dev/zero holds more than"), "{e}");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        let e = format!("{:#}", read_text(&path, "corpus", 100).unwrap_err());
        assert!(e.contains("it must be a UTF-8 text file"), "{e}");
    }

    #[test]
    fn vocabulary_is_ordered_by_frequency_then_alphabet() {
        let v = build_vocab(&lines(&SEED_SENTENCES.join("\n")), &all(1, None));
        let expect = ["i", "you", "coffee", "hate", "like", "love", "milk", "cat", "dog"];
        assert_eq!(v.words(), expect.map(String::from));
    }

    #[test]
    fn rare_words_and_overflow_become_unk() {
        let l = lines("a a a b b c\na b");
        let v = build_vocab(&l, &all(2, None));
        assert_eq!(v.words(), ["<unk>", "a", "b"].map(String::from));
        let v = build_vocab(&l, &all(1, Some(2)));
        assert_eq!(v.words(), ["<unk>", "a"].map(String::from));
        assert_eq!(v.id("c"), Ok(0));
    }

    #[test]
    fn windows_stay_inside_lines() {
        let l = lines("a b c d\ne f");
        let v = build_vocab(&l, &all(1, None));
        let w = windows(&l, &v, 2);
        // "a b → c", "b c → d"; the second line is too short for a window.
        assert_eq!(w.len(), 2);
        let id = |s: &str| v.id(s).unwrap() as i64;
        assert_eq!(w.inputs, [id("a"), id("b"), id("b"), id("c")]);
        assert_eq!(w.targets, [id("c"), id("d")]);
    }

    #[test]
    fn a_word_without_an_id_cuts_the_line() {
        let v = Vocab::new(["a", "b", "c", "d"].map(String::from).to_vec());
        // "x" has no id and there is no <unk>: "a b" and "c d" must not become "a b → c".
        let w = windows(&lines("a b x c d"), &v, 2);
        assert!(w.is_empty(), "{w:?}");
        let w = windows(&lines("a b c x d"), &v, 2);
        assert_eq!((w.inputs.as_slice(), w.targets.as_slice()), ([0, 1].as_slice(), [2].as_slice()));
    }

    #[test]
    fn a_stream_starts_and_ends_lines_with_eos() {
        let l = lines("a b a\nc a");
        let v = build_stream_vocab(&l, &all(1, Some(3)));
        // <unk>, <eos>, then the most frequent word only: max_vocab counts all three.
        assert_eq!(v.words(), ["<unk>", "<eos>", "a"].map(String::from));
        let (ids, unknown) = stream(&l, &v).unwrap();
        assert_eq!(ids, [1, 2, 0, 2, 1, 0, 2, 1]);
        assert_eq!(unknown, 2);
        // A vocabulary without <eos> (a damaged checkpoint's) is an error, not a panic.
        let damaged = Vocab::new(["<unk>", "a"].map(String::from).to_vec());
        assert!(stream(&l, &damaged).unwrap_err().to_string().contains("no <eos> or no <unk>"));
    }

    #[test]
    fn split_keeps_every_line_once() {
        let l: Vec<Vec<String>> = (0..10).map(|i| vec![i.to_string()]).collect();
        let (t, v) = split_lines(l.clone(), 0.2, 3);
        assert_eq!((t.len(), v.len()), (8, 2));
        let mut back: Vec<_> = t.into_iter().chain(v).collect();
        back.sort();
        let mut l = l;
        l.sort();
        assert_eq!(back, l);
    }
}
