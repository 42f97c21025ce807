//! Reading a model file: the bytes (from a path or given, within [`Limits`]), tract's parse of
//! the graph, and the file's `metadata_props`; the checks of a typed graph against its metadata;
//! the conversions between `ndarray` arrays and tract's tensors.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use tract_onnx::prelude::*;

use crate::error::{run_err, Error, Result};
use crate::weights::{Deferred, FillError, Source};

/// How much a model file may ask for before anything is built from it: far above any kiln model
/// (the shipped ones are under 10 MB and 100 nodes), low enough that a wrong or hostile file —
/// `/dev/zero`, a graph of a million nodes — is refused at once instead of exhausting memory or
/// time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes in the file.
    pub max_bytes: u64,
    /// Nodes in the graph (sub-graphs included).
    pub max_nodes: usize,
    /// Bytes of the values a call's graph computes from its inputs (every intermediate, counted
    /// as if all were alive at once: an upper bound), checked from the inputs' shapes before the
    /// call allocates anything, so that a huge batch is one clear error instead of an aborted
    /// allocation. The same budget bounds each tensor the graph builds from constants at load
    /// (`ConstantOfShape`, `Expand`, `Tile`, …), checked before tract folds them.
    pub max_call_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: 100_000_000, max_nodes: 10_000, max_call_bytes: 1_000_000_000 }
    }
}

/// Options for loading a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The vocabulary of a next-word model without kiln metadata: a JSON array of words in index
    /// order.
    pub vocab: Option<std::path::PathBuf>,
    /// For a recurrent model without kiln metadata whose graph does not tell it: how its token
    /// input lays out sequence and batch.
    pub layout: Option<crate::foreign::TokenLayout>,
    pub limits: Limits,
}

/// Why [`ModelFile::decode_whole`] failed.
enum Whole {
    Io(std::io::Error),
    Decode(prost::DecodeError),
}

/// A parsed model file: tract's graph and the file's metadata.
pub(crate) struct ModelFile {
    /// How messages name the file (its path, or the name given with its bytes).
    pub name: String,
    pub graph: InferenceModel,
    /// `metadata_props`, without tract's `onnx.metadata_props.` prefix.
    pub props: BTreeMap<String, String>,
    pub limits: Limits,
    /// The parsed protobuf of a file without kiln metadata, which a foreign model's reader may
    /// rewrite ([`crate::foreign`]); `None` for kiln's own files.
    pub proto: Option<tract_onnx::pb::ModelProto>,
    /// The graph's form for calls of many rows ([`crate::fuse::for_many_rows`]), where it has
    /// one.
    pub many_rows: Option<tract_onnx::pb::ModelProto>,
}

impl ModelFile {
    /// Reads and parses the file at `path`, reading at most `options.limits.max_bytes` (so a
    /// pipe or a device is never read without end).
    pub fn read(path: &Path, options: &LoadOptions) -> Result<Self> {
        let name = path.display().to_string();
        let max = options.limits.max_bytes;
        let read_err = |source| Error::Read { path: name.clone(), source };
        let file = std::fs::File::open(path).map_err(read_err)?;
        // A regular file is read where its fields are: its large weights straight into their
        // tensors ([`crate::weights`]); `load` refuses it when it is over the limit. A file of
        // no length may still give bytes (`/proc`): it is read as a pipe is.
        #[cfg(unix)]
        {
            let meta = file.metadata().map_err(read_err)?;
            if meta.is_file() && meta.len() > 0 {
                return Self::load(&Source::File(&file, meta.len()), name, options);
            }
        }
        let bytes = crate::fsx::read_open_bounded(&file, max).map_err(|e| match e {
            crate::fsx::ReadError::Io(source) => Error::Read { path: name.clone(), source },
            crate::fsx::ReadError::TooLarge { .. } => {
                Error::TooLarge { path: name.clone(), what: "bytes", limit: max as usize }
            }
        })?;
        Self::load(&Source::Memory(&bytes), name, options)
    }

    /// Parses a model file's bytes; `name` names it in messages.
    pub fn parse(bytes: &[u8], name: String, options: &LoadOptions) -> Result<Self> {
        Self::load(&Source::Memory(bytes), name, options)
    }

