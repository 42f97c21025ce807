//! Rewrites of a parsed ONNX graph, applied at load before tract sees it, that give the same
//! answers for less work.
//!
//! **Batch normalisation folded into the layer before it.** In evaluation mode
//! `BatchNormalization` is a per-channel affine map, `y = γ·(x − μ)/√(σ² + ε) + β`; after a
//! `Conv`, `ConvTranspose` or `Gemm` it folds into that layer's weight and bias (the standard
//! inference fusion, which onnxruntime applies too). tract runs the unfolded form as a broadcast
//! `Mul` and `Add` over the whole activation: a third of a DCGAN generator's time at batch 64.
//!
//! **A transposed convolution of a 1 × 1 image as a matrix product.** A DCGAN generator's first
//! layer reads the noise reshaped to `[N, C, 1, 1]`: each output pixel is one weight times one
//! input, `y[n, o, h, w] = Σ_c x[n, c] · W[c, o, h, w] + b[o]`, which is a `Gemm` over the weight
//! as stored (`[C, O·kh·kw]`), no strides or padding involved. tract lowers `ConvTranspose` to
//! a product followed by a scatter of its columns and rearranges the weight for it at load
//! (copies of the largest weight of the file); the `Gemm` needs neither.
//!
//! **A chain of dense layers computed feature-major, for calls of many rows.** In
//! `Gemm → activation → Gemm → …` (an MLP generator) each product reads its input `[batch,
//! features]`; tract's kernels take that operand in panels along the batch, so before each
//! product it transposes the whole activation into them. [`for_many_rows`] gives the chain's
//! inner values as `[features, batch]` instead — `hᵀ = W·xᵀ + b` is a `Gemm` of the weight as
//! stored and the input transposed, the activations are element-wise, and the last layer reads
//! `hᵀ` transposed back — so each panel is a run of contiguous values. It pays only over
//! enough rows: `kiln bench`, one thread, p50 min of 6 interleaved rounds, ring8 at 64 samples
//! 47.6 → 38.5 µs a call, at 128 75.3 → 71.9, at 256 146.5 → 141.5; at 1, 16, 32 and 48 slower
//! (7.6 → 8.2, 16.3 → 18.1, 26.8 → 30.9, 30.6 → 37.4 µs). So it is a second form of the graph,
//! which [`crate::read::Runner`] plans for calls of [`MANY_ROWS`] or more, not a rewrite of
//! every load.
//!
//! A rewrite applies only where it is exact by construction: constant float initializers of the
//! expected shapes, a single consumer, no training mode, default `Gemm` scaling. Anything else is
//! left as it is, for tract to run (or refuse) unchanged.

use std::collections::{HashMap, HashSet};

use tract_onnx::pb::{
    tensor_proto::DataType, AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto,
};

/// Applies every rewrite to `model`'s main graph; returns how many nodes it rewrote.
pub(crate) fn optimise(model: &mut ModelProto) -> usize {
    model.graph.as_mut().map_or(0, |g| fold_batch_norms(g) + pointwise_deconvs_as_gemms(g))
}

/// Names for new values, `{base}.{suffix}{i}`, none taken by an initializer or a node's output.
fn name_maker(graph: &GraphProto, suffix: &'static str) -> impl FnMut(&str) -> String {
    let mut names: HashSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    names.extend(graph.node.iter().flat_map(|n| n.output.iter().cloned()));
    move |base: &str| {
        let name =
            (0..).map(|i| format!("{base}.{suffix}{i}")).find(|n| !names.contains(n)).unwrap_or_default();
        names.insert(name.clone());
        name
    }
}

/// Replaces each node `i` of `replaced` by its nodes, in place.
fn splice(graph: &mut GraphProto, mut replaced: HashMap<usize, Vec<NodeProto>>) {
    let old = std::mem::take(&mut graph.node);
    for (i, n) in old.into_iter().enumerate() {
        match replaced.remove(&i) {
            Some(nodes) => graph.node.extend(nodes),
            None => graph.node.push(n),
        }
    }
}

/// Drops the initializers nothing reads any more: no node's input, no graph output.
fn drop_unread_initializers(graph: &mut GraphProto) {
    let read: HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(graph.output.iter().map(|o| o.name.clone()))
        .collect();
    graph.initializer.retain(|t| read.contains(&t.name));
}

