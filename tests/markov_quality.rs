//! Learning quality against its limit: text sampled from a known second-order Markov chain has
//! an exactly computable conditional entropy H(next | two previous words), the lowest
//! cross-entropy any model can reach on it. A model trained the way a corpus is trained (stream
//! protocol: one token stream, state carried, a prediction at every word) must come within 3% of
//! it on held-out text from the same chain.

mod common;

use kiln_train::lm::train;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const WORDS: usize = 30;

/// successors[a][b] = [(c, P(c | a, b))]: 2 to 4 successors per context, random weights.
fn chain(rng: &mut ChaCha8Rng) -> Vec<Vec<Vec<(usize, f64)>>> {
    (0..WORDS)
        .map(|_| {
            (0..WORDS)
                .map(|_| {
                    let k = rng.random_range(2..=4);
                    let mut next: Vec<usize> = Vec::new();
                    while next.len() < k {
                        let c = rng.random_range(0..WORDS);
                        if !next.contains(&c) {
                            next.push(c);
                        }
                    }
                    let w: Vec<f64> = (0..k).map(|_| rng.random_range(0.2..1.0)).collect();
                    let s: f64 = w.iter().sum();
                    next.into_iter().zip(w.into_iter().map(|x| x / s)).collect()
                })
                .collect()
        })
        .collect()
}

/// Stationary distribution over pairs (a, b), by averaged power iteration (Cesàro means
/// converge even if the chain is periodic).
fn stationary(p: &[Vec<Vec<(usize, f64)>>]) -> Vec<f64> {
    let mut pi = vec![1.0 / (WORDS * WORDS) as f64; WORDS * WORDS];
    let mut avg = vec![0.0; WORDS * WORDS];
    let (burn, keep) = (2000, 2000);
    for it in 0..burn + keep {
        let mut next = vec![0.0; WORDS * WORDS];
        for a in 0..WORDS {
            for b in 0..WORDS {
                for &(c, q) in &p[a][b] {
                    next[b * WORDS + c] += pi[a * WORDS + b] * q;
                }
            }
        }
        pi = next;
        if it >= burn {
            avg.iter_mut().zip(&pi).for_each(|(s, x)| *s += x / keep as f64);
        }
    }
    avg
}

/// `lines` lines of `len` words each, every line started from the stationary distribution over
/// pairs (`cumulative`: its running sum) and continued by the chain.
fn sample(
    rng: &mut ChaCha8Rng,
    p: &[Vec<Vec<(usize, f64)>>],
    cumulative: &[f64],
    lines: usize,
    len: usize,
) -> String {
    let mut text = String::new();
    for _ in 0..lines {
        let u = rng.random::<f64>() * cumulative[cumulative.len() - 1];
        let ab = cumulative.partition_point(|&c| c < u).min(WORDS * WORDS - 1);
        let (mut a, mut b) = (ab / WORDS, ab % WORDS);
        let mut line = vec![a, b];
        for _ in 2..len {
            let u = rng.random::<f64>();
            let succ = &p[a][b];
            let mut acc = 0.0;
            let mut c = succ[succ.len() - 1].0;
            for &(w, q) in succ {
                acc += q;
                if u < acc {
                    c = w;
                    break;
                }
            }
            line.push(c);
            (a, b) = (b, c);
        }
        let words: Vec<String> = line.iter().map(|w| format!("m{w}")).collect();
        text.push_str(&words.join(" "));
        text.push('\n');
    }
    text
}

#[test]
fn stream_training_comes_within_3_percent_of_the_true_entropy_on_held_out_text() {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let p = chain(&mut rng);
    let pi = stationary(&p);
    let entropy: f64 = (0..WORDS * WORDS)
        .map(|ab| pi[ab] * p[ab / WORDS][ab % WORDS].iter().map(|&(_, q)| -q * q.ln()).sum::<f64>())
        .sum();
    let cumulative: Vec<f64> = pi
        .iter()
        .scan(0.0, |s, x| {
            *s += x;
            Some(*s)
        })
        .collect();

    // Long lines, so that what no model can predict (where a line ends, a line's first two words)
    // weighs under 0.2% of the held-out figure: it is counted, and only makes the bar harder.
    // A million training words, about 1,100 for each of the 900 contexts: on 240k words of a
    // 50-word chain (2,500 contexts) an LSTM that sees the whole past memorised the text
    // (training loss 0.89, held-out 1.29), and even a count-based trigram estimate came 1.7%
    // above the entropy.
    let (train_text, valid_text) =
        (sample(&mut rng, &p, &cumulative, 100, 10_000), sample(&mut rng, &p, &cumulative, 10, 10_000));
    let dir = tempfile::tempdir().unwrap();
    let (corpus, valid) = (dir.path().join("markov.txt"), dir.path().join("markov-valid.txt"));
    std::fs::write(&corpus, train_text).unwrap();
    std::fs::write(&valid, valid_text).unwrap();
    if let Some(keep) = std::env::var_os("KILN_KEEP_MARKOV") {
        let keep = std::path::PathBuf::from(keep);
        std::fs::copy(&corpus, keep.join("markov.txt")).unwrap();
        std::fs::copy(&valid, keep.join("markov-valid.txt")).unwrap();
    }

    // The corpus defaults (2 layers, tied weights, BPTT 35, 20 streams, SGD at 20 with a cosine
    // decay, clipping 0.25, ±0.1 initialisation) at a size this small task needs, without
    // dropout. Measured (2026-12-01, this configuration): entropy 1.0124, held-out 1.0245, ratio
    // 1.012, 62 s in the dev profile; a count-based trigram estimate on the same text reaches
    // 1.0107 over the words it can predict. On a 50-word chain (2,500 contexts) a million
    // words are not enough for a test's time: 2 × 256, 4 epochs reached 1.033 × the entropy
    // (220 s), and 4 million words read once 1.028 (290 s).
    let options = kiln_train::lm::LmOptions {
        corpus: Some(corpus),
        valid: Some(valid),
        embed: Some(128),
        hidden: Some(128),
        dropout: Some(0.0),
        epochs: Some(4),
        seed: Some(1),
        ..Default::default()
    };
    let mut run = options.resolve(tch::Device::Cpu).unwrap();
    assert_eq!(run.train.protocol, kiln_train::lm::Protocol::Stream, "a corpus trains as a stream");
    run.log = kiln_train::run::LogStyle::Quiet;
    let outcome = train(&run).unwrap();
    let last = outcome.history.last().unwrap().valid_loss.unwrap();
    eprintln!(
        "true conditional entropy {entropy:.4} nats; held-out cross-entropy {last:.4}; ratio {:.4}; \
         per epoch {:?}",
        last / entropy,
        outcome.history.iter().map(|s| s.valid_loss.unwrap()).collect::<Vec<_>>()
    );
    assert!(last >= entropy * 0.97, "held-out loss {last} is below the entropy {entropy}: the split leaks");
    assert!(last <= entropy * 1.03, "held-out loss {last} is not within 3% of the entropy {entropy}");
}