    /// Decodes the model in `src` and builds tract's graph of it, once its size, structure and
    /// constants pass the guards.
    fn load(src: &Source, name: String, options: &LoadOptions) -> Result<Self> {
        let path = name.clone();
        crate::error::catching(&path, "reading the model", move || {
            let limits = options.limits;
            if src.len() > limits.max_bytes {
                return Err(Error::TooLarge { path: name, what: "bytes", limit: limits.max_bytes as usize });
            }
            let (proto, deferred) = Self::decode(src, &name)?;
            Self::check(&proto, &name, limits)?;
            Self::from_proto(proto, deferred, src, name, options)
        })
    }

    /// The protobuf of the model in `src`, and its weights still to be read into tract's
    /// tensors. A next-word model's graph is parsed once and its weights never read from the
    /// protobuf, so they go straight into their tensors ([`crate::weights`]); any other file
    /// (a generator's rewrites and a foreign model's reader read weights from the protobuf), or
    /// one that does not walk as protobuf, is decoded whole, and prost says what is wrong with
    /// it.
    fn decode(src: &Source, name: &str) -> Result<(tract_onnx::pb::ModelProto, Deferred)> {
        use prost::Message as _;
        let bad = |e: anyhow::Error| Error::BadModel { path: name.to_string(), source: e.into() };
        let kind = crate::weights::property(src, crate::contract::key::KIND);
        if kind.is_ok_and(|k| k.as_deref() == Some(crate::contract::KIND_NEXT_WORD)) {
            let split = crate::weights::split(src, crate::weights::LARGE).ok();
            let skeleton = split.map(|s| (tract_onnx::pb::ModelProto::decode(&s.skeleton[..]), s.payloads));
            if let Some((Ok(proto), payloads)) = skeleton {
                if let Some(deferred) = Deferred::of(&proto, payloads) {
                    return Ok((proto, deferred));
                }
            }
        }
        let whole = Self::decode_whole(src).map_err(|e| match e {
            Whole::Io(source) => Error::Read { path: name.to_string(), source },
            Whole::Decode(e) => bad(e.into()),
        })?;
        Ok((whole, Deferred::default()))
    }

