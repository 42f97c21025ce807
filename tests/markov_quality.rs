//! Learning quality against its limit: text sampled from a known second-order Markov chain has
//! an exactly computable conditional entropy H(next | two previous words), the lowest
//! cross-entropy any model with two words of context can reach. The trained model's held-out
//! cross-entropy must come within 5% of it.

mod common;

use kiln_train::lm::train;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const WORDS: usize = 50;

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

#[test]
fn held_out_cross_entropy_is_within_5_percent_of_the_true_entropy() {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let p = chain(&mut rng);
    let pi = stationary(&p);
    let entropy: f64 = (0..WORDS * WORDS)
        .map(|ab| pi[ab] * p[ab / WORDS][ab % WORDS].iter().map(|&(_, q)| -q * q.ln()).sum::<f64>())
        .sum();

    // Lines start from the stationary distribution, so every window is drawn from it.
    let cumulative: Vec<f64> = pi
        .iter()
        .scan(0.0, |s, x| {
            *s += x;
            Some(*s)
        })
        .collect();
    let mut text = String::new();
    for _ in 0..2400 {
        let u = rng.random::<f64>() * cumulative[cumulative.len() - 1];
        let ab = cumulative.partition_point(|&c| c < u).min(WORDS * WORDS - 1);
        let (mut a, mut b) = (ab / WORDS, ab % WORDS);
        let mut line = vec![a, b];
        for _ in 0..98 {
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
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("markov.txt");
    std::fs::write(&corpus, text).unwrap();
    if let Some(keep) = std::env::var_os("KILN_KEEP_MARKOV") {
        std::fs::copy(&corpus, keep).unwrap();
    }

    // Measured with this configuration (kiln-train lm --protocol windows --embed 64 --hidden 256
    // --context 2 --epochs 16 --batch-size 256 --optimizer adam --lr 0.005, cosine schedule): 1.0509 against
    // 1.0155, ratio 1.035; a count-based trigram estimate on the same text reaches 1.040. The
    // windows protocol, two words of context as the chain has. Stream training, tried on the
    // same chain laid out as 24 or 48 lines of 10,000 words (limit 1.016 nats), memorised the
    // text instead: hidden 256, 8 epochs, BPTT 10, 32 streams, lr 0.005: training loss 0.89,
    // held-out 1.285; hidden 128, dropout 0.1, 48 lines, 6 epochs, BPTT 10, lr 0.01: held-out
    // 1.492; hidden 64: 1.81.
    let options = kiln_train::lm::LmOptions {
        corpus: Some(corpus),
        protocol: Some(kiln_train::lm::Protocol::Windows),
        embed: Some(64),
        hidden: Some(256),
        layers: Some(1),
        dropout: Some(0.0),
        context: Some(2),
        epochs: Some(16),
        batch_size: Some(256),
        optimizer: Some(kiln_train::optim::Method::Adam),
        lr: Some(0.005),
        clip: Some(5.0),
        seed: Some(1),
        ..Default::default()
    };
    let mut run = options.resolve(tch::Device::Cpu).unwrap();
    run.log = kiln_train::run::LogStyle::Quiet;
    let outcome = train(&run).unwrap();
    let best = outcome.history.iter().filter_map(|s| s.valid_loss).fold(f64::INFINITY, f64::min);
    let last = outcome.history.last().unwrap().valid_loss.unwrap();
    eprintln!(
        "true conditional entropy {entropy:.4} nats; held-out cross-entropy {last:.4} (best {best:.4}); \
         ratio {:.4}; {} training windows",
        last / entropy,
        outcome.data.train.len()
    );
    assert!(last >= entropy * 0.97, "held-out loss {last} is below the entropy {entropy}: the split leaks");
    assert!(last <= entropy * 1.05, "held-out loss {last} is not within 5% of the entropy {entropy}");
}