/// Folds each foldable `BatchNormalization` into the node that produces its input.
fn fold_batch_norms(graph: &mut GraphProto) -> usize {
    let folds = find_folds(graph);
    let mut fresh = name_maker(graph, "bn_folded");
    let mut removed = HashSet::new();
    for Fold { layer, bn, weight, bias } in folds {
        let w_name = fresh(&graph.node[layer].input[1]);
        let b_name = fresh(&graph.node[layer].output[0]);
        graph.initializer.push(TensorProto { name: w_name.clone(), ..weight });
        graph.initializer.push(bias.into_tensor(&b_name));
        let out = graph.node[bn].output[0].clone();
        let node = &mut graph.node[layer];
        node.input.truncate(1);
        node.input.push(w_name);
        node.input.push(b_name);
        node.output[0] = out;
        removed.insert(bn);
    }
    let mut i = 0;
    graph.node.retain(|_| {
        i += 1;
        !removed.contains(&(i - 1))
    });
    if !removed.is_empty() {
        // The unfolded weights and statistics, unless something else reads them: tract would
        // convert them for nothing.
        drop_unread_initializers(graph);
    }
    removed.len()
}

/// Rewrites each `ConvTranspose` of a 1 × 1 input as `Reshape` → `Gemm` → `Reshape` (see the
/// module's comment). The input is known to be 1 × 1 when it is made by a `Reshape` to a
/// constant shape `[·, C, 1, …]`.
fn pointwise_deconvs_as_gemms(graph: &mut GraphProto) -> usize {
    let found = find_pointwise_deconvs(graph);
    let mut fresh = name_maker(graph, "gemm");
    let mut replaced: HashMap<usize, Vec<NodeProto>> = HashMap::new();
    for PointwiseDeconv { node, dims, bias } in found {
        let original = &graph.node[node];
        let base = if original.name.is_empty() { original.output[0].clone() } else { original.name.clone() };
        let (inputs, taps) = (dims[0], dims[1..].iter().product::<i64>());
        // The weight's bytes as they are: moved out when nothing else reads it.
        let readers = graph.node.iter().flat_map(|n| &n.input).chain(graph.output.iter().map(|o| &o.name));
        let only_reader = readers.filter(|i| **i == original.input[1]).count() == 1;
        let Some(weight) = graph.initializer.iter_mut().find(|t| t.name == original.input[1]) else {
            continue;
        };
        let raw = match (only_reader && !weight.raw_data.is_empty(), float_bytes(weight)) {
            (_, None) => continue,
            (true, Some(_)) => std::mem::take(&mut weight.raw_data),
            (false, Some(bytes)) => bytes.into_owned(),
        };
        let names = [fresh(&base), fresh(&base), fresh(&base), fresh(&base), fresh(&base), fresh(&base)];
        let [w, b, flat_shape, flat, product, out_shape] = &names;
        let channels = dims[1] as usize;
        let per_channel = (taps / dims[1]) as usize;
        let bias: Vec<f32> = match bias {
            Some(b) => b.data.iter().flat_map(|&v| std::iter::repeat_n(v, per_channel)).collect(),
            None => vec![0.0; channels * per_channel],
        };
        let out_dims: Vec<i64> = [-1].into_iter().chain(dims[1..].iter().copied()).collect();
        graph.initializer.extend([
            TensorProto {
                name: w.clone(),
                dims: vec![inputs, taps],
                data_type: DataType::Float as i32,
                raw_data: raw,
                ..Default::default()
            },
            Floats { dims: vec![taps], data: bias }.into_tensor(b),
            int64s(flat_shape, &[-1, inputs]),
            int64s(out_shape, &out_dims),
        ]);
        let original = &graph.node[node];
        let step = |op: &str, name: String, input: Vec<String>, output: String| NodeProto {
            op_type: op.into(),
            name,
            input,
            output: vec![output],
            ..Default::default()
        };
        replaced.insert(
            node,
            vec![
                step(
                    "Reshape",
                    format!("{base}.flat"),
                    vec![original.input[0].clone(), flat_shape.clone()],
                    flat.clone(),
                ),
                step(
                    "Gemm",
                    format!("{base}.gemm"),
                    vec![flat.clone(), w.clone(), b.clone()],
                    product.clone(),
                ),
                step(
                    "Reshape",
                    format!("{base}.image"),
                    vec![product.clone(), out_shape.clone()],
                    original.output[0].clone(),
                ),
            ],
        );
    }
    let count = replaced.len();
    if count > 0 {
        splice(graph, replaced);
        drop_unread_initializers(graph);
    }
    count
}

/// The rows from which a call runs [`for_many_rows`]'s form of a graph. tract holds an output's
/// innermost axis in vector registers only from 64 long (`STORE_ALONG_M_MIN` in the vendored
/// tract-core); below that the feature-major outputs, whose innermost axis is the batch, are
/// stored a value at a time, and the form is slower (see the module's comment).
pub(crate) const MANY_ROWS: usize = 64;