    /// The protobuf of the whole file in `src`, weights and all.
    fn decode_whole(src: &Source) -> std::result::Result<tract_onnx::pb::ModelProto, Whole> {
        use prost::Message as _;
        match src {
            Source::Memory(b) => tract_onnx::pb::ModelProto::decode(*b).map_err(Whole::Decode),
            #[cfg(unix)]
            Source::File(file, len) => {
                use std::io::Seek as _;
                let mut file: &std::fs::File = file;
                file.seek(std::io::SeekFrom::Start(0)).map_err(Whole::Io)?;
                let bytes = crate::fsx::read_open_bounded(file, *len).map_err(|e| match e {
                    crate::fsx::ReadError::Io(e) => Whole::Io(e),
                    // The file grew since its length was taken.
                    crate::fsx::ReadError::TooLarge { .. } => Whole::Io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "it grew while being read",
                    )),
                })?;
                // Decoding copies the weights, nearly the file's size, into fresh memory; once
                // decoded, the file's bytes are freed, and tract's copies of the weights take
                // their memory.
                crate::heap::map_ahead(bytes.len());
                tract_onnx::pb::ModelProto::decode(prost::bytes::Bytes::from(bytes)).map_err(Whole::Decode)
            }
        }
    }

    /// Refuses a decoded file beyond the limits or that the guards refuse.
    fn check(proto: &tract_onnx::pb::ModelProto, name: &str, limits: Limits) -> Result<()> {
        let bad = |e: anyhow::Error| Error::BadModel { path: name.to_string(), source: e.into() };
        let path = || name.to_string();
        let nodes = proto.graph.as_ref().map_or(0, count_nodes);
        if nodes > limits.max_nodes {
            return Err(Error::TooLarge { path: path(), what: "graph nodes", limit: limits.max_nodes });
        }
        if let Some(g) = &proto.graph {
            crate::guard::check_structure(g).map_err(|e| bad(anyhow::anyhow!(e)))?;
            crate::guard::check_constants(g, limits.max_call_bytes).map_err(|r| match r.computes {
                true => Error::ComputesOnConstants { path: path(), node: r.node },
                false => Error::BuildsTooMuch {
                    path: path(),
                    node: r.node,
                    need_mb: r.bytes.map(|b| (b / 1_000_000).min(u64::MAX as u128) as u64),
                    limit_mb: limits.max_call_bytes / 1_000_000,
                },
            })?;
        }
        Ok(())
    }

    /// tract's graph of a decoded file, after kiln's rewrites ([`crate::fuse`]), with its
    /// deferred weights read from `src`.
    fn from_proto(
        mut proto: tract_onnx::pb::ModelProto,
        deferred: Deferred,
        src: &Source,
        name: String,
        options: &LoadOptions,
    ) -> Result<Self> {
        use tract_onnx::tract_hir::prelude::Framework as _;
        let bad = |e: anyhow::Error| Error::BadModel { path: name.clone(), source: e.into() };
        crate::fuse::optimise(&mut proto);
        deferred.placeholders(&mut proto);
        let mut graph = tract_onnx::onnx().model_for_proto_model(&proto).map_err(&bad)?;
        deferred.fill(&mut graph, src).map_err(|e| match e {
            FillError::Io(source) => Error::Read { path: name.clone(), source },
            FillError::Tract(e) => bad(e),
        })?;
        let props = metadata(&graph);
        // Only a generator runs it.
        let generator = props.get(crate::contract::key::KIND).map(String::as_str)
            == Some(crate::contract::KIND_GENERATOR);
        let many_rows = generator.then(|| crate::fuse::for_many_rows(&proto)).flatten();
        let proto = (!props.contains_key(crate::contract::key::KIND)).then_some(proto);
        Ok(ModelFile { name, graph, props, limits: options.limits, proto, many_rows })
    }

    /// Whether the file declares a `kiln.kind`.
    pub fn kind(&self) -> Option<&str> {
        self.props.get(crate::contract::key::KIND).map(String::as_str)
    }

    /// tract's typed graph of `graph`: every fact derived, nothing optimised yet, so that it can
    /// be checked against the metadata before a plan is made.
    pub fn typed(name: &str, graph: InferenceModel) -> Result<TypedModel> {
        graph.into_typed().map_err(|e| Error::BadModel { path: name.to_string(), source: e.into() })
    }

    /// tract's optimised, runnable plan of a typed graph.
    pub fn plan(name: &str, typed: TypedModel) -> Result<Arc<TypedRunnableModel>> {
        typed
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| Error::BadModel { path: name.to_string(), source: e.into() })
    }
}

/// Checks a typed graph against what its metadata says of it, so that a file whose metadata lies
/// is one clear error at load, not a panic or a wrong answer later.
pub(crate) struct Checker<'a> {
    pub name: &'a str,
    pub graph: &'a TypedModel,
}

