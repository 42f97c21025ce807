//! A model file's large weights read once, straight into the tensors that hold them.
//!
//! Decoded whole, a file's weights are copied three times before a call can read them: read into
//! memory, copied by prost into the protobuf's `raw_data`, copied by tract into its tensors, each
//! copy into memory the process had not touched yet. For the Shakespeare LSTM (9 MB, nearly all
//! weights) that was half of the load. Here the file is walked as protobuf first ([`split`]):
//! what is decoded is the file without the bytes of its large float initializers (the
//! skeleton), and where those bytes lie is noted ([`Payload`]). A next-word model's payloads
//! are then read from the file into fresh tensors, one read each, and put into tract's graph in
//! place of placeholders ([`Deferred`]). Any other file is decoded whole, as before: a
//! generator's rewrites and a foreign model's reader read its weights from the protobuf, and
//! the memory freed by the file's buffer is reused by tract's copies.

use tract_onnx::pb::{tensor_proto::DataType, ModelProto};
use tract_onnx::prelude::*;

/// Initializers whose bytes take at least this many are read apart from the skeleton; smaller
/// ones (biases, shapes, indices) are not worth a read of their own.
pub(crate) const LARGE: u64 = 64 * 1024;

/// How many bytes of the file the walk reads at a time, past the fields it needs: the nodes and
/// small initializers between two large ones take a read or a few.
const WINDOW: u64 = 16 * 1024;

/// The protobuf's wire type of a length-delimited field.
const LEN: u8 = 2;

/// Where a model's bytes are: in memory, or in a file of a known length read where needed.
pub(crate) enum Source<'a> {
    Memory(&'a [u8]),
    #[cfg(unix)]
    File(&'a std::fs::File, u64),
}

impl Source<'_> {
    pub fn len(&self) -> u64 {
        match self {
            Source::Memory(b) => b.len() as u64,
            #[cfg(unix)]
            Source::File(_, len) => *len,
        }
    }

    /// Fills `dst` with the bytes from `offset` on.
    fn read_at(&self, offset: u64, dst: &mut [u8]) -> std::io::Result<()> {
        match self {
            Source::Memory(b) => {
                dst.copy_from_slice(within(b, offset, dst.len())?);
                Ok(())
            }
            #[cfg(unix)]
            Source::File(file, _) => std::os::unix::fs::FileExt::read_exact_at(*file, dst, offset),
        }
    }
}

/// The `len` bytes of `b` from `offset` on, when it holds them.
fn within(b: &[u8], offset: u64, len: usize) -> std::io::Result<&[u8]> {
    let start = usize::try_from(offset).ok().filter(|&s| s.checked_add(len).is_some_and(|e| e <= b.len()));
    let start = start.ok_or(std::io::ErrorKind::UnexpectedEof)?;
    Ok(&b[start..start + len])
}

/// A large initializer's bytes left out of the skeleton.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Payload {
    /// The initializer's place in the main graph's `initializer` list.
    pub initializer: usize,
    /// Where its `raw_data` starts in the file, and how many bytes it holds.
    pub offset: u64,
    pub len: usize,
}

/// A file walked by [`split`]: the protobuf without its large payloads, and those payloads.
#[derive(Debug)]
pub(crate) struct Split {
    pub skeleton: Vec<u8>,
    pub payloads: Vec<Payload>,
}

/// A field's header, as the walk reads it.
struct Field {
    number: u64,
    wire: u8,
    /// Where the field's value starts (after its tag, and its length when it has one).
    body: u64,
    /// Where the field ends.
    end: u64,
}

/// Reads a source's bytes for the walk: a slice of memory, or a window of the file.
struct Walk<'s> {
    src: &'s Source<'s>,
    /// The bytes of the file from `at` on, `held` of them; the buffer only grows.
    window: Vec<u8>,
    at: u64,
    held: usize,
}

/// What a walk error says: the protobuf does not parse.
fn broken(what: &str, at: u64) -> String {
    format!("failed to decode Protobuf message: {what} at byte {at}")
}

