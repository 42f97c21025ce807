//! A seeded, structure-aware fuzzer of model files: the shipped models and the test fixtures,
//! mutated as a hostile or broken file would be (bytes flipped, files cut short, dimensions,
//! attributes, data types and metadata values changed, nodes duplicated, removed or rewired),
//! each fed to `kiln_infer::load_bytes` and, when it loads, to one call. Every case must end in
//! `Ok` or an `Err` — never a panic — within a time and memory budget.
//!
//! `cargo xtask test` runs `KILN_FUZZ_CASES` cases (10,000 by default, about 15 s here);
//! `cargo xtask fuzz --minutes N` runs this test for N minutes
//! (`KILN_FUZZ_SECONDS`), from `KILN_FUZZ_SEED` (default 0). A failing case prints its number:
//! `KILN_FUZZ_SEED=… KILN_FUZZ_CASES=1` (with `KILN_FUZZ_FIRST=…`) replays it, and
//! `target/fuzz-case.onnx` holds the file being tried (kept after a replay of one case, or if the
//! process dies on it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kiln_infer::pb::{tensor_proto::DataType, ModelProto};
use kiln_infer::{LoadOptions, Model};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Bytes held now and at most since the last reset, by this test process.
struct Counting;
static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = HELD.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now =
                    HELD.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                HELD.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What the case was doing: the `kiln` command that does the same.
static STAGE: std::sync::Mutex<&'static str> = std::sync::Mutex::new("info");

fn stage(s: &'static str) {
    *STAGE.lock().unwrap_or_else(|e| e.into_inner()) = s;
}