/// `model` with each chain of two or more dense layers computed feature-major (see the module's
/// comment), or `None` when it has no such chain. `model` is the form [`optimise`] left.
pub(crate) fn for_many_rows(model: &ModelProto) -> Option<ModelProto> {
    let chains = dense_chains(model.graph.as_ref()?);
    if chains.is_empty() {
        return None;
    }
    let mut model = model.clone();
    let graph = model.graph.as_mut()?;
    let mut fresh = name_maker(graph, "feature_major");
    let consts = constants(graph);
    let mut columns = Vec::new();
    let mut edits: Vec<(usize, NodeProto)> = Vec::new();
    for chain in &chains {
        let last = chain.len() - 1;
        // The value each node of the chain now reads, transposed from the second layer on.
        let mut input = graph.node[chain[0]].input[0].clone();
        for (pos, &i) in chain.iter().enumerate() {
            let mut node = graph.node[i].clone();
            if node.op_type == "Gemm" {
                let trans_b = int_attr(&node, "transB").unwrap_or(0);
                node.attribute.retain(|a| a.name != "transA" && a.name != "transB");
                if pos == last {
                    // y = (hᵀ)ᵀ·op(W) + b: the file's own output, as it was.
                    node.input[0] = input.clone();
                    node.attribute.push(int_attribute("transA", 1));
                    node.attribute.push(int_attribute("transB", trans_b));
                } else {
                    // yᵀ = op(W)ᵀ·xᵀ + b as a column.
                    let weight = node.input[1].clone();
                    node.input[0] = weight;
                    node.input[1] = input.clone();
                    if let Some(bias) = node.input.get(2).cloned() {
                        let b = floats(consts.get(bias.as_str())?)?;
                        let name = fresh(&bias);
                        columns.push(
                            Floats { dims: vec![b.data.len() as i64, 1], data: b.data }.into_tensor(&name),
                        );
                        node.input[2] = name;
                    }
                    node.attribute.push(int_attribute("transA", 1 - trans_b));
                    node.attribute.push(int_attribute("transB", (pos == 0) as i64));
                }
            } else {
                node.input[0] = input.clone();
            }
            if pos != last {
                node.output[0] = fresh(&node.output[0]);
                input = node.output[0].clone();
            }
            edits.push((i, node));
        }
    }
    for (i, node) in edits {
        graph.node[i] = node;
    }
    graph.initializer.extend(columns);
    drop_unread_initializers(graph);
    Some(model)
}

/// An integer attribute.
fn int_attribute(name: &str, value: i64) -> AttributeProto {
    use tract_onnx::pb::attribute_proto::AttributeType;
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: value, ..Default::default() }
}

/// The element-wise activations a chain of dense layers may have between its layers.
const ACTIVATIONS: [&str; 4] = ["Relu", "LeakyRelu", "Tanh", "Sigmoid"];

/// Every chain of dense layers (as node indices, the layers and the activations between them,
/// in order) of at least two layers, where each layer but the first reads, through element-wise
/// activations, only the layer before it, and nothing else reads the values between them.
fn dense_chains(graph: &GraphProto) -> Vec<Vec<usize>> {
    let (consts, uses) = (constants(graph), uses(graph));
    // A Gemm a batch norm could fold into (`out_axis`: unscaled, A as it is), with no other
    // attributes, B transposed or not, a constant 2-D weight and a 1-D bias or none.
    let dense = |node: &NodeProto| -> bool {
        let known = node.attribute.iter().all(|a| match a.name.as_str() {
            "transB" => a.i == 0 || a.i == 1,
            name => ["alpha", "beta", "transA"].contains(&name),
        });
        let axis =
            (node.op_type == "Gemm" && node.output.len() == 1 && known).then(|| out_axis(node)).flatten();
        let weight = node.input.get(1).and_then(|w| consts.get(w.as_str()));
        let out = weight
            .zip(axis)
            .and_then(|(w, axis)| (w.dims.len() == 2 && float_bytes(w).is_some()).then(|| w.dims[axis]));
        match (node.input.get(2), out) {
            (None, Some(_)) => node.input.len() == 2,
            (Some(b), Some(out)) => {
                consts.get(b.as_str()).and_then(|b| floats(b)).is_some_and(|b| b.dims == [out])
            }
            _ => false,
        }
    };
    // The one node reading each value read once.
    let mut reader: HashMap<&str, usize> = HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for input in &node.input {
            if uses.get(input.as_str()) == Some(&1) {
                reader.insert(input.as_str(), i);
            }
        }
    }
    // The chain that goes on from layer `i`: the activations after it and the next layer.
    let next = |i: usize| -> Option<Vec<usize>> {
        let mut steps = Vec::new();
        let mut at = i;
        loop {
            let out = graph.node[at].output.first()?;
            let r = *reader.get(out.as_str())?;
            let node = &graph.node[r];
            if node.input.first() != Some(out) {
                return None;
            }
            steps.push(r);
            if dense(node) {
                return Some(steps);
            }
            let activation = ACTIVATIONS.contains(&node.op_type.as_str())
                && node.domain.is_empty()
                && node.input.len() == 1
                && node.output.len() == 1;
            if !activation {
                return None;
            }
            at = r;
        }
    };
    let mut inner = HashSet::new();
    let mut chains = Vec::new();
    for (i, node) in graph.node.iter().enumerate() {
        if !dense(node) || inner.contains(&i) {
            continue;
        }
        let mut chain = vec![i];
        let mut at = i;
        while let Some(steps) = next(at) {
            at = *steps.last().unwrap_or(&at);
            chain.extend(steps);
        }
        if chain.len() > 1 {
            inner.extend(chain.iter().copied());
            chains.push(chain);
        }
    }
    chains
}

