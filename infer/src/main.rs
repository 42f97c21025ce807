//! `kiln`: the inference command line. Everything it does, the `kiln_infer` library does.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kiln_infer::bench::BenchOptions;
use kiln_infer::ndarray::{Array2, ArrayD};
use kiln_infer::next_word::GenerateOptions;
use kiln_infer::samples::SampleWriter;
use kiln_infer::{GeneratorModel, LoadOptions, Model, NextWordModel};

/// Static builds (`cargo xtask cross aarch64-musl`) bring their own allocator: musl's is slow for
/// tract's many short-lived buffers (infer/Cargo.toml gives the figures).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// Run kiln models: next-word prediction, text generation and generator sampling from an
/// exported `.onnx` file.
#[derive(Parser, Debug)]
#[command(name = "kiln", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show what a model is: kind, vocabulary, context, interface, training configuration.
    Info {
        /// The model file (.onnx).
        model: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Predict the next word after a prompt.
    Predict {
        /// The model file (.onnx).
        model: PathBuf,
        /// The words so far, e.g. "i like".
        prompt: String,
        /// How many candidate words to show.
        #[arg(short, default_value_t = 5)]
        k: usize,
        #[command(flatten)]
        load: LoadArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The per-word perplexity of a text: read as one stream with the state carried, every
    /// word (and line end) predicted from all the words before it.
    Score {
        /// The model file (.onnx).
        model: PathBuf,
        /// The text (UTF-8), read line by line as the model was trained.
        text: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Generate words after a prompt, one LSTM step per word.
    Generate {
        /// The model file (.onnx).
        model: PathBuf,
        /// The words to start from.
        prompt: String,
        /// How many words to generate.
        #[arg(short = 'n', long = "words", default_value_t = 20)]
        words: usize,
        /// Softmax temperature: lower is more conservative; 0 always takes the likeliest word.
        #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
        temperature: f32,
        /// Sample only among the K likeliest words.
        #[arg(long)]
        top_k: Option<usize>,
        /// Seed of the sampler: the same seed gives the same words.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Go on past the end of a line (stream models stop there by default).
        #[arg(long)]
        no_stop: bool,
        #[command(flatten)]
        load: LoadArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Draw samples from a generator; the same --seed gives the same noise on every platform.
    Sample {
        #[command(flatten)]
        args: SampleArgs,
        /// How many samples.
        #[arg(short = 'n', default_value_t = 64)]
        n: usize,
        /// Seed of the noise.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Samples along a path between two noise vectors (spherical interpolation, "slerp").
    Interpolate {
        #[command(flatten)]
        args: SampleArgs,
        /// Seed of the noise at the start.
        #[arg(long)]
        from: u64,
        /// Seed of the noise at the end.
        #[arg(long)]
        to: u64,
        /// Samples along the way, both ends included.
        #[arg(long, default_value_t = 10)]
        steps: usize,
    },
    /// Time a model on this machine: start-up, latency per call (p50, p99) and throughput.
    Bench {
        /// The model file (.onnx): a next-word model or a generator.
        model: PathBuf,
        /// Predictions or samples per call.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Timed calls.
        #[arg(long, default_value_t = 100)]
        iters: usize,
        /// Untimed calls first.
        #[arg(long, default_value_t = 10)]
        warmup: usize,
        /// Threads a generator's batch is split across [default: the cores]; next-word models
        /// run on one.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
        /// Next-word models: time scoring every position of the windows (as `kiln score`
        /// does) instead of predicting the next word.
        #[arg(long)]
        every_position: bool,
        #[command(flatten)]
        load: LoadArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
struct SampleArgs {
    /// The generator model file (.onnx).
    model: PathBuf,
    /// Where to write: .png (a grid, for image samples), .csv or .npy. Without it, vector
    /// samples print as CSV.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    out: Option<PathBuf>,
    /// Images per row of a PNG grid (default: about square).
    #[arg(long)]
    columns: Option<usize>,
    /// Also write the noise vectors fed to the generator, one row per sample (.npy or .csv).
    #[arg(long, value_name = "FILE")]
    save_noise: Option<PathBuf>,
    /// Threads a batch of samples is split across [default: the cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    #[command(flatten)]
    limits: LimitArgs,
}

impl SampleArgs {
    fn load(&self) -> anyhow::Result<GeneratorModel> {
        Ok(GeneratorModel::load_with(&self.model, &self.limits.options())?
            .with_threads(threads_or_cores(self.threads)))
    }

    /// What can be checked before the generator runs.
    fn validate(&self) -> anyhow::Result<()> {
        if let Some(path) = &self.save_noise {
            let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
            if !matches!(ext.as_deref(), Some("npy" | "csv")) {
                anyhow::bail!(
                    "--save-noise writes vectors: give a .npy or .csv file, not {}",
                    path.display()
                );
            }
            if self.out.as_deref().is_some_and(|out| same_file(out, path)) {
                anyhow::bail!("--save-noise and -o name the same file: the noise would replace the samples");
            }
        }
        Ok(())
    }
}

/// `--threads`, or the library's default (the cores).
fn threads_or_cores(flag: Option<u16>) -> usize {
    flag.map_or_else(kiln_infer::default_threads, usize::from)
}

/// Whether `a` and `b` name the same file, existing or not (`x.csv` and `./x.csv` do).
fn same_file(a: &Path, b: &Path) -> bool {
    let resolved = |p: &Path| {
        p.canonicalize().ok().or_else(|| {
            let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            Some(parent.canonicalize().ok()?.join(p.file_name()?))
        })
    };
    a == b || matches!((resolved(a), resolved(b)), (Some(x), Some(y)) if x == y)
}

#[derive(clap::Args, Debug)]
struct LoadArgs {
    /// For a model without kiln metadata (e.g. from torch.onnx.export): a JSON array of the
    /// vocabulary's words in index order.
    #[arg(long, value_name = "FILE")]
    vocab: Option<PathBuf>,
    /// For a recurrent model without kiln metadata whose graph does not show it: how its token
    /// input is laid out.
    #[arg(long, value_enum, requires = "vocab")]
    layout: Option<kiln_infer::foreign::TokenLayout>,
    #[command(flatten)]
    limits: LimitArgs,
}

impl LoadArgs {
    fn options(&self) -> LoadOptions {
        LoadOptions { vocab: self.vocab.clone(), layout: self.layout, limits: self.limits.limits() }
    }
}

/// How large a model file may be: refused beyond, before anything is built from it.
#[derive(clap::Args, Debug)]
struct LimitArgs {
    /// Refuse model files larger than this many megabytes [default: 100].
    #[arg(long, value_name = "MB")]
    max_model_mb: Option<u64>,
    /// Refuse graphs of more nodes than this [default: 10000].
    #[arg(long, value_name = "N")]
    max_nodes: Option<usize>,
    /// Refuse a call (a batch) whose values could take more than this many megabytes
    /// [default: 1000].
    #[arg(long, value_name = "MB")]
    max_call_mb: Option<u64>,
}

impl LimitArgs {
    fn limits(&self) -> kiln_infer::Limits {
        let d = kiln_infer::Limits::default();
        kiln_infer::Limits {
            max_bytes: self.max_model_mb.map_or(d.max_bytes, |mb| mb.saturating_mul(1_000_000)),
            max_nodes: self.max_nodes.unwrap_or(d.max_nodes),
            max_call_bytes: self.max_call_mb.map_or(d.max_call_bytes, |mb| mb.saturating_mul(1_000_000)),
        }
    }

    fn options(&self) -> LoadOptions {
        LoadOptions { vocab: None, layout: None, limits: self.limits() }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // tract allocates each call's values afresh: keep what a call frees for the next one.
    kiln_infer::heap::reuse_freed_memory();
    // The last line of defence: kiln checks what it reads before tract sees it, but tract's own
    // shape inference can still fail an assertion on a graph inconsistent in ways those checks
    // do not cover. Whatever panics, the user gets one line and exit 1, not a backtrace and
    // SIGABRT (release builds abort on panic), and no file is left half-written.
    std::panic::set_hook(Box::new(|info| {
        kiln_infer::fsx::remove_temporaries();
        let payload = info.payload();
        let what = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("no message");
        let what: String = what.chars().take(200).collect::<String>().replace('\n', " ");
        // A dependency's path from its crate's folder: `tract-hir-0.23.9/src/…`.
        fn file(f: &str) -> &str {
            f.split_once("/registry/src/").and_then(|(_, r)| r.split_once('/')).map_or(f, |(_, r)| r)
        }
        let at = info.location().map(|l| format!(" at {}:{}", file(l.file()), l.line())).unwrap_or_default();
        eprintln!(
            "error: internal failure while reading or running the model ({what}{at}): the file is \
             probably damaged or inconsistent; if it is not, please report it"
        );
        std::process::exit(1);
    }));
    // Interrupted (Ctrl-C, SIGTERM, a closed terminal), kiln removes the files it was writing:
    // none is left half-written, under its name or a temporary one.
    let _ = ctrlc::set_handler(|| {
        kiln_infer::fsx::remove_temporaries();
        std::process::exit(130);
    });
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {:#}", in_flags(err));
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The library's errors in this command's terms: its flags' names for arguments, and what to
/// pass for a vocabulary.
fn in_flags(err: anyhow::Error) -> anyhow::Error {
    use kiln_infer::Error;
    let Some(e) = err.downcast_ref::<Error>() else { return err };
    let flag = |name: &str| match name {
        "k" => "-k",
        "n" => "-n",
        "temperature" => "--temperature",
        "top_k" => "--top-k",
        "steps" => "--steps",
        "batch" => "--batch",
        "iters" => "--iters",
        "every_position" => "--every-position",
        _ => "",
    };
    match e {
        Error::Argument { name, rule } if !flag(name).is_empty() => {
            anyhow::anyhow!("invalid option: {} {rule}", flag(name))
        }
        Error::NeedVocab(path) => anyhow::anyhow!(
            "{path} has no kiln metadata, so its vocabulary is unknown: pass --vocab FILE \
             (a JSON array of the words in index order)"
        ),
        Error::VocabNotNeeded(path) => anyhow::anyhow!("{path} carries its own vocabulary; drop --vocab"),
        Error::TooLarge { .. } => {
            let flag = if matches!(e, Error::TooLarge { what: "bytes", .. }) {
                "--max-model-mb"
            } else {
                "--max-nodes"
            };
            anyhow::anyhow!("{e} ({flag} raises it)")
        }
        Error::CallTooLarge { .. } | Error::BuildsTooMuch { .. } | Error::NoCallFits { .. } => {
            anyhow::anyhow!("{e} (--max-call-mb raises it)")
        }
        _ => err,
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Info { model, load, json } => match kiln_infer::load(&model, &load.options())? {
            Model::Generator(g) => {
                let meta = g.meta();
                if json {
                    let info = serde_json::json!({
                        "kind": kiln_infer::contract::KIND_GENERATOR,
                        "latent": meta.latent,
                        "output_shape": meta.output_shape,
                        "value_range": meta.value_range,
                        "dataset": meta.dataset,
                        "train_config": meta.train_config,
                    });
                    writeln!(out, "{}", serde_json::to_string_pretty(&info)?)?;
                } else {
                    writeln!(out, "model:        {}", model.display())?;
                    writeln!(out, "kind:         {}", kiln_infer::contract::KIND_GENERATOR)?;
                    writeln!(out, "noise:        {} values (standard normal)", meta.latent)?;
                    writeln!(out, "sample shape: {:?}", meta.output_shape)?;
                    writeln!(out, "value range:  [{}, {}]", meta.value_range[0], meta.value_range[1])?;
                    writeln!(out, "data set:     {}", meta.dataset)?;
                    if !meta.train_config.is_null() {
                        writeln!(out, "training:     {}", meta.train_config)?;
                    }
                }
            }
            Model::NextWord(m) => {
                let meta = m.meta();
                if json {
                    let info = serde_json::json!({
                        "kind": kiln_infer::contract::KIND_NEXT_WORD,
                        "interface": m.interface(),
                        "vocab_size": meta.vocab.len(),
                        "vocab": &meta.vocab[..],
                        "context": meta.context,
                        "stream": meta.stream,
                        "tokenizer": meta.tokenizer,
                        "train_config": meta.train_config,
                    });
                    writeln!(out, "{}", serde_json::to_string_pretty(&info)?)?;
                } else {
                    writeln!(out, "model:      {}", model.display())?;
                    writeln!(out, "kind:       {}", kiln_infer::contract::KIND_NEXT_WORD)?;
                    match m.interface() {
                        kiln_infer::next_word::Interface::TokenIds { layers, hidden } => writeln!(
                            out,
                            "interface:  token ids, LSTM state carried ({layers} layer(s), hidden {hidden})"
                        )?,
                        kiln_infer::next_word::Interface::OneHot { seq } => {
                            writeln!(out, "interface:  one-hot input, fixed window of {seq} words")?
                        }
                        kiln_infer::next_word::Interface::ForeignTokenIds {
                            layers,
                            hidden,
                            layout,
                            every_position,
                        } => {
                            let layout = match layout {
                                kiln_infer::foreign::TokenLayout::SeqFirst => "[seq, batch]",
                                kiln_infer::foreign::TokenLayout::BatchFirst => "[batch, seq]",
                            };
                            let scores = if every_position { "every position" } else { "the last position" };
                            writeln!(
                                out,
                                "interface:  token ids {layout}, LSTM state carried ({layers} layer(s), hidden {hidden}), \
                                 scores for {scores} (no kiln metadata)"
                            )?
                        }
                    }
                    if meta.stream {
                        writeln!(
                            out,
                            "reads:      one stream, state carried, <eos> ending lines (trained {} words at a time)",
                            meta.context
                        )?;
                    } else {
                        writeln!(out, "context:    {} words", meta.context)?;
                    }
                    let shown: Vec<&str> = meta.vocab.iter().take(12).map(String::as_str).collect();
                    let more = if meta.vocab.len() > 12 { ", …" } else { "" };
                    writeln!(out, "vocabulary: {} words: {}{more}", meta.vocab.len(), shown.join(", "))?;
                    writeln!(
                        out,
                        "tokenizer:  lowercase {}, punctuation as tokens {}",
                        meta.tokenizer.lowercase, meta.tokenizer.split_punctuation
                    )?;
                    if !meta.train_config.is_null() {
                        writeln!(out, "training:   {}", meta.train_config)?;
                    }
                }
            }
        },
        Command::Predict { model, prompt, k, load, json } => {
            let m = NextWordModel::load(&model, &load.options())?;
            let p = m.predict(&prompt, k)?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&p)?)?;
            } else {
                for note in context_notes(&p.context) {
                    eprintln!("note: {note}");
                }
                for wp in &p.top {
                    writeln!(out, "{:<16} {:.4}", wp.word, wp.probability)?;
                }
            }
        }
        Command::Score { model, text, load, json } => {
            let m = NextWordModel::load(&model, &load.options())?;
            let max = kiln_infer::next_word::MAX_SCORED_TEXT_BYTES;
            let body = kiln_infer::fsx::read_text_bounded(&text, max).map_err(|e| match e {
                kiln_infer::fsx::ReadError::TooLarge { .. } => anyhow::anyhow!(
                    "{} holds more than the {} MB of text kiln scores at once: score it in parts",
                    text.display(),
                    max / 1_000_000
                ),
                kiln_infer::fsx::ReadError::Io(e) => anyhow::anyhow!(e)
                    .context(format!("cannot read {} (it must be a UTF-8 text file)", text.display())),
            })?;
            let s = m.score(&body)?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
            } else {
                writeln!(out, "text:          {}", text.display())?;
                writeln!(
                    out,
                    "predictions:   {} ({} words, {} line ends); {} words read as <unk> ({:.2}%)",
                    s.predictions,
                    s.predictions - s.line_ends,
                    s.line_ends,
                    s.unknown,
                    100.0 * s.unknown as f64 / s.predictions as f64
                )?;
                writeln!(out, "cross-entropy: {:.4} nats per word", s.cross_entropy)?;
                writeln!(out, "perplexity:    {:.2}", s.perplexity)?;
            }
        }
        Command::Generate { model, prompt, words, temperature, top_k, seed, no_stop, load, json } => {
            let m = NextWordModel::load(&model, &load.options())?;
            let options = GenerateOptions { words, temperature, top_k, seed, stop_at_eos: !no_stop };
            if json {
                let g = m.generate(&prompt, &options)?;
                writeln!(out, "{}", serde_json::to_string_pretty(&g)?)?;
            } else {
                let (context, words) = m.generate_iter(&prompt, &options)?;
                for note in context_notes(&context) {
                    eprintln!("note: {note}");
                }
                // Words appear as they are chosen, joined back into text.
                let mut joiner = kiln_infer::text::Joiner::new();
                let separate = !m.meta().tokenizer.split_punctuation;
                for (i, word) in words.enumerate() {
                    let word = word.context("generation failed")?;
                    if separate {
                        write!(out, "{}{word}", if i == 0 { "" } else { " " })?;
                    } else {
                        write!(out, "{}", joiner.push(&word))?;
                    }
                    out.flush()?;
                }
                writeln!(out)?;
            }
        }
        Command::Sample { args, n, seed } => {
            args.validate()?;
            let g = args.load()?;
            let chunks = g.sample_chunks(n, seed)?;
            write_samples(&mut out, &args, &g, n, chunks)?;
        }
        Command::Interpolate { args, from, to, steps } => {
            args.validate()?;
            let g = args.load()?;
            let chunks = g.interpolate_chunks(from, to, steps)?;
            let args = SampleArgs { columns: args.columns.or(Some(steps)), ..args };
            write_samples(&mut out, &args, &g, steps, chunks)?;
        }
        Command::Bench { model, batch, iters, warmup, threads, every_position, load, json } => {
            let options = BenchOptions {
                batch,
                iters,
                warmup,
                threads: threads_or_cores(threads),
                every_position,
                load: load.options(),
            };
            let r = kiln_infer::bench::bench(&model, &options)?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
            } else {
                let l = &r.latency;
                writeln!(out, "model:      {} ({})", model.display(), r.kind)?;
                writeln!(out, "call:       {}", r.call)?;
                writeln!(out, "load:       {:.1} ms", r.load_ms)?;
                writeln!(
                    out,
                    "first call: {:.1} ms (with its plan, where a model plans per shape)",
                    r.first_call_ms
                )?;
                let threads =
                    if r.threads == 1 { "one thread".to_string() } else { format!("{} threads", r.threads) };
                writeln!(out, "calls:      {} timed after {} warm-up, {threads}", r.iters, r.warmup)?;
                writeln!(
                    out,
                    "latency:    p50 {:.3} ms  p99 {:.3} ms  mean {:.3} ms  (min {:.3}, max {:.3}) per call",
                    l.p50_ms, l.p99_ms, l.mean_ms, l.min_ms, l.max_ms
                )?;
                writeln!(out, "throughput: {:.1} {}/s", r.per_second, r.unit)?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `n` samples, a chunk at a time, to `-o` (or as CSV to `out`) and their noise to
/// `--save-noise`. Both files are opened before the generator runs and renamed into place only
/// once complete: a failure leaves neither.
fn write_samples(
    out: &mut dyn Write,
    args: &SampleArgs,
    g: &GeneratorModel,
    n: usize,
    chunks: impl Iterator<Item = kiln_infer::Result<(Array2<f32>, ArrayD<f32>)>>,
) -> anyhow::Result<()> {
    let meta = g.meta();
    let range = meta.value_range;
    let mut noise = match &args.save_noise {
        Some(path) => Some(SampleWriter::create(path, &[meta.latent], n, range, None)?),
        None => None,
    };
    let mut samples = match &args.out {
        Some(path) => SampleWriter::create(path, &meta.output_shape, n, range, args.columns)?,
        None if kiln_infer::samples::is_image(&meta.output_shape) => {
            anyhow::bail!("these samples are images: write them with -o FILE.png (or .npy)")
        }
        None => SampleWriter::csv_to(out, &meta.output_shape, n)?,
    };
    for chunk in chunks {
        let (z, s) = chunk?;
        samples.push(s.view())?;
        if let Some(w) = &mut noise {
            w.push(z.into_dyn().view())?;
        }
    }
    if let Some(w) = noise {
        w.finish()?;
    }
    if let Err(e) = samples.finish() {
        if let Some(path) = &args.save_noise {
            let _ = std::fs::remove_file(path);
        }
        return Err(e.into());
    }
    Ok(())
}

fn context_notes(c: &kiln_infer::next_word::Context) -> Vec<String> {
    let mut notes = Vec::new();
    if c.truncated {
        notes.push(format!("the model reads the last {} words: {:?}", c.words.len(), c.words.join(" ")));
    }
    if !c.unknown.is_empty() {
        let words: Vec<String> = c.unknown.iter().map(|w| kiln_infer::text::shorten(w)).collect();
        notes.push(format!("not in the vocabulary, read as <unk>: {}", words.join(", ")));
    }
    notes
}