/// The word a next-word case prompts with.
static WORD: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// Where the first panic of the case happened and its message, caught by the library or not.
/// and the stage it happened in.
static WHERE: std::sync::Mutex<Option<(String, String, &'static str)>> = std::sync::Mutex::new(None);

/// What one case may take: the bar for `kiln` on a model file.
const CASE_SECONDS: f64 = 2.0;
const CASE_BYTES: usize = 200_000_000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The files mutated, with how often each is picked (the large models less often: each load of
/// theirs costs more). The Shakespeare LSTM is the one next-word model whose weights are large
/// enough to be read straight into tract's tensors.
fn corpus() -> Vec<(String, Vec<u8>, u32)> {
    [
        ("models/seed-lstm.onnx", 6),
        ("models/ring8-gan.onnx", 6),
        ("infer/tests/fixtures/tiny-points-generator.onnx", 6),
        ("infer/tests/fixtures/tiny-image-generator.onnx", 6),
        ("infer/tests/fixtures/tiny-coin-stream.onnx", 6),
        ("infer/tests/fixtures/seed_lstm_torch.onnx", 4),
        ("infer/tests/fixtures/word_lm_torch.onnx", 4),
        ("models/grid25-gan.onnx", 1),
        ("models/fashion-dcgan.onnx", 1),
        ("models/shakespeare-lstm.onnx", 1),
    ]
    .into_iter()
    .map(|(path, weight)| (path.to_string(), std::fs::read(repo(path)).unwrap(), weight))
    .collect()
}

/// Values a hostile file would put where a size goes.
fn wild(rng: &mut ChaCha8Rng) -> i64 {
    const WILD: [i64; 12] =
        [0, 1, -1, 2, 3, 7, 64, 1000, 1 << 31, (1 << 31) - 1, 1_000_000_000_000, i64::MAX];
    if rng.random_bool(0.7) {
        WILD[rng.random_range(0..WILD.len())]
    } else {
        rng.random_range(-4..300)
    }
}

/// One structure-aware change to `m`; returns what it did.
fn mutate(m: &mut ModelProto, rng: &mut ChaCha8Rng) -> String {
    let Some(g) = m.graph.as_mut() else { return "no graph".into() };
    match rng.random_range(0..11) {
        0 if !g.initializer.is_empty() => {
            let t = rng.random_range(0..g.initializer.len());
            let t = &mut g.initializer[t];
            if t.dims.is_empty() {
                t.dims.push(wild(rng));
            } else {
                let d = rng.random_range(0..t.dims.len());
                t.dims[d] = wild(rng);
            }
            format!("initializer {} dims → {:?}", t.name, t.dims)
        }
        1 if !g.initializer.is_empty() => {
            let t = rng.random_range(0..g.initializer.len());
            let t = &mut g.initializer[t];
            match rng.random_range(0..3) {
                0 => {
                    let cut = rng.random_range(0..=t.raw_data.len());
                    t.raw_data.truncate(cut);
                    format!("initializer {} data cut to {cut} bytes", t.name)
                }
                1 => {
                    t.raw_data = f32::NAN.to_le_bytes().repeat(t.raw_data.len() / 4);
                    format!("initializer {} all NaN", t.name)
                }
                _ => {
                    t.data_type = [0, 1, 2, 6, 7, 9, 10, 11, 16, 99][rng.random_range(0..10)];
                    format!("initializer {} data type → {}", t.name, t.data_type)
                }
            }
        }
        2 if !g.node.is_empty() => {
            let n = rng.random_range(0..g.node.len());
            let node = &mut g.node[n];
            if node.attribute.is_empty() {
                return "no attribute".into();
            }
            let a = rng.random_range(0..node.attribute.len());
            let a = &mut node.attribute[a];
            if !a.ints.is_empty() {
                let i = rng.random_range(0..a.ints.len());
                a.ints[i] = wild(rng);
            } else if let Some(t) = a.t.as_mut() {
                t.dims = vec![wild(rng)];
            } else {
                a.i = wild(rng);
                a.f = [f32::NAN, 0.0, -1.0, 1e30][rng.random_range(0..4)];
            }
            format!("node {} attribute {} changed", node.name, a.name)
        }
        3 if !g.node.is_empty() => {
            let n = rng.random_range(0..g.node.len());
            let node = g.node[n].clone();
            let at = rng.random_range(0..=g.node.len());
            g.node.insert(at, node);
            format!("node {n} duplicated at {at}")
        }
        4 if !g.node.is_empty() => {
            let n = rng.random_range(0..g.node.len());
            g.node.remove(n);
            format!("node {n} removed")
        }
        5 if !g.node.is_empty() => {
            // Rewire: an input of one node from any value of the graph.
            let names: Vec<String> = g
                .node
                .iter()
                .flat_map(|n| n.output.iter().cloned())
                .chain(g.input.iter().map(|i| i.name.clone()))
                .chain(g.initializer.iter().map(|t| t.name.clone()))
                .collect();
            let n = rng.random_range(0..g.node.len());
            let node = &mut g.node[n];
            if node.input.is_empty() || names.is_empty() {
                return "nothing to rewire".into();
            }
            let i = rng.random_range(0..node.input.len());
            node.input[i] = names[rng.random_range(0..names.len())].clone();
            format!("node {n} input {i} → {}", node.input[i])
        }
        6 if !g.node.is_empty() => {
            const OPS: [&str; 14] = [
                "Add",
                "MatMul",
                "Gemm",
                "Relu",
                "Reshape",
                "Concat",
                "Gather",
                "Transpose",
                "Expand",
                "ConstantOfShape",
                "Tile",
                "Squeeze",
                "Softmax",
                "Nonsense",
            ];
            let n = rng.random_range(0..g.node.len());
            g.node[n].op_type = OPS[rng.random_range(0..OPS.len())].into();
            format!("node {n} → {}", g.node[n].op_type)
        }
        7 => {
            // A dimension of a graph input or output.
            let values = if rng.random_bool(0.5) { &mut g.input } else { &mut g.output };
            let Some(v) = values.first_mut() else { return "no value".into() };
            use kiln_infer::pb::{tensor_shape_proto::dimension::Value, type_proto::Value as Type};
            if let Some(Type::TensorType(t)) = v.r#type.as_mut().and_then(|t| t.value.as_mut()) {
                if let Some(shape) = t.shape.as_mut().filter(|s| !s.dim.is_empty()) {
                    let d = rng.random_range(0..shape.dim.len());
                    shape.dim[d].value = Some(Value::DimValue(wild(rng)));
                    return format!("value {} dim {d} changed", v.name);
                }
                t.elem_type = DataType::Int64 as i32;
            }
            format!("value {} type changed", v.name)
        }
        8 if !m.metadata_props.is_empty() => {
            let p = rng.random_range(0..m.metadata_props.len());
            let prop = &mut m.metadata_props[p];
            prop.value = match rng.random_range(0..6) {
                0 => wild(rng).to_string(),
                1 => "[]".into(),
                2 => format!("[{}, {}, {}]", wild(rng), wild(rng), wild(rng)),
                3 => "{\"not\": \"this\"}".into(),
                4 => format!(
                    "[{}]",
                    (0..rng.random_range(0..50)).map(|i| format!("\"w{i}\"")).collect::<Vec<_>>().join(",")
                ),
                _ => "\u{0}garbage".into(),
            };
            format!("metadata {} → {}", prop.key, prop.value)
        }
        9 => {
            m.opset_import.iter_mut().for_each(|o| o.version = wild(rng));
            "opset changed".into()
        }
        _ => {
            let mut out = g.output.clone();
            if rng.random_bool(0.5) || out.len() < 2 {
                out.extend(g.output.clone());
            } else {
                out.pop();
            }
            g.output = out;
            "outputs changed".into()
        }
    }
}

/// A mutated file: 1 to 3 changes to the protobuf, then, sometimes, bytes flipped or the file cut.
fn case(corpus: &[(String, Vec<u8>, u32)], rng: &mut ChaCha8Rng) -> (usize, Vec<u8>, Vec<String>) {
    let total: u32 = corpus.iter().map(|c| c.2).sum();
    let mut pick = rng.random_range(0..total);
    let which = corpus
        .iter()
        .position(|c| {
            pick < c.2 || {
                pick -= c.2;
                false
            }
        })
        .unwrap_or(0);
    let mut m = ModelProto::decode(corpus[which].1.as_slice()).unwrap();
    let mut done: Vec<String> = (0..rng.random_range(1..=3)).map(|_| mutate(&mut m, rng)).collect();
    let mut bytes = m.encode_to_vec();
    match rng.random_range(0..6) {
        0 if !bytes.is_empty() => {
            for _ in 0..rng.random_range(1..=8) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] ^= 1 << rng.random_range(0..8);
            }
            done.push("bytes flipped".into());
        }
        1 => {
            let cut = rng.random_range(0..=bytes.len());
            bytes.truncate(cut);
            done.push(format!("cut at {cut}"));
        }
        _ => {}
    }
    (which, bytes, done)
}