impl<'s> Walk<'s> {
    fn new(src: &'s Source<'s>) -> Self {
        Walk { src, window: Vec::new(), at: 0, held: 0 }
    }

    /// The `n` bytes from `offset` on, which the caller knows lie within the source.
    fn bytes(&mut self, offset: u64, n: u64) -> Result<&[u8], String> {
        if let Source::Memory(b) = self.src {
            return Ok(&b[offset as usize..(offset + n) as usize]);
        }
        let within = offset >= self.at && offset + n <= self.at + self.held as u64;
        if !within {
            let take = n.max(WINDOW).min(self.src.len() - offset) as usize;
            if self.window.len() < take {
                self.window.resize(take, 0);
            }
            self.held = 0;
            self.src
                .read_at(offset, &mut self.window[..take])
                .map_err(|e| format!("reading at byte {offset}: {e}"))?;
            (self.at, self.held) = (offset, take);
        }
        let start = (offset - self.at) as usize;
        Ok(&self.window[start..start + n as usize])
    }

    /// The field that starts at `pos`, which must end by `end`.
    fn field(&mut self, pos: u64, end: u64) -> Result<Field, String> {
        let head = self.bytes(pos, (end - pos).min(20))?;
        let (tag, used) = varint(head).ok_or_else(|| broken("a bad field tag", pos))?;
        let (number, wire) = (tag >> 3, (tag & 7) as u8);
        if number == 0 {
            return Err(broken("a field numbered 0", pos));
        }
        let rest = &head[used..];
        // How many bytes a length takes after the tag, and how many the value takes.
        let (prefix, len) = match wire {
            0 => (0, varint(rest).ok_or_else(|| broken("a bad varint", pos))?.1 as u64),
            1 => (0, 8),
            5 => (0, 4),
            LEN => {
                let (len, n) = varint(rest).ok_or_else(|| broken("a bad length", pos))?;
                (n as u64, len)
            }
            _ => return Err(broken(&format!("wire type {wire}, which ONNX does not use"), pos)),
        };
        let body = pos + used as u64 + prefix;
        let field_end = body.checked_add(len).filter(|&e| e <= end);
        let end = field_end.ok_or_else(|| broken("a field that runs past its message", pos))?;
        Ok(Field { number, wire, body, end })
    }

    /// Appends the bytes from `start` to `end` to `out`.
    fn copy(&mut self, start: u64, end: u64, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(self.bytes(start, end - start)?);
        Ok(())
    }
}

/// A varint at the start of `b`: its value and how many bytes it took.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a length-delimited field numbered `number` holding `body`.
fn put_message(number: u64, body: &[u8], out: &mut Vec<u8>) {
    put_varint(number << 3 | u64::from(LEN), out);
    put_varint(body.len() as u64, out);
    out.extend_from_slice(body);
}

/// The value of the `metadata_props` entry `key` of the `ModelProto` in `src` (the last one, as
/// tract reads them), read without the graph: a few small reads. An error when the file does not
/// walk as a protobuf.
pub(crate) fn property(src: &Source, key: &str) -> Result<Option<String>, String> {
    use prost::Message as _;
    let mut walk = Walk::new(src);
    let mut value = None;
    let (mut pos, end) = (0, src.len());
    while pos < end {
        let f = walk.field(pos, end)?;
        if f.number == 14 && f.wire == LEN {
            let entry = tract_onnx::pb::StringStringEntryProto::decode(walk.bytes(f.body, f.end - f.body)?)
                .map_err(|e| e.to_string())?;
            if entry.key == key {
                value = Some(entry.value);
            }
        }
        pos = f.end;
    }
    Ok(value)
}