/// A `ConvTranspose` of a 1 × 1 input: node `node`, its weight's dims `[C, O, k…]`, its bias.
struct PointwiseDeconv {
    node: usize,
    dims: Vec<i64>,
    bias: Option<Floats>,
}

fn find_pointwise_deconvs(graph: &GraphProto) -> Vec<PointwiseDeconv> {
    let consts = constants(graph);
    let producer: HashMap<&str, &NodeProto> =
        graph.node.iter().flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n))).collect();
    let graph_inputs: HashSet<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    graph
        .node
        .iter()
        .enumerate()
        .filter_map(|(i, node)| {
            if node.op_type != "ConvTranspose" || !node.domain.is_empty() || node.output.len() != 1 {
                return None;
            }
            if !(2..=3).contains(&node.input.len()) {
                return None;
            }
            // Only attributes at values that leave each output pixel one weight times one input.
            for a in &node.attribute {
                let ok = match a.name.as_str() {
                    "group" => a.i == 1,
                    "dilations" => a.ints.iter().all(|&d| d == 1),
                    "pads" | "output_padding" => a.ints.iter().all(|&p| p == 0),
                    "auto_pad" => a.s == b"NOTSET" || a.s == b"VALID",
                    "kernel_shape" | "strides" => true,
                    _ => false,
                };
                if !ok {
                    return None;
                }
            }
            let w = consts.get(node.input[1].as_str())?;
            let dims = w.dims.clone();
            if dims.len() < 3 || dims.iter().any(|&d| d <= 0) || float_bytes(w).is_none() {
                return None;
            }
            let kernel = node.attribute.iter().find(|a| a.name == "kernel_shape");
            if kernel.is_some_and(|k| k.ints[..] != dims[2..]) {
                return None;
            }
            let bias = match node.input.get(2) {
                Some(b) => Some(floats(consts.get(b.as_str())?)?).filter(|f| f.dims == [dims[1]]),
                None => None,
            };
            if node.input.len() == 3 && bias.is_none() {
                return None;
            }
            // The input: a Reshape to [·, C, 1, …] by a constant shape.
            let x = node.input[0].as_str();
            if graph_inputs.contains(x) {
                return None;
            }
            let reshape = producer.get(x)?;
            if reshape.op_type != "Reshape" || !reshape.domain.is_empty() || reshape.input.len() != 2 {
                return None;
            }
            if reshape.attribute.iter().any(|a| a.name == "allowzero" && a.i != 0) {
                return None;
            }
            let shape = int64_values(consts.get(reshape.input[1].as_str())?)?;
            let image_of_one =
                shape.len() == dims.len() && shape[1] == dims[0] && shape[2..].iter().all(|&d| d == 1);
            image_of_one.then_some(PointwiseDeconv { node: i, dims, bias })
        })
        .collect()
}

/// A 1-D int64 initializer.
pub(crate) fn int64s(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: vec![values.len() as i64],
        data_type: DataType::Int64 as i32,
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

/// An int64 initializer's values, when it holds exactly as many as its dimensions say.
fn int64_values(t: &TensorProto) -> Option<Vec<i64>> {
    if t.data_type != DataType::Int64 as i32 || t.data_location.unwrap_or(0) != 0 || t.segment.is_some() {
        return None;
    }
    let len = t.dims.iter().try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))?;
    let values: Vec<i64> = if t.raw_data.is_empty() {
        t.int64_data.clone()
    } else {
        let (words, rest) = t.raw_data.as_chunks::<8>();
        if !rest.is_empty() {
            return None;
        }
        words.iter().map(|w| i64::from_le_bytes(*w)).collect()
    };
    (values.len() == len).then_some(values)
}

/// A layer and the batch norm after it, with the layer's folded weight and bias.
struct Fold {
    layer: usize,
    bn: usize,
    weight: TensorProto,
    bias: Floats,
}

/// A float tensor and its dimensions.
struct Floats {
    dims: Vec<i64>,
    data: Vec<f32>,
}

impl Floats {
    fn into_tensor(self, name: &str) -> TensorProto {
        TensorProto {
            name: name.to_string(),
            dims: self.dims,
            data_type: DataType::Float as i32,
            raw_data: le_bytes(&self.data),
            ..Default::default()
        }
    }
}