/// Loads `bytes` and, when that succeeds, makes one call; `Ok` or `Err` are both fine here.
/// Returns whether the file loaded.
fn try_case(bytes: &[u8], vocab: Option<PathBuf>) -> bool {
    let options = LoadOptions { vocab, ..Default::default() };
    stage("info");
    match kiln_infer::load_bytes(bytes, "fuzzed.onnx", &options) {
        Ok(Model::Generator(g)) => {
            stage("sample");
            let _ = g.sample(3, 1);
            // Enough rows for the form a generator runs for many (its dense layers feature-major).
            stage("sample many");
            let _ = g.sample(64, 1);
            true
        }
        Ok(Model::NextWord(m)) => {
            let word = m.meta().vocab.first().cloned().unwrap_or_default();
            WORD.lock().unwrap_or_else(|e| e.into_inner()).clone_from(&word);
            stage("predict");
            let _ = m.predict(&prompt(&word), 3);
            stage("generate");
            let _ =
                m.generate(&word, &kiln_infer::next_word::GenerateOptions { words: 3, ..Default::default() });
            stage("score");
            let _ = m.score(&text(&word));
            true
        }
        Err(_) => false,
    }
}

fn prompt(word: &str) -> String {
    format!("{word} {word} {word}")
}

fn text(word: &str) -> String {
    format!("{word} {word}\n{word}\n")
}

/// A case that panicked inside a dependency (tract's shape inference), run through the `kiln`
/// binary as a user would: its panic hook must turn it into one `error:` line and exit 1.
fn kiln_reports(bytes: &[u8], vocab: Option<&PathBuf>, stage: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let model = dir.path().join("case.onnx");
    std::fs::write(&model, bytes).map_err(|e| e.to_string())?;
    // The word the in-process case used.
    let word = WORD.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let corpus = dir.path().join("text.txt");
    std::fs::write(&corpus, text(&word)).map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("kiln"));
    cmd.arg(stage).arg(&model);
    match stage {
        "sample" => cmd.args(["-n", "3", "--seed", "1", "-o"]).arg(dir.path().join("x.npy")),
        "predict" => cmd.arg(prompt(&word)).args(["-k", "3"]),
        "generate" => cmd.arg(&word).args(["-n", "3"]),
        "score" => cmd.arg(&corpus),
        _ => &mut cmd,
    };
    if let Some(v) = vocab {
        cmd.arg("--vocab").arg(v);
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let clean = out.status.code() == Some(1)
        && stderr.starts_with("error: ")
        && stderr.lines().count() == 1
        && !stderr.contains("panicked");
    if clean {
        Ok(())
    } else {
        Err(format!("kiln {stage} gave {:?} and stderr {stderr:?}", out.status))
    }
}