impl Checker<'_> {
    /// Axis `axis` of `fact`, when it is a known number.
    pub fn dim(fact: &TypedFact, axis: usize) -> Option<i64> {
        fact.shape.dims().get(axis).and_then(|d| d.as_i64())
    }

    fn disagrees(&self, key: &'static str, file: impl ToString, graph: impl ToString) -> Error {
        Error::Disagrees {
            path: self.name.to_string(),
            key,
            file: file.to_string(),
            graph: graph.to_string(),
        }
    }

    /// The graph has `min..=max` inputs and outputs.
    pub fn counts(&self, inputs: usize, outputs: (usize, usize)) -> Result<()> {
        let (i, o) = (self.graph.inputs.len(), self.graph.outputs.len());
        if i != inputs {
            return Err(self.disagrees(
                "kiln.kind",
                format!("a model of {inputs} inputs"),
                format!("{i} inputs"),
            ));
        }
        if o < outputs.0 || o > outputs.1 {
            return Err(self.disagrees(
                "kiln.kind",
                format!("a model of {}–{} outputs", outputs.0, outputs.1),
                format!("{o} outputs"),
            ));
        }
        Ok(())
    }

    /// Axis `axis` of input (or output) `ix` is `want`, as metadata `key` says.
    pub fn axis(
        &self,
        output: bool,
        ix: usize,
        axis: usize,
        want: usize,
        key: &'static str,
        what: &str,
    ) -> Result<()> {
        let fact = if output { self.graph.output_fact(ix) } else { self.graph.input_fact(ix) }
            .map_err(|e| Error::BadModel { path: self.name.to_string(), source: e.into() })?;
        match Self::dim(fact, axis) {
            Some(got) if got == want as i64 => Ok(()),
            got => Err(self.disagrees(
                key,
                want,
                format!("{what} of {}", got.map_or_else(|| "unknown size".to_string(), |g| g.to_string())),
            )),
        }
    }

    /// Every constant table a `Gather` reads (an embedding) has `rows` rows, as metadata `key`
    /// says.
    pub fn gather_rows(&self, rows: usize, key: &'static str) -> Result<()> {
        use tract_onnx::tract_core::ops::array::Gather;
        for node in &self.graph.nodes {
            if node.op_as::<Gather>().is_none() || node.inputs.is_empty() {
                continue;
            }
            let fact = self
                .graph
                .outlet_fact(node.inputs[0])
                .map_err(|e| Error::BadModel { path: self.name.to_string(), source: e.into() })?;
            if fact.konst.is_some() {
                if let Some(got) = Self::dim(fact, 0) {
                    if got != rows as i64 {
                        return Err(self.disagrees(
                            key,
                            format!("{rows} words"),
                            format!("an embedding of {got} rows"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Nodes of `graph` and of every sub-graph its nodes carry (If, Loop, Scan bodies).
fn count_nodes(graph: &tract_onnx::pb::GraphProto) -> usize {
    graph.node.len()
        + graph
            .node
            .iter()
            .flat_map(|n| &n.attribute)
            .map(|a| a.g.as_ref().map_or(0, count_nodes) + a.graphs.iter().map(count_nodes).sum::<usize>())
            .sum::<usize>()
}

/// The graph's `metadata_props`, without tract's `onnx.metadata_props.` prefix.
fn metadata(model: &InferenceModel) -> BTreeMap<String, String> {
    const PREFIX: &str = "onnx.metadata_props.";
    model
        .properties
        .iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix(PREFIX)?;
            let value = v.try_as_plain_ram().ok()?.to_scalar::<String>().ok()?.clone();
            Some((key.to_string(), value))
        })
        .collect()
}

/// A tract tensor's values as an `ndarray` array of `D` dimensions.
pub(crate) fn array<T: Datum + Clone, D: tract_ndarray::Dimension>(
    t: &Tensor,
) -> Result<tract_ndarray::Array<T, D>> {
    let view = t.to_plain_array_view::<T>().map_err(run_err)?;
    view.to_owned().into_dimensionality::<D>().map_err(run_err)
}

/// Checks that a model's output holds only finite numbers: NaN or infinity there means its
/// weights are broken, and an answer drawn from them would be silently wrong.
pub(crate) fn finite<D: tract_ndarray::Dimension>(
    a: &tract_ndarray::Array<f32, D>,
    what: &str,
) -> Result<()> {
    match a.iter().find(|x| !x.is_finite()) {
        Some(x) => {
            Err(Error::Output(format!("the model computed {x} among its {what}: its weights are not usable")))
        }
        None => Ok(()),
    }
}

/// An `ndarray` view as a tract input.
pub(crate) fn input<T: Datum + Clone, D: tract_ndarray::Dimension>(
    a: tract_ndarray::ArrayView<T, D>,
) -> TValue {
    a.to_owned().into_dyn().into_tensor().into()
}

/// A model's plans.
///
/// - Where asked for, a plan per concrete input shape: tract optimises a graph whose batch is a
///   known number better than one whose batch is a symbol (the fashion generator runs 2.3×
///   faster at batch 1 and 1.2× at batch 64; the seed LSTM 1.9× at 64 windows, the Shakespeare
///   LSTM 1.2×). Next-word models with very large weights do not ask, since each plan holds its
///   own packed weights (`next_word::PER_SHAPE_MAX_WEIGHTS`). The graph is decluttered once,
///   at load; the first call at a new shape sets its symbols to the call's sizes and optimises
///   that, which skips typing and decluttering anew for each shape (the seed LSTM's first call
///   2.6 → 0.8 ms, its load 0.8 → 2.2 ms; the plans run as fast). Later calls at that shape
///   reuse the plan. Up to [`Runner::SHAPES`] shapes are kept.
/// - A plan for any batch: made at load when calls get no plans of their own; otherwise only
///   when a call needs it (a shape past the kept ones, or one tract could not plan for), since
///   a model called at one batch size, as most are, never runs it.
///
/// A call runs in the state of an earlier call of its plan where that state can be kept
/// ([`IdleStates`]), else in a fresh one. Clones share the graphs and the plan for any batch,
/// not the per-shape plans or the kept states.
pub(crate) struct Runner {
    /// The model file, as messages name it.
    name: String,
    any: AnyBatch,
    size: CallSize,
    /// The decluttered graph per-shape plans are made from; `None` when there are none to make.
    source: Option<Arc<TypedModel>>,
    /// The graph's form for calls of many rows, where it has one.
    many_rows: Option<ManyRows>,
    concrete: Mutex<Vec<(Shapes, Arc<TypedRunnableModel>)>>,
    idle: IdleStates,
}

/// The tract states of a [`Runner`]'s finished calls, kept for its next calls of the same plan.
/// A state keeps what a call can reuse (each product's scratch space and the layout of its
/// output, computed at the first call), which a fresh state makes anew each call: ring8 at one
/// sample ran 7.6 → 6.4 µs a call kept. Only a state whose ops keep nothing of their own between
/// calls is kept: a recurrent layer's state (the LSTMs') would carry one call's values into the
/// next (a seed LSTM gave other answers), so such plans get a fresh state each call. A thread
/// takes back a state it ran before where there is one, whose scratch space it already holds.
/// tract keeps a state's scratch spaces per thread and frees them on the thread that drops the
/// state: a model dropped on another thread than the ones that called it leaves each of those a
/// scratch space per state it ran (its products' tile buffers) until the thread ends.
#[derive(Default)]
struct IdleStates(Mutex<Vec<(std::thread::ThreadId, TypedSimpleState)>>);

impl IdleStates {
    /// States kept at most: more than the threads that call a model at once.
    const MAX: usize = 8;

    /// A state for a call of `plan`: a kept one (this thread's first), else a new one.
    fn take(&self, plan: &Arc<TypedRunnableModel>) -> Result<TypedSimpleState> {
        let me = std::thread::current().id();
        let kept = self.0.lock().ok().and_then(|mut idle| {
            let of_plan = |(_, s): &(_, TypedSimpleState)| Arc::ptr_eq(s.plan(), plan);
            let at = idle
                .iter()
                .position(|entry| entry.0 == me && of_plan(entry))
                .or_else(|| idle.iter().position(of_plan))?;
            Some(idle.swap_remove(at).1)
        });
        match kept {
            Some(state) => Ok(state),
            None => TypedSimpleState::new(plan).map_err(run_err),
        }
    }

    /// Keeps the state of a call that succeeded, if its ops keep nothing between calls.
    fn put(&self, state: TypedSimpleState) {
        if state.op_states.iter().any(Option::is_some) {
            return;
        }
        if let Ok(mut idle) = self.0.lock() {
            if idle.len() < Self::MAX {
                idle.push((std::thread::current().id(), state));
            }
        }
    }

    /// How many states are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().map_or(0, |idle| idle.len())
    }
}

/// A graph's form for calls of at least [`crate::fuse::MANY_ROWS`] rows (the first input's first
/// axis), [`crate::fuse::for_many_rows`]: parsed, typed and decluttered at the first such call,
/// then planned per shape as the file's own form is. Clones share it.
#[derive(Clone)]
struct ManyRows {
    proto: Arc<tract_onnx::pb::ModelProto>,
    /// `None` once made when tract could not make it; such calls then run the file's own form.
    source: Arc<OnceLock<Option<Arc<TypedModel>>>>,
}

impl ManyRows {
    fn source(&self) -> Option<Arc<TypedModel>> {
        self.source
            .get_or_init(|| {
                use tract_onnx::tract_hir::prelude::Framework as _;
                let graph = tract_onnx::onnx().model_for_proto_model(&self.proto).ok()?;
                Some(Arc::new(graph.into_typed().ok()?.into_decluttered().ok()?))
            })
            .clone()
    }
}

/// The shapes of a call's inputs.
type Shapes = Vec<Vec<usize>>;

/// A [`Runner`]'s plan for any batch: made at load, or made from the typed graph when first
/// needed (clones share it once made).
#[derive(Clone)]
enum AnyBatch {
    Made(Arc<TypedRunnableModel>),
    Later(Arc<TypedModel>, Arc<OnceLock<Arc<TypedRunnableModel>>>),
}

impl Runner {
    /// Concrete shapes whose plans are kept.
    pub const SHAPES: usize = 4;

    /// The plans of `typed` (named `name` in messages): with `per_shape`, a plan for each
    /// concrete input shape called (when some input dimension is a symbol), else one plan for
    /// any batch, optimised now. `max_call_bytes` bounds each call
    /// ([`Limits::max_call_bytes`]).
    pub fn new(name: &str, typed: TypedModel, per_shape: bool, max_call_bytes: u64) -> Result<Self> {
        let size = CallSize::fitting(name, &typed, max_call_bytes)?;
        Self::sized(name, typed, per_shape, size)
    }

    /// [`Runner::new`] for a graph whose call sizes are known.
    fn sized(name: &str, typed: TypedModel, per_shape: bool, size: CallSize) -> Result<Self> {
        let (any, source) = if per_shape && !size.symbols.is_empty() {
            let graph = typed
                .into_decluttered()
                .map_err(|e| Error::BadModel { path: name.to_string(), source: e.into() })?;
            let graph = Arc::new(graph);
            (AnyBatch::Later(graph.clone(), Default::default()), Some(graph))
        } else {
            (AnyBatch::Made(ModelFile::plan(name, typed)?), None)
        };
        Ok(Runner {
            name: name.to_string(),
            any,
            size,
            source,
            many_rows: None,
            concrete: Mutex::new(Vec::new()),
            idle: IdleStates::default(),
        })
    }

    /// Calls of many rows run `form` ([`crate::fuse::for_many_rows`]), when calls get plans
    /// for their shapes.
    pub fn with_many_rows_form(mut self, form: Option<tract_onnx::pb::ModelProto>) -> Self {
        if self.source.is_some() {
            self.many_rows =
                form.map(|proto| ManyRows { proto: Arc::new(proto), source: Default::default() });
        }
        self
    }

    /// Whether the form for many rows was made (at a call of as many).
    #[cfg(test)]
    pub fn made_many_rows(&self) -> bool {
        self.many_rows.as_ref().is_some_and(|m| m.source.get().is_some_and(|s| s.is_some()))
    }

    /// Checks that a call on inputs of `shapes` stays within the call limit.
    pub fn check_call(&self, shapes: &[&[usize]]) -> Result<()> {
        self.size.check_shapes(shapes)
    }

    /// Whether calls get plans for their concrete shapes.
    #[cfg(test)]
    pub fn per_shape(&self) -> bool {
        self.source.is_some()
    }

    /// The outputs the plans compute.
    #[cfg(test)]
    pub fn outputs(&self) -> usize {
        match &self.any {
            AnyBatch::Made(plan) => plan.model().outputs.len(),
            AnyBatch::Later(typed, _) => typed.outputs.len(),
        }
    }

    /// Whether the plan for any batch was made.
    #[cfg(test)]
    pub fn made_any(&self) -> bool {
        match &self.any {
            AnyBatch::Made(_) => true,
            AnyBatch::Later(_, plan) => plan.get().is_some(),
        }
    }

    /// The plan for any batch, made now if it was not yet.
    #[cfg(test)]
    pub fn any_plan(&self) -> Result<Arc<TypedRunnableModel>> {
        self.any()
    }

    /// Runs the graph on `inputs`, with the plan for their shapes.
    pub fn run(&self, inputs: TVec<TValue>) -> Result<TVec<TValue>> {
        self.size.check(self.size.scale(|i| inputs.get(i).map(|v| v.shape())))?;
        crate::error::catching(&self.name, "running the model", || {
            let plan = match self.plan_for(&inputs) {
                Some(plan) => plan,
                None => self.any()?,
            };
            let mut state = self.idle.take(&plan)?;
            let outputs = state.run(inputs).map_err(run_err)?;
            self.idle.put(state);
            Ok(outputs)
        })
    }

    /// How many states of finished calls are kept.
    #[cfg(test)]
    pub fn idle_states(&self) -> usize {
        self.idle.len()
    }

    /// The plans made for concrete shapes so far.
    #[cfg(test)]
    pub fn shape_plans(&self) -> Vec<Arc<TypedRunnableModel>> {
        self.concrete.lock().unwrap().iter().map(|(_, plan)| plan.clone()).collect()
    }

    /// The plan for any batch, made now if it was not yet.
    fn any(&self) -> Result<Arc<TypedRunnableModel>> {
        match &self.any {
            AnyBatch::Made(plan) => Ok(plan.clone()),
            AnyBatch::Later(typed, plan) => {
                if let Some(made) = plan.get() {
                    return Ok(made.clone());
                }
                let made = ModelFile::plan(&self.name, (**typed).clone())?;
                Ok(plan.get_or_init(|| made).clone())
            }
        }
    }

    /// The plan for the shapes of `inputs`, made if there is room; `None` when there are no
    /// per-shape plans or the cache is full.
    fn plan_for(&self, inputs: &[TValue]) -> Option<Arc<TypedRunnableModel>> {
        let mut source = self.source.clone()?;
        let rows = inputs.first().and_then(|v| v.shape().first()).copied().unwrap_or(0);
        if let Some(many) = self.many_rows.as_ref().filter(|_| rows >= crate::fuse::MANY_ROWS) {
            source = many.source().unwrap_or(source);
        }
        let key: Shapes = inputs.iter().map(|v| v.shape().to_vec()).collect();
        let mut cache = self.concrete.lock().ok()?;
        if let Some((_, plan)) = cache.iter().find(|(k, _)| *k == key) {
            return Some(plan.clone());
        }
        if cache.len() >= Self::SHAPES {
            return None;
        }
        // Each input dimension that is a symbol takes the call's size.
        let mut sizes = std::collections::HashMap::new();
        for (&outlet, value) in source.inputs.iter().zip(inputs) {
            let fact = source.outlet_fact(outlet).ok()?;
            for (dim, &n) in fact.shape.iter().zip(value.shape()) {
                if let TDim::Sym(symbol) = dim {
                    sizes.insert(symbol.clone(), TDim::Val(n as i64));
                }
            }
        }
        let plan = source
            .set_symbols(&sizes)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .ok()?;
        cache.push((key, plan.clone()));
        Some(plan)
    }
}

impl Clone for Runner {
    fn clone(&self) -> Self {
        Runner {
            name: self.name.clone(),
            any: self.any.clone(),
            size: self.size.clone(),
            source: self.source.clone(),
            many_rows: self.many_rows.clone(),
            concrete: Mutex::new(Vec::new()),
            idle: IdleStates::default(),
        }
    }
}

/// A [`Runner`] made at its first call, for a plan a model may never need (the plan over every
/// output of a word model, which only scoring uses). The graph is checked against the call
/// limit when this is made, as [`Runner::new`] checks it; clones share the plan once made.
#[derive(Clone)]
pub(crate) struct LazyRunner {
    name: String,
    typed: Arc<TypedModel>,
    per_shape: bool,
    size: CallSize,
    plan: Arc<OnceLock<Runner>>,
}

impl LazyRunner {
    pub fn new(name: &str, typed: TypedModel, per_shape: bool, max_call_bytes: u64) -> Result<Self> {
        Ok(LazyRunner {
            name: name.to_string(),
            size: CallSize::fitting(name, &typed, max_call_bytes)?,
            typed: Arc::new(typed),
            per_shape,
            plan: Default::default(),
        })
    }

    /// Checks that a call on inputs of `shapes` stays within the call limit.
    pub fn check_call(&self, shapes: &[&[usize]]) -> Result<()> {
        self.size.check_shapes(shapes)
    }

    /// Whether the plan was made.
    #[cfg(test)]
    pub fn made(&self) -> bool {
        self.plan.get().is_some()
    }

    /// The plan, made now if it was not yet.
    pub fn get(&self) -> Result<&Runner> {
        if let Some(plan) = self.plan.get() {
            return Ok(plan);
        }
        let made = crate::error::catching(&self.name, "loading the model", || {
            Runner::sized(&self.name, (*self.typed).clone(), self.per_shape, self.size.clone())
        })?;
        Ok(self.plan.get_or_init(|| made))
    }
}

impl std::fmt::Debug for LazyRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyRunner")
            .field("name", &self.name)
            .field("made", &self.plan.get().is_some())
            .finish()
    }
}

/// What a call holds, as a multiple of its inputs' symbolic dimensions.
#[derive(Debug, Clone)]
struct CallSize {
    /// For each distinct symbol of the inputs' shapes (`batch`, `seq`), where it stands alone:
    /// (input, axis).
    symbols: Vec<(usize, usize)>,
    /// Bytes of every value whose shape has a symbol, with every input symbol at 1. A value's
    /// size grows at most as the product of the symbols (`[batch, seq, vocab]`, `[layers,
    /// batch, hidden]`), so this times that product bounds a call.
    unit: u64,
    /// Bytes of every value computed from the inputs whose shape is fixed (no symbol).
    fixed: u64,
    max: u64,
}

impl CallSize {
    /// The sizes of `typed`'s calls, or an error when even its smallest call cannot fit
    /// `max_call_bytes`: such a graph is refused before tract plans it, since planning allocates
    /// at the graph's fixed sizes (a bias broadcast to a fixed output shape of 6.7 TB, from a
    /// generator whose `z` declared a batch of 2^33).
    fn fitting(name: &str, typed: &TypedModel, max_call_bytes: u64) -> Result<Self> {
        let size = CallSize::new(typed, max_call_bytes);
        let smallest = size.need(1);
        if smallest > max_call_bytes {
            return Err(Error::NoCallFits {
                path: name.to_string(),
                need_mb: smallest.div_ceil(1_000_000),
                limit_mb: max_call_bytes / 1_000_000,
            });
        }
        Ok(size)
    }

    fn new(typed: &TypedModel, max: u64) -> Self {
        let mut ones = SymbolValues::default();
        let mut seen = Vec::new();
        let mut symbols = Vec::new();
        for (input, &o) in typed.inputs.iter().enumerate() {
            let Ok(fact) = typed.outlet_fact(o) else { continue };
            for (axis, d) in fact.shape.iter().enumerate() {
                for s in d.symbols() {
                    ones = ones.with(&s, 1);
                    if matches!(d, TDim::Sym(_)) && !seen.contains(&s) {
                        seen.push(s);
                        symbols.push((input, axis));
                    }
                }
            }
        }
        let (mut unit, mut fixed) = (0u64, 0u64);
        for fact in typed.nodes.iter().flat_map(|n| &n.outputs).map(|o| &o.fact) {
            let bytes = |dims: &[usize]| {
                let volume = dims.iter().fold(1u64, |v, &d| v.saturating_mul(d as u64));
                volume.saturating_mul(fact.datum_type.size_of() as u64)
            };
            match fact.shape.as_concrete() {
                Some(dims) if fact.konst.is_none() => fixed = fixed.saturating_add(bytes(dims)),
                Some(_) => {}
                None => {
                    if let Ok(dims) = fact.shape.eval_to_usize(&ones) {
                        unit = unit.saturating_add(bytes(&dims));
                    }
                }
            }
        }
        CallSize { symbols, unit, fixed, max }
    }

    /// The product of the symbols' values in a call on inputs of `shapes`.
    fn scale<'a>(&self, shapes: impl Fn(usize) -> Option<&'a [usize]>) -> u64 {
        self.symbols.iter().fold(1u64, |n, &(input, axis)| {
            let d = shapes(input).and_then(|s| s.get(axis)).copied().unwrap_or(1);
            n.saturating_mul(d as u64)
        })
    }

    /// Bytes a call holds at most, given the product of its symbols' values.
    fn need(&self, scale: u64) -> u64 {
        self.unit.saturating_mul(scale).saturating_add(self.fixed)
    }

    /// Checks a call on inputs of `shapes`.
    fn check_shapes(&self, shapes: &[&[usize]]) -> Result<()> {
        self.check(self.scale(|i| shapes.get(i).copied()))
    }

    fn check(&self, scale: u64) -> Result<()> {
        let need = self.need(scale);
        if need > self.max {
            return Err(Error::CallTooLarge {
                need_mb: need.div_ceil(1_000_000),
                limit_mb: self.max / 1_000_000,
            });
        }
        Ok(())
    }
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").finish_non_exhaustive()
    }
}