/// Walks the `ModelProto` in `src`: the skeleton holds every byte but the `raw_data` of each
/// main-graph initializer of `large` bytes or more. Decoded, the skeleton is the file's protobuf
/// with those `raw_data` empty. An error when the file does not walk as a protobuf.
pub(crate) fn split(src: &Source, large: u64) -> Result<Split, String> {
    let mut walk = Walk::new(src);
    let mut skeleton = Vec::new();
    let mut payloads = Vec::new();
    // A second `graph` field merges into the first: its initializers follow the first's.
    let mut initializers = 0;
    let (mut pos, end) = (0, src.len());
    while pos < end {
        let f = walk.field(pos, end)?;
        if f.number == 7 && f.wire == LEN {
            let mut graph = Vec::new();
            let mut at = f.body;
            while at < f.end {
                let g = walk.field(at, f.end)?;
                if g.number == 5 && g.wire == LEN {
                    let tensor = split_tensor(&mut walk, &g, large, initializers, &mut payloads)?;
                    put_message(5, &tensor, &mut graph);
                    initializers += 1;
                } else {
                    walk.copy(at, g.end, &mut graph)?;
                }
                at = g.end;
            }
            put_message(7, &graph, &mut skeleton);
        } else {
            walk.copy(pos, f.end, &mut skeleton)?;
        }
        pos = f.end;
    }
    Ok(Split { skeleton, payloads })
}

/// The `TensorProto` in field `t`, without its `raw_data` when that is `large` or more (the
/// last `raw_data` field counts, as in a decode; earlier ones go too).
fn split_tensor(
    walk: &mut Walk,
    t: &Field,
    large: u64,
    initializer: usize,
    payloads: &mut Vec<Payload>,
) -> Result<Vec<u8>, String> {
    // Each field with where it starts.
    let mut fields: Vec<(u64, Field)> = Vec::new();
    let mut at = t.body;
    while at < t.end {
        let f = walk.field(at, t.end)?;
        let next = f.end;
        fields.push((at, f));
        at = next;
    }
    let raw = |f: &Field| f.number == 9 && f.wire == LEN;
    let mut out = Vec::new();
    match fields.iter().rev().find(|(_, f)| raw(f)) {
        Some((_, last)) if last.end - last.body >= large => {
            payloads.push(Payload { initializer, offset: last.body, len: (last.end - last.body) as usize });
            for (start, f) in &fields {
                if !raw(f) {
                    walk.copy(*start, f.end, &mut out)?;
                }
            }
        }
        _ => walk.copy(t.body, t.end, &mut out)?,
    }
    Ok(out)
}

/// A main-graph initializer whose bytes are read straight into its tensor.
#[derive(Debug)]
struct Entry {
    name: String,
    dt: DatumType,
    shape: Vec<usize>,
    payload: Payload,
}

/// The large weights of a model whose tensors are read from the file after tract has parsed its
/// graph ([`Deferred::fill`]); until then the protobuf holds an empty placeholder for each
/// ([`Deferred::placeholders`]).
#[derive(Debug, Default)]
pub(crate) struct Deferred {
    entries: Vec<Entry>,
}

/// A float initializer's element type in tract, for the ONNX types its raw bytes are read as
/// they are.
fn float_type(data_type: i32) -> Option<DatumType> {
    match DataType::try_from(data_type).ok()? {
        DataType::Float => Some(DatumType::F32),
        DataType::Float16 => Some(DatumType::F16),
        DataType::Double => Some(DatumType::F64),
        _ => None,
    }
}

/// The shape a float tensor of `dims` has when it holds exactly `len` bytes of `dt`.
fn shape_of(dims: &[i64], dt: DatumType, len: usize) -> Option<Vec<usize>> {
    let shape: Vec<usize> = dims.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<_>>()?;
    let bytes = shape.iter().try_fold(dt.size_of(), |a, &d| a.checked_mul(d))?;
    (bytes == len).then_some(shape)
}