/// `data` as ONNX stores floats: little-endian bytes.
fn le_bytes(data: &[f32]) -> Vec<u8> {
    let mut raw = vec![0u8; data.len() * 4];
    for (bytes, v) in raw.chunks_exact_mut(4).zip(data) {
        bytes.copy_from_slice(&v.to_le_bytes());
    }
    raw
}

/// The initializers that are constants (not overridable by a graph input of the same name).
fn constants(graph: &GraphProto) -> HashMap<&str, &TensorProto> {
    let inputs: HashSet<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    graph
        .initializer
        .iter()
        .filter(|t| !inputs.contains(t.name.as_str()))
        .map(|t| (t.name.as_str(), t))
        .collect()
}

/// How many times each value is read: by nodes, and as a graph output.
fn uses(graph: &GraphProto) -> HashMap<&str, usize> {
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for i in graph.node.iter().flat_map(|n| &n.input).chain(graph.output.iter().map(|o| &o.name)) {
        *uses.entry(i.as_str()).or_default() += 1;
    }
    uses
}

/// Every foldable (layer, batch norm) pair. Each batch norm has its own layer (the layer's
/// output has no other consumer), so the folds are independent.
fn find_folds(graph: &GraphProto) -> Vec<Fold> {
    let (consts, uses) = (constants(graph), uses(graph));
    let producer: HashMap<&str, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    graph
        .node
        .iter()
        .enumerate()
        .filter_map(|(bn, node)| {
            if node.op_type != "BatchNormalization" || !node.domain.is_empty() || node.output.len() != 1 {
                return None;
            }
            if int_attr(node, "training_mode").unwrap_or(0) != 0 || node.input.len() != 5 {
                return None;
            }
            let x = node.input[0].as_str();
            let layer = *producer.get(x)?;
            if uses.get(x) != Some(&1) {
                return None;
            }
            let l = &graph.node[layer];
            let axis = out_axis(l)?;
            if l.output.len() != 1 || !(2..=3).contains(&l.input.len()) {
                return None;
            }
            let weight = consts.get(l.input[1].as_str())?;
            let weight_bytes = float_bytes(weight)?;
            let channels = *weight.dims.get(axis)? as usize;
            let params: Vec<Floats> =
                node.input[1..].iter().map(|n| floats(consts.get(n.as_str())?)).collect::<Option<_>>()?;
            if params.iter().any(|p| p.data.len() != channels) {
                return None;
            }
            let bias = match l.input.get(2) {
                Some(b) => floats(consts.get(b.as_str())?)?.data,
                None => vec![0.0; channels],
            };
            if bias.len() != channels {
                return None;
            }
            let eps = node.attribute.iter().find(|a| a.name == "epsilon").map_or(1e-5, |a| a.f);
            let (gamma, beta, mean, var) =
                (&params[0].data, &params[1].data, &params[2].data, &params[3].data);
            let scale: Vec<f32> = (0..channels).map(|c| gamma[c] / (var[c] + eps).sqrt()).collect();
            if scale.iter().any(|s| !s.is_finite()) {
                return None;
            }
            // The weight's elements, with output channel `c` at stride `inner` within blocks of
            // `channels · inner`.
            let inner: usize = weight.dims[axis + 1..].iter().map(|&d| d as usize).product();
            let mut raw = vec![0u8; weight_bytes.len()];
            let (from, to) = (weight_bytes.as_chunks::<4>().0, raw.as_chunks_mut::<4>().0);
            for (block, (from, to)) in from.chunks(inner.max(1)).zip(to.chunks_mut(inner.max(1))).enumerate()
            {
                let s = scale[block % channels];
                for (w, out) in from.iter().zip(to) {
                    *out = (f32::from_le_bytes(*w) * s).to_le_bytes();
                }
            }
            let folded_bias = (0..channels).map(|c| (bias[c] - mean[c]) * scale[c] + beta[c]).collect();
            Some(Fold {
                layer,
                bn,
                weight: TensorProto {
                    dims: weight.dims.clone(),
                    data_type: DataType::Float as i32,
                    raw_data: raw,
                    ..Default::default()
                },
                bias: Floats { dims: vec![channels as i64], data: folded_bias },
            })
        })
        .collect()
}

/// The axis of a layer's weight that indexes its output channels, for the layers a batch norm
/// folds into.
fn out_axis(node: &NodeProto) -> Option<usize> {
    if !node.domain.is_empty() {
        return None;
    }
    match node.op_type.as_str() {
        // weight [out, in / group, k…]
        "Conv" => Some(0),
        // weight [in, out / group, k…]: only ungrouped, where axis 1 is every output channel.
        "ConvTranspose" if int_attr(node, "group").unwrap_or(1) == 1 => Some(1),
        // C = α·A·B + β·bias, B [in, out] or, transposed, [out, in]; [batch, out] only.
        "Gemm" => {
            let scaled = node.attribute.iter().any(|a| (a.name == "alpha" || a.name == "beta") && a.f != 1.0);
            (!scaled && int_attr(node, "transA").unwrap_or(0) == 0).then(|| {
                if int_attr(node, "transB").unwrap_or(0) == 1 {
                    0
                } else {
                    1
                }
            })
        }
        _ => None,
    }
}