#[test]
fn mutated_model_files_are_loaded_or_refused_never_a_panic() {
    let seed: u64 = env_or("KILN_FUZZ_SEED", 0);
    let first: u64 = env_or("KILN_FUZZ_FIRST", 0);
    let cases: u64 = env_or("KILN_FUZZ_CASES", 10_000);
    let seconds: f64 = env_or("KILN_FUZZ_SECONDS", f64::INFINITY);
    let corpus = corpus();
    // The vocabularies of the files without kiln metadata.
    let vocab_of = |path: &str| {
        let name = match path {
            p if p.ends_with("seed_lstm_torch.onnx") => "vocab.json",
            p if p.ends_with("word_lm_torch.onnx") => "word_lm_torch.vocab.json",
            _ => return None,
        };
        Some(repo(&format!("infer/tests/fixtures/{name}")))
    };
    let current = repo("target/fuzz-case.onnx");
    // A case that runs away is reported by a watchdog, since it cannot be interrupted.
    let started_case = std::sync::Arc::new(std::sync::Mutex::new((Instant::now(), 0u64)));
    {
        let started_case = started_case.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            let (at, n) = *started_case.lock().unwrap();
            if at.elapsed() > Duration::from_secs(60) {
                eprintln!("fuzz case {n} (KILN_FUZZ_SEED={seed}) ran for a minute: target/fuzz-case.onnx");
                std::process::exit(101);
            }
        });
    }
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| l.to_string()).unwrap_or_default();
        if std::env::var_os("KILN_FUZZ_TRACE").is_some() {
            eprintln!("{at}\n{}", std::backtrace::Backtrace::force_capture());
        }
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let stage = *STAGE.lock().unwrap_or_else(|e| e.into_inner());
        WHERE.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert((at, msg, stage));
    }));
    let start = Instant::now();
    let (mut loaded, mut failures, mut slowest, mut biggest) =
        (0u64, Vec::new(), (0.0f64, 0u64), (0usize, 0u64));
    // Panics inside tract (or its dependencies), each checked through the binary.
    let mut upstream = Vec::new();
    let mut n = first;
    while n < first.saturating_add(cases) && start.elapsed().as_secs_f64() < seconds {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (which, bytes, done) = case(&corpus, &mut rng);
        let _ = std::fs::write(&current, &bytes);
        let vocab = vocab_of(&corpus[which].0);
        *started_case.lock().unwrap() = (Instant::now(), n);
        let base = HELD.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let t = Instant::now();
        WHERE.lock().unwrap_or_else(|e| e.into_inner()).take();
        let outcome = std::panic::catch_unwind(|| try_case(&bytes, vocab.clone()));
        let took = t.elapsed().as_secs_f64();
        let used = PEAK.load(Ordering::Relaxed).saturating_sub(base);
        if took > slowest.0 {
            slowest = (took, n);
        }
        biggest = biggest.max((used, n));
        let what = format!("case {n} ({}: {})", corpus[which].0, done.join("; "));
        let panicked = WHERE.lock().unwrap_or_else(|e| e.into_inner()).take();
        match (outcome, panicked) {
            (Ok(ok), None) => loaded += u64::from(ok),
            // A panic that left the library: it must return every failure as an error.
            (Err(_), p) => {
                let (at, msg, stage) = p.unwrap_or_default();
                failures.push(format!("{what}: {stage}: a panic left the library, at {at}: {msg}"));
            }
            // Caught by the library (`Error::Internal`). Inside a dependency (from the registry,
            // or one of tract's crates vendored under `vendor/`), that is tract's shape
            // inference asserting; the binary, which aborts on panic, must still give the user
            // one clean line. In kiln's own code, it is a bug.
            (Ok(ok), Some((at, msg, stage))) => {
                loaded += u64::from(ok);
                if at.contains("/registry/src/") || at.starts_with("vendor/") || at.contains("/vendor/") {
                    upstream.push(format!("{what}: {stage}: panicked at {at}: {msg}"));
                    if let Err(e) = kiln_reports(&bytes, vocab.as_ref(), stage) {
                        failures.push(format!("{what}: panicked at {at}: {msg}; {e}"));
                    }
                } else {
                    failures.push(format!("{what}: {stage}: panicked at {at}: {msg}"));
                }
            }
        }
        if took > CASE_SECONDS {
            failures.push(format!("{what}: took {took:.2} s"));
        }
        if used > CASE_BYTES {
            failures.push(format!("{what}: used {} MB", used / 1_000_000));
        }
        n += 1;
    }
    let _ = std::panic::take_hook();
    let ran = n - first;
    if ran != 1 {
        // A replayed case keeps its file, for `kiln` or the profiler.
        let _ = std::fs::remove_file(&current);
    }
    eprintln!(
        "fuzz: {ran} cases from seed {seed} in {:.1} s, {loaded} loaded and ran; slowest case {} ({:.2} s), \
         largest case {} ({} MB); {} panic(s) inside tract, each an `error:` line and exit 1 from `kiln`; \
         {} failure(s)",
        start.elapsed().as_secs_f64(),
        slowest.1,
        slowest.0,
        biggest.1,
        biggest.0 / 1_000_000,
        upstream.len(),
        failures.len()
    );
    for u in &upstream {
        eprintln!("  {u}");
    }
    assert!(ran > 0, "no case ran");
    assert!(failures.is_empty(), "{} of {ran} cases failed:\n{}", failures.len(), failures.join("\n"));
}