impl Deferred {
    /// The `payloads` of `proto`, decoded from their file's skeleton ([`split`]), left to
    /// [`Deferred::fill`]; `None` unless each holds exactly a float tensor of its initializer's
    /// dimensions and no two initializers share a name (a placeholder is found by its name in
    /// tract's graph). `None` asks for the file to be decoded whole.
    pub fn of(proto: &ModelProto, payloads: Vec<Payload>) -> Option<Deferred> {
        let Some(graph) = &proto.graph else { return Some(Deferred::default()) };
        let mut names = std::collections::HashSet::new();
        if !graph.initializer.iter().all(|t| names.insert(t.name.as_str())) {
            return None;
        }
        let entries = payloads.into_iter().map(|payload| {
            let t = graph.initializer.get(payload.initializer)?;
            // Values in another field too: tract would read those from the placeholder.
            if !(t.float_data.is_empty() && t.double_data.is_empty() && t.int32_data.is_empty()) {
                return None;
            }
            let dt = float_type(t.data_type)?;
            let shape = shape_of(&t.dims, dt, payload.len)?;
            Some(Entry { name: t.name.clone(), dt, shape, payload })
        });
        Some(Deferred { entries: entries.collect::<Option<_>>()? })
    }

    /// How many initializers are left to [`Deferred::fill`].
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The placeholder of the `i`th deferred initializer: empty, and of a shape no two share.
    fn placeholder(i: usize) -> [usize; 2] {
        [0, i + 1]
    }

    /// Gives each deferred initializer still in `proto` (the graph's rewrites may have dropped
    /// one) its placeholder's dimensions, which tract parses into an empty constant; its type
    /// stays. Called after the checks and rewrites that read the initializers' dimensions.
    pub fn placeholders(&self, proto: &mut ModelProto) {
        let Some(graph) = proto.graph.as_mut() else { return };
        for (i, e) in self.entries.iter().enumerate() {
            let dims = e.shape.iter().map(|&d| d as i64);
            if let Some(t) = graph
                .initializer
                .iter_mut()
                .find(|t| t.name == e.name && t.dims.iter().copied().eq(dims.clone()))
            {
                t.dims = Self::placeholder(i).iter().map(|&d| d as i64).collect();
            }
        }
    }

    /// Reads each deferred initializer from `src` into a tensor of its own and puts it in
    /// `graph` in place of its placeholder. A placeholder tract's graph no longer has (the
    /// rewrites dropped its initializer) is skipped.
    pub fn fill(self, graph: &mut InferenceModel, src: &Source) -> Result<(), FillError> {
        use tract_onnx::tract_hir::ops::konst::Const;
        let total: usize = self.entries.iter().map(|e| e.payload.len).sum();
        for (i, e) in self.entries.into_iter().enumerate() {
            let placeholder = Self::placeholder(i);
            let found = graph.nodes().iter().position(|n| {
                n.name == e.name && n.op_as::<Const>().is_some_and(|c| c.val().shape() == placeholder)
            });
            let Some(id) = found else { continue };
            // SAFETY: every byte of the tensor is written by the read below before anything
            // reads it; when the read fails, the tensor is dropped unread.
            let mut tensor = unsafe { Tensor::uninitialized_dt(e.dt, &e.shape) }.map_err(FillError::Tract)?;
            let bytes = tensor.as_bytes_mut();
            crate::heap::map_in(bytes);
            src.read_at(e.payload.offset, bytes).map_err(FillError::Io)?;
            let tensor = tensor.into_arc_tensor();
            let fact = TypedFact::try_from(tensor.clone()).map_err(FillError::Tract)?;
            let node = graph.node_mut(id);
            node.op = Box::new(Const::new(tensor).map_err(FillError::Tract)?);
            node.outputs[0].fact = fact.into();
        }
        // The first call packs the products' weights into their kernels' layout (the Shakespeare
        // LSTM's: 9 MB, as much as its weights): fresh memory, mapped in ahead here as much as a
        // whole decode's copy of the weights used to leave free.
        crate::heap::map_ahead(total);
        Ok(())
    }
}