fn int_attr(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

/// A float initializer's values, when it holds exactly as many as its dimensions say.
fn floats(t: &TensorProto) -> Option<Floats> {
    let bytes = float_bytes(t)?;
    let data = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    Some(Floats { dims: t.dims.clone(), data })
}

/// A float initializer's values as little-endian bytes (borrowed from `raw_data`, or encoded
/// from `float_data`), when it holds exactly as many as its dimensions say.
fn float_bytes(t: &TensorProto) -> Option<std::borrow::Cow<'_, [u8]>> {
    if t.data_type != DataType::Float as i32 || t.data_location.unwrap_or(0) != 0 || t.segment.is_some() {
        return None;
    }
    let len = t.dims.iter().try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))?;
    let bytes = if t.raw_data.is_empty() {
        std::borrow::Cow::Owned(le_bytes(&t.float_data))
    } else {
        std::borrow::Cow::Borrowed(&t.raw_data[..])
    };
    (Some(bytes.len()) == len.checked_mul(4)).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numeric::max_abs_diff;
    use tract_onnx::pb::ValueInfoProto;
    use tract_onnx::prelude::*;

    /// A float tensor of unknown shape.
    fn float_value(name: &str) -> ValueInfoProto {
        use tract_onnx::pb::{type_proto, TypeProto};
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: DataType::Float as i32,
                    shape: None,
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A model of `graph`, at opset 17.
    fn model_of(graph: GraphProto) -> ModelProto {
        ModelProto {
            ir_version: 8,
            opset_import: vec![tract_onnx::pb::OperatorSetIdProto { domain: String::new(), version: 17 }],
            graph: Some(graph),
            ..Default::default()
        }
    }

    fn shipped(name: &str) -> ModelProto {
        let path = format!("{}/../models/{name}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap();
        tract_onnx::onnx().proto_model_for_read(&mut &bytes[..]).unwrap()
    }

    /// Runs `model` with tract as it is (no rewrite) on `x`, whose shape fixes every input axis.
    fn run(model: &ModelProto, x: &Tensor) -> Vec<f32> {
        let mut graph = tract_onnx::onnx().model_for_proto_model(model).unwrap();
        graph.set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), x.shape())).unwrap();
        let plan = graph.into_optimized().unwrap().into_runnable().unwrap();
        let out = plan.run(tvec!(x.clone().into())).unwrap();
        out[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect()
    }

    fn count(model: &ModelProto, op: &str) -> usize {
        model.graph.as_ref().unwrap().node.iter().filter(|n| n.op_type == op).count()
    }

    fn noise(shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        let v = crate::noise::normal(7, n);
        Tensor::from_shape(shape, &v).unwrap()
    }

    /// `model` has `batch_norms` batch norms, all folded, and `others` nodes rewritten by other
    /// rewrites; the rewritten graph gives the same answers on `x`.
    fn check_folds(model: ModelProto, x: Tensor, batch_norms: usize, others: usize) {
        assert_eq!(count(&model, "BatchNormalization"), batch_norms);
        let mut folded = model.clone();
        assert_eq!(optimise(&mut folded), batch_norms + others);
        assert_eq!(count(&folded, "BatchNormalization"), 0);
        let (want, got) = (run(&model, &x), run(&folded, &x));
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        let diff = max_abs_diff(&want, &got);
        assert!(diff <= 1e-5 * scale, "folded graph differs by {diff}");
    }

    #[test]
    fn folds_batch_norm_into_transposed_convolutions() {
        // The first transposed convolution (of a 1 × 1 image) becomes a Gemm too.
        check_folds(shipped("fashion-dcgan.onnx"), noise(&[3, 100]), 2, 1);
    }

    #[test]
    fn folds_batch_norm_into_gemm() {
        check_folds(shipped("grid25-gan.onnx"), noise(&[5, 2]), 6, 0);
    }

    fn tensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
        Floats { dims: dims.to_vec(), data: data.to_vec() }.into_tensor(name)
    }

    fn value(name: &str) -> ValueInfoProto {
        ValueInfoProto { name: name.into(), ..Default::default() }
    }

    fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// `Conv` (3 → 4 channels, 3×3, no bias) then `BatchNormalization`; `extra` adds a second
    /// consumer of the convolution's output.
    fn conv_bn(extra: bool) -> ModelProto {
        let w: Vec<f32> = crate::noise::normal(1, 4 * 3 * 9);
        let stats = |seed, shift: f32| -> Vec<f32> {
            crate::noise::normal(seed, 4).iter().map(|v| v.abs() + shift).collect()
        };
        let mut conv = node("Conv", &["x", "w"], &["y"]);
        conv.attribute.push(AttributeProto {
            name: "kernel_shape".into(),
            ints: vec![3, 3],
            r#type: 7,
            ..Default::default()
        });
        let mut nodes = vec![conv, node("BatchNormalization", &["y", "g", "b", "m", "v"], &["out"])];
        let mut outputs = vec![value("out")];
        if extra {
            nodes.push(node("Relu", &["y"], &["side"]));
            outputs.push(value("side"));
        }
        let graph = GraphProto {
            node: nodes,
            initializer: vec![
                tensor("w", &[4, 3, 3, 3], &w),
                tensor("g", &[4], &stats(2, 0.5)),
                tensor("b", &[4], &stats(3, -1.0)),
                tensor("m", &[4], &stats(4, -0.5)),
                tensor("v", &[4], &stats(5, 0.1)),
            ],
            input: vec![float_value("x")],
            output: outputs,
            ..Default::default()
        };
        model_of(graph)
    }

    #[test]
    fn folds_batch_norm_into_convolutions() {
        check_folds(conv_bn(false), noise(&[2, 3, 6, 5]), 1, 0);
    }

    #[test]
    fn leaves_a_layer_whose_output_has_other_consumers() {
        let mut model = conv_bn(true);
        assert_eq!(optimise(&mut model), 0);
        assert_eq!(count(&model, "BatchNormalization"), 1);
    }

    #[test]
    fn leaves_batch_norm_in_training_mode() {
        let mut model = conv_bn(false);
        let bn = &mut model.graph.as_mut().unwrap().node[1];
        bn.attribute.push(AttributeProto {
            name: "training_mode".into(),
            i: 1,
            r#type: 2,
            ..Default::default()
        });
        assert_eq!(optimise(&mut model), 0);
    }

    #[test]
    fn leaves_statistics_that_are_not_constants() {
        let mut model = conv_bn(false);
        model.graph.as_mut().unwrap().input.push(value("m"));
        assert_eq!(optimise(&mut model), 0);
    }

    /// `Reshape` of `x` to `[-1, 3, 1, 1]`, then `ConvTranspose` (3 → 4 channels, 2 × 3 kernel,
    /// bias, strides 2) with `attrs` added.
    fn deconv_of_one_pixel(attrs: Vec<AttributeProto>) -> ModelProto {
        let ints = |name: &str, v: &[i64]| AttributeProto {
            name: name.into(),
            ints: v.to_vec(),
            r#type: 7,
            ..Default::default()
        };
        let mut deconv = node("ConvTranspose", &["image", "w", "b"], &["y"]);
        deconv.attribute = vec![ints("kernel_shape", &[2, 3]), ints("strides", &[2, 2])];
        deconv.attribute.extend(attrs);
        let graph = GraphProto {
            node: vec![node("Reshape", &["x", "shape"], &["image"]), deconv, node("Relu", &["y"], &["out"])],
            initializer: vec![
                tensor("w", &[3, 4, 2, 3], &crate::noise::normal(1, 3 * 4 * 6)),
                tensor("b", &[4], &crate::noise::normal(2, 4)),
                int64s("shape", &[-1, 3, 1, 1]),
            ],
            input: vec![float_value("x")],
            output: vec![value("out")],
            ..Default::default()
        };
        model_of(graph)
    }

    #[test]
    fn a_transposed_convolution_of_one_pixel_becomes_a_product() {
        let model = deconv_of_one_pixel(vec![]);
        let mut rewritten = model.clone();
        assert_eq!(optimise(&mut rewritten), 1);
        assert_eq!((count(&rewritten, "ConvTranspose"), count(&rewritten, "Gemm")), (0, 1));
        let x = [noise(&[5, 3])];
        let (want, got) = (run_all(&model, &x), run_all(&rewritten, &x));
        assert_eq!(want[0].len(), 5 * 4 * 2 * 3);
        let diff = max_abs_diff(&want[0], &got[0]);
        assert!(diff <= 1e-5, "the rewritten graph differs by {diff}");
    }

    #[test]
    fn a_transposed_convolution_that_pads_or_groups_is_left() {
        let attr = |name: &str, ints: &[i64], i: i64| AttributeProto {
            name: name.into(),
            ints: ints.to_vec(),
            i,
            ..Default::default()
        };
        for a in [
            attr("pads", &[0, 1, 0, 1], 0),
            attr("output_padding", &[1, 0], 0),
            attr("dilations", &[2, 1], 0),
        ] {
            let mut model = deconv_of_one_pixel(vec![a.clone()]);
            assert_eq!(optimise(&mut model), 0, "{}", a.name);
        }
        // An input not known to be one pixel.
        let mut model = deconv_of_one_pixel(vec![]);
        let g = model.graph.as_mut().unwrap();
        g.initializer.retain(|t| t.name != "shape");
        g.initializer.push(int64s("shape", &[-1, 3, 2, 1]));
        assert_eq!(optimise(&mut model), 0);
    }

    /// The MLP generators' chains of dense layers, computed feature-major, give the file's
    /// samples, at one row and at many.
    #[test]
    fn a_chain_of_dense_layers_runs_feature_major_with_the_same_answers() {
        for (name, layers) in [("ring8-gan.onnx", 4), ("grid25-gan.onnx", 7)] {
            let mut model = shipped(name);
            optimise(&mut model);
            let wide = for_many_rows(&model).unwrap();
            let graph = wide.graph.as_ref().unwrap();
            let weights: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
            let gemms: Vec<&NodeProto> = graph.node.iter().filter(|n| n.op_type == "Gemm").collect();
            assert_eq!(gemms.len(), layers, "{name}");
            // Every layer but the last multiplies its weight by the input transposed; the last
            // reads that transposed back.
            for (i, gemm) in gemms.iter().enumerate() {
                let last = i + 1 == layers;
                assert_eq!(weights.contains(gemm.input[0].as_str()), !last, "{name}: layer {i}");
                assert_eq!(int_attr(gemm, "transA"), Some(if last { 1 } else { 0 }), "{name}: layer {i}");
            }
            for rows in [1, 70] {
                let x = noise(&[rows, 2]);
                let (want, got) = (run(&model, &x), run(&wide, &x));
                let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
                let diff = max_abs_diff(&want, &got);
                assert!(diff <= 1e-5 * scale, "{name}, {rows} rows: feature-major differs by {diff}");
            }
        }
    }

    /// x [·, 3] → Gemm(w1 [3, 4] as stored, no bias) → Tanh → Gemm(w2 [2, 4] transposed, b2),
    /// with `outputs` the graph's outputs.
    fn two_dense_layers(outputs: &[&str]) -> ModelProto {
        let mut second = node("Gemm", &["t", "w2", "b2"], &["y"]);
        second.attribute.push(int_attribute("transB", 1));
        let graph = GraphProto {
            node: vec![node("Gemm", &["x", "w1"], &["h"]), node("Tanh", &["h"], &["t"]), second],
            initializer: vec![
                tensor("w1", &[3, 4], &crate::noise::normal(3, 12)),
                tensor("w2", &[2, 4], &crate::noise::normal(4, 8)),
                tensor("b2", &[2], &crate::noise::normal(5, 2)),
            ],
            input: vec![float_value("x")],
            output: outputs.iter().map(|o| value(o)).collect(),
            ..Default::default()
        };
        model_of(graph)
    }

    #[test]
    fn a_chain_without_a_bias_or_with_a_weight_as_stored_runs_feature_major_too() {
        let model = two_dense_layers(&["y"]);
        let wide = for_many_rows(&model).unwrap();
        let x = [noise(&[9, 3])];
        let (want, got) = (run_all(&model, &x), run_all(&wide, &x));
        assert_eq!(want[0].len(), 9 * 2);
        let diff = max_abs_diff(&want[0], &got[0]);
        assert!(diff <= 1e-5, "feature-major differs by {diff}");
    }

    #[test]
    fn a_chain_whose_inner_values_are_read_elsewhere_or_scaled_is_left() {
        // The activation between the layers is an output of the graph too.
        assert!(for_many_rows(&two_dense_layers(&["y", "t"])).is_none());
        // The second layer scales its product.
        let mut model = two_dense_layers(&["y"]);
        let second = &mut model.graph.as_mut().unwrap().node[2];
        second.attribute.push(AttributeProto {
            name: "alpha".into(),
            f: 0.5,
            r#type: 1,
            ..Default::default()
        });
        assert!(for_many_rows(&model).is_none());
        // One layer alone.
        let mut model = two_dense_layers(&["t"]);
        model.graph.as_mut().unwrap().node.truncate(2);
        assert!(for_many_rows(&model).is_none());
    }

    /// Every output of `model` on `inputs`, flattened.
    fn run_all(model: &ModelProto, inputs: &[Tensor]) -> Vec<Vec<f32>> {
        let mut graph = tract_onnx::onnx().model_for_proto_model(model).unwrap();
        for (i, x) in inputs.iter().enumerate() {
            graph.set_input_fact(i, InferenceFact::dt_shape(x.datum_type(), x.shape())).unwrap();
        }
        let plan = graph.into_optimized().unwrap().into_runnable().unwrap();
        let out = plan.run(inputs.iter().map(|x| x.clone().into()).collect()).unwrap();
        out.iter().map(|t| t.to_plain_array_view::<f32>().unwrap().iter().copied().collect()).collect()
    }
}