/// Why [`Deferred::fill`] failed.
#[derive(Debug)]
pub(crate) enum FillError {
    /// Reading the file.
    Io(std::io::Error),
    /// Making the tensor.
    Tract(TractError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use tract_onnx::pb::{GraphProto, StringStringEntryProto, TensorProto};

    const SHIPPED: [&str; 5] = [
        "seed-lstm.onnx",
        "ring8-gan.onnx",
        "grid25-gan.onnx",
        "fashion-dcgan.onnx",
        "shakespeare-lstm.onnx",
    ];

    fn shipped(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/../models/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// The protobuf put back together from a split: the skeleton decoded, each payload's bytes
    /// put in its initializer's `raw_data`.
    fn rejoined(split: &Split, bytes: &[u8]) -> ModelProto {
        let mut proto = ModelProto::decode(&split.skeleton[..]).unwrap();
        let graph = proto.graph.as_mut().unwrap();
        for p in &split.payloads {
            let t = &mut graph.initializer[p.initializer];
            assert!(t.raw_data.is_empty(), "{}: the skeleton kept a payload", t.name);
            t.raw_data = bytes[p.offset as usize..p.offset as usize + p.len].to_vec();
        }
        proto
    }

    #[test]
    fn a_split_file_rejoined_is_the_whole_files_protobuf() {
        for name in SHIPPED {
            let bytes = shipped(name);
            let whole = ModelProto::decode(&bytes[..]).unwrap();
            for large in [1, 4096, LARGE] {
                let split = split(&Source::Memory(&bytes), large).unwrap();
                let expected = whole.graph.as_ref().unwrap().initializer.iter();
                let payloads = expected.filter(|t| t.raw_data.len() as u64 >= large).count();
                assert_eq!(split.payloads.len(), payloads, "{name} at {large}");
                assert!(
                    split.skeleton.len() + split.payloads.iter().map(|p| p.len).sum::<usize>() <= bytes.len()
                );
                assert_eq!(rejoined(&split, &bytes), whole, "{name} at {large}");
            }
        }
        // The Shakespeare model's embedding and recurrent weights, not its biases.
        let bytes = shipped("shakespeare-lstm.onnx");
        assert_eq!(split(&Source::Memory(&bytes), LARGE).unwrap().payloads.len(), 5);
    }

    #[test]
    fn a_file_is_walked_as_its_bytes_are() {
        let bytes = shipped("shakespeare-lstm.onnx");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let from_file = split(&Source::File(&file, bytes.len() as u64), LARGE).unwrap();
        let from_memory = split(&Source::Memory(&bytes), LARGE).unwrap();
        assert_eq!(from_file.skeleton, from_memory.skeleton);
        assert_eq!(from_file.payloads, from_memory.payloads);
        let kind = property(&Source::File(&file, bytes.len() as u64), "kiln.kind").unwrap();
        assert_eq!(kind.as_deref(), Some(crate::contract::KIND_NEXT_WORD));
    }

    #[test]
    fn the_property_read_without_the_graph_is_the_decoded_files() {
        for name in SHIPPED {
            let bytes = shipped(name);
            let whole = ModelProto::decode(&bytes[..]).unwrap();
            for key in ["kiln.kind", "kiln.format_version", "no.such.key"] {
                let decoded =
                    whole.metadata_props.iter().rev().find(|p| p.key == key).map(|p| p.value.clone());
                assert_eq!(property(&Source::Memory(&bytes), key).unwrap(), decoded, "{name} {key}");
            }
        }
    }

    #[test]
    fn cut_or_flipped_files_split_into_their_decode_or_fail() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let bytes = shipped("grid25-gan.onnx");
        for _ in 0..300 {
            let mut b = bytes.clone();
            if rng.random_bool(0.5) {
                b.truncate(rng.random_range(0..b.len()));
            } else {
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..b.len());
                    b[i] ^= 1 << rng.random_range(0..8);
                }
            }
            // Whatever prost decodes, the split rejoins to; it never panics either way.
            let parts = split(&Source::Memory(&b), 4096);
            if let Ok(whole) = ModelProto::decode(&b[..]) {
                let parts = parts.expect("a file prost decodes walks");
                if whole.graph.is_some() {
                    assert_eq!(rejoined(&parts, &b), whole);
                }
            }
        }
    }

    /// A model of one product by each of `weights` (`[4, cols]` floats), with `props`.
    fn products(weights: &[(&str, usize)], props: &[(&str, &str)]) -> (ModelProto, Vec<Vec<f32>>) {
        let mut values = Vec::new();
        let mut initializer = Vec::new();
        let mut node = Vec::new();
        for (i, (name, cols)) in weights.iter().enumerate() {
            let data: Vec<f32> = (0..4 * cols).map(|k| (k % 97) as f32 * 0.25 - i as f32).collect();
            initializer.push(TensorProto {
                name: name.to_string(),
                dims: vec![4, *cols as i64],
                data_type: 1,
                raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ..Default::default()
            });
            node.push(tract_onnx::pb::NodeProto {
                op_type: "MatMul".into(),
                input: vec!["x".into(), name.to_string()],
                output: vec![format!("y{i}")],
                ..Default::default()
            });
            values.push(data);
        }
        let value = |n: &str, dims: &[i64]| {
            use tract_onnx::pb::{
                tensor_shape_proto::dimension::Value, type_proto, TensorShapeProto, TypeProto,
            };
            let dim = dims.iter().map(|&d| tract_onnx::pb::tensor_shape_proto::Dimension {
                value: Some(Value::DimValue(d)),
                ..Default::default()
            });
            let shape = TensorShapeProto { dim: dim.collect() };
            let tensor = type_proto::Tensor { elem_type: 1, shape: Some(shape) };
            tract_onnx::pb::ValueInfoProto {
                name: n.into(),
                r#type: Some(TypeProto {
                    value: Some(type_proto::Value::TensorType(tensor)),
                    ..Default::default()
                }),
                ..Default::default()
            }
        };
        let output =
            weights.iter().enumerate().map(|(i, (_, cols))| value(&format!("y{i}"), &[1, *cols as i64]));
        let graph = GraphProto {
            node,
            initializer,
            input: vec![value("x", &[1, 4])],
            output: output.collect(),
            ..Default::default()
        };
        let metadata_props =
            props.iter().map(|(k, v)| StringStringEntryProto { key: k.to_string(), value: v.to_string() });
        let model = ModelProto {
            ir_version: 8,
            opset_import: vec![tract_onnx::pb::OperatorSetIdProto { domain: String::new(), version: 17 }],
            graph: Some(graph),
            metadata_props: metadata_props.collect(),
            ..Default::default()
        };
        (model, values)
    }

    /// Each product's answer to `x = [1, 1, 1, 1]` through tract's graph of `bytes`, as a next-word
    /// model's file is read, and how many weights were read apart.
    fn answers(bytes: &[u8]) -> (Vec<Vec<f32>>, usize) {
        let src = Source::Memory(bytes);
        let split = split(&src, LARGE).unwrap();
        let mut proto = ModelProto::decode(&split.skeleton[..]).unwrap();
        let deferred = Deferred::of(&proto, split.payloads).unwrap_or_default();
        let read_apart = deferred.len();
        if read_apart == 0 {
            proto = ModelProto::decode(bytes).unwrap();
        }
        deferred.placeholders(&mut proto);
        use tract_onnx::tract_hir::prelude::Framework as _;
        let mut graph = tract_onnx::onnx().model_for_proto_model(&proto).unwrap();
        deferred.fill(&mut graph, &src).unwrap();
        let plan = graph.into_optimized().unwrap().into_runnable().unwrap();
        let x = tract_ndarray::Array2::<f32>::ones((1, 4)).into_tensor();
        let out = plan.run(tvec!(x.into())).unwrap();
        (
            out.iter().map(|t| t.to_plain_array_view::<f32>().unwrap().iter().copied().collect()).collect(),
            read_apart,
        )
    }

    /// Column sums of a `[4, cols]` weight: its product with ones.
    fn column_sums(w: &[f32]) -> Vec<f32> {
        let cols = w.len() / 4;
        (0..cols).map(|c| (0..4).map(|r| w[r * cols + c]).sum()).collect()
    }

    #[test]
    fn weights_read_apart_give_the_files_answers() {
        // 20,000 and 30,000 columns: 320 KB and 480 KB, read apart; 8 columns, kept inline.
        let (model, values) = products(&[("big", 20_000), ("small", 8), ("bigger", 30_000)], &[]);
        let (answers, apart) = answers(&model.encode_to_vec());
        assert_eq!(apart, 2);
        for (got, w) in answers.iter().zip(&values) {
            assert_eq!(got, &column_sums(w));
        }
    }

    #[test]
    fn weights_are_decoded_whole_where_a_placeholder_could_be_mistaken() {
        // Two initializers of one name: tract keeps one, which a placeholder's name cannot tell.
        let (mut model, _) = products(&[("w", 20_000), ("v", 20_000)], &[]);
        model.graph.as_mut().unwrap().initializer[1].name = "w".into();
        let bytes = model.encode_to_vec();
        let parts = split(&Source::Memory(&bytes), LARGE).unwrap();
        let proto = ModelProto::decode(&parts.skeleton[..]).unwrap();
        assert!(Deferred::of(&proto, parts.payloads).is_none());
        // Bytes that are not exactly the tensor its dimensions say, not floats, or beside values
        // in another field.
        for change in [
            |t: &mut TensorProto| t.dims[1] += 1,
            |t: &mut TensorProto| t.data_type = 6,
            |t: &mut TensorProto| t.float_data = vec![1.0],
        ] {
            let (mut model, _) = products(&[("w", 20_000)], &[]);
            change(&mut model.graph.as_mut().unwrap().initializer[0]);
            let bytes = model.encode_to_vec();
            let parts = split(&Source::Memory(&bytes), LARGE).unwrap();
            let proto = ModelProto::decode(&parts.skeleton[..]).unwrap();
            assert!(Deferred::of(&proto, parts.payloads).is_none());
        }
    }

    #[test]
    fn a_word_model_whose_weights_do_not_fit_is_refused_or_loaded_never_crashes() {
        let bytes = shipped("shakespeare-lstm.onnx");
        let whole = ModelProto::decode(&bytes[..]).unwrap();
        let at = |m: &ModelProto, name: &str| -> usize {
            m.graph.as_ref().unwrap().initializer.iter().position(|t| t.name == name).unwrap()
        };
        type Change = fn(&mut TensorProto, &mut TensorProto);
        // Each change to the embedding (first) and a recurrent weight (second).
        let changes: [(&str, Change); 8] = [
            ("one name for both", |a, b| b.name = a.name.clone()),
            ("names swapped", |a, b| std::mem::swap(&mut a.name, &mut b.name)),
            ("dimensions off by one", |a, _| a.dims[1] -= 1),
            ("dimensions of another weight", |a, b| a.dims = b.dims.clone()),
            ("doubles", |a, _| a.data_type = 11),
            ("halves", |_, b| b.data_type = 10),
            ("bytes cut", |_, b| b.raw_data.truncate(b.raw_data.len() - 4)),
            ("values twice", |a, _| a.float_data = vec![0.5; 4]),
        ];
        for (what, change) in changes {
            let mut m = whole.clone();
            let (a, b) = (at(&m, "embedding.weight"), at(&m, "lstm.l0.W"));
            assert!(a < b, "the embedding comes first");
            let inits = &mut m.graph.as_mut().unwrap().initializer;
            let (first, second) = inits.split_at_mut(b);
            change(&mut first[a], &mut second[0]);
            let changed = m.encode_to_vec();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("m.onnx");
            std::fs::write(&path, &changed).unwrap();
            let options = crate::LoadOptions::default();
            for loaded in [crate::load_bytes(&changed, "m.onnx", &options), crate::load(&path, &options)] {
                if let Err(e @ crate::Error::Internal { .. }) = loaded {
                    panic!("{what}: {e}");
                }
            }
        }
    }
}
