//! What a graph would build at load, bounded before tract builds it.
//!
//! tract evaluates every part of a graph that depends on constants only while it types the graph
//! (constant folding), so a 200-byte file whose `ConstantOfShape` asks for 10¹² zeros would
//! exhaust memory inside `kiln info`. The ops that make a tensor larger than their inputs from a
//! shape given as data — `ConstantOfShape`, `Expand`, `Tile`, `Range`, `RandomNormal`,
//! `RandomUniform` — are checked here on the parsed protobuf: where their size arguments are
//! constants, the size of what they build is computed and refused above the budget; where those
//! arguments are computed from constants by ops this check does not follow, the file is refused
//! too, since the size cannot be known before tract allocates it. Sizes that depend on the
//! graph's inputs are bounded per call instead ([`crate::Limits::max_call_bytes`]).

use std::collections::{HashMap, HashSet};

use tract_onnx::pb::{tensor_proto::DataType, GraphProto, NodeProto, TensorProto};

/// A node that tract would run at load and kiln will not let it: one that would build too large
/// a tensor, or one whose size cannot be known, or heavy arithmetic on constants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The node, as messages name it: "the Expand node `x`", "a ConstantOfShape node".
    pub node: String,
    /// Bytes it would build; `None` when they cannot be computed from the file.
    pub bytes: Option<u128>,
    /// A convolution, recurrence or einsum whose inputs are all constants. A model computes
    /// these on its inputs; on constants tract runs them while loading, where they are neither
    /// bounded nor useful (a generator rewired to read a weight instead of `z` took 3.9 s and
    /// 346 MB to load).
    pub computes: bool,
}

/// Ops that do a model's arithmetic: never on constants alone in a real model. (MatMul and Gemm
/// on constants are bounded by their result's size below.)
const HEAVY: &[&str] = &[
    "Conv",
    "ConvTranspose",
    "ConvInteger",
    "QLinearConv",
    "LSTM",
    "GRU",
    "RNN",
    "Einsum",
    "MaxPool",
    "AveragePool",
    "LpPool",
];

/// Checks what tract's parser and shape inference take for granted of a graph, so that a broken
/// or hostile file is an error instead of a panic inside them: every value a node reads or the
/// graph returns is defined (by a graph input, an initializer or a node); declared dimensions are
/// not negative; `Transpose` permutes its axes; convolutions' and pools' `pads`, `strides`,
/// `dilations` and `kernel_shape` fit each other. Returns the first problem found.
pub(crate) fn check_structure(graph: &GraphProto) -> Result<(), String> {
    let mut defined: HashSet<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    defined.extend(graph.initializer.iter().map(|t| t.name.as_str()));
    defined.extend(graph.node.iter().flat_map(|n| n.output.iter().map(String::as_str)));
    for t in &graph.initializer {
        if t.dims.iter().any(|&d| d < 0) {
            return Err(format!("the initializer `{}` has a negative dimension: {:?}", t.name, t.dims));
        }
    }
    for v in graph.input.iter().chain(&graph.output).chain(&graph.value_info) {
        use tract_onnx::pb::{tensor_shape_proto::dimension::Value, type_proto::Value as Type};
        if let Some(Type::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            let dims = t.shape.iter().flat_map(|s| &s.dim);
            if dims.into_iter().any(|d| matches!(d.value, Some(Value::DimValue(v)) if v < 0)) {
                return Err(format!("the value `{}` is declared with a negative dimension", v.name));
            }
        }
    }
    let ranks = ranks(graph);
    for node in &graph.node {
        let name = || {
            if node.name.is_empty() {
                format!("a {} node", node.op_type)
            } else {
                format!("the {} node `{}`", node.op_type, node.name)
            }
        };
        // Nodes with sub-graphs may read values of the enclosing scope by name: left to tract.
        let has_subgraph = node.attribute.iter().any(|a| a.g.is_some() || !a.graphs.is_empty());
        if !has_subgraph {
            if let Some(missing) = node.input.iter().find(|i| !i.is_empty() && !defined.contains(i.as_str()))
            {
                return Err(format!("{} reads `{missing}`, which nothing in the graph defines", name()));
            }
        }
        let ints = |attr: &str| node.attribute.iter().find(|a| a.name == attr).map(|a| a.ints.as_slice());
        match node.op_type.as_str() {
            // tract reads the channel axis of these without a bounds check.
            "BatchNormalization" | "InstanceNormalization" => {
                let data = node.input.first().map(String::as_str).unwrap_or("");
                if ranks.get(data).is_some_and(|&r| r < 2) {
                    return Err(format!("{} normalises `{data}`, which has no channel axis", name()));
                }
            }
            // Axes beyond any tensor's rank (tract indexes with them unchecked).
            op if op == "Squeeze" || op == "Unsqueeze" || op.starts_with("Reduce") => {
                let from_input =
                    node.input.get(1).and_then(|n| graph.initializer.iter().find(|t| &t.name == n));
                // ONNX's axes are int64; tract reads others as whatever they hold, and a float
                // weight taken for axes left a later normalisation indexing past a shape.
                if let Some(t) = from_input.filter(|t| t.data_type != DataType::Int64 as i32) {
                    return Err(format!(
                        "{} takes its axes from `{}`, which is not an int64 tensor",
                        name(),
                        t.name
                    ));
                }
                let axes = ints("axes").map(<[i64]>::to_vec).or_else(|| from_input.and_then(int_values));
                if let Some(axes) = axes.filter(|a| a.iter().any(|&x| !(-MAX_RANK..MAX_RANK).contains(&x))) {
                    return Err(format!("{} has axes {axes:?}, beyond any tensor's rank", name()));
                }
            }
            "Transpose" => {
                if let Some(perm) = ints("perm") {
                    let mut seen = vec![false; perm.len()];
                    for &p in perm {
                        match usize::try_from(p).ok().and_then(|p| seen.get_mut(p)) {
                            Some(s) if !*s => *s = true,
                            _ => {
                                return Err(format!(
                                    "{} has `perm` {perm:?}, not a permutation of its axes",
                                    name()
                                ))
                            }
                        }
                    }
                }
            }
            "Conv" | "ConvTranspose" | "MaxPool" | "AveragePool" | "LpPool" => {
                // The spatial rank: from kernel_shape, else from the weight's rank.
                let weight_rank = node
                    .input
                    .get(1)
                    .and_then(|w| graph.initializer.iter().find(|t| &t.name == w))
                    .map(|t| t.dims.len().saturating_sub(2));
                let rank = ints("kernel_shape").map(<[i64]>::len).or(weight_rank);
                for (attr, per_axis, least) in [
                    ("kernel_shape", 1, 1),
                    ("strides", 1, 1),
                    ("dilations", 1, 1),
                    ("pads", 2, 0),
                    ("output_padding", 1, 0),
                ] {
                    let Some(v) = ints(attr) else { continue };
                    if v.iter().any(|&x| x < least || x > 1 << 20) {
                        return Err(format!("{} has `{attr}` {v:?}, out of range", name()));
                    }
                    if let Some(rank) = rank {
                        if v.len() != per_axis * rank {
                            return Err(format!("{} has `{attr}` {v:?} for {rank} spatial axes", name()));
                        }
                    }
                }
                if node.op_type != "Conv" && node.op_type != "ConvTranspose" && ints("kernel_shape").is_none()
                {
                    return Err(format!("{} has no `kernel_shape`", name()));
                }
            }
            _ => {}
        }
    }
    if let Some(missing) = graph.output.iter().find(|o| !defined.contains(o.name.as_str())) {
        return Err(format!("the graph returns `{}`, which nothing in it defines", missing.name));
    }
    Ok(())
}

/// More axes than any tensor a model computes has.
const MAX_RANK: i64 = 16;

/// The ranks of the graph's values, where they follow from the file without tract: declared
/// inputs, initializers, `Constant` nodes, and through the ops whose output rank follows from
/// their inputs' (element-wise ops, `Gemm`, convolutions, normalisations, `Flatten`, `Transpose`,
/// `Reshape` to a constant shape, `Squeeze`/`Unsqueeze` with attribute axes). Others are unknown.
fn ranks(graph: &GraphProto) -> HashMap<&str, usize> {
    use tract_onnx::pb::type_proto::Value as Type;
    let mut rank: HashMap<&str, usize> = HashMap::new();
    for v in &graph.input {
        if let Some(Type::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            if let Some(s) = &t.shape {
                rank.insert(&v.name, s.dim.len());
            }
        }
    }
    for t in &graph.initializer {
        rank.insert(&t.name, t.dims.len());
    }
    let shapes: HashMap<&str, usize> =
        graph.initializer.iter().filter_map(|t| Some((t.name.as_str(), int_values(t)?.len()))).collect();
    for node in &graph.node {
        let input = |i: usize| node.input.get(i).and_then(|n| rank.get(n.as_str())).copied();
        let axes = node.attribute.iter().find(|a| a.name == "axes").map(|a| a.ints.len());
        let out = match node.op_type.as_str() {
            "Constant" => attr_tensor(node).map(|t| t.dims.len()),
            "Relu"
            | "LeakyRelu"
            | "Tanh"
            | "Sigmoid"
            | "Identity"
            | "Dropout"
            | "Cast"
            | "Neg"
            | "Abs"
            | "Exp"
            | "Log"
            | "Sqrt"
            | "Softmax"
            | "LogSoftmax"
            | "Clip"
            | "Elu"
            | "Selu"
            | "HardSigmoid"
            | "Conv"
            | "ConvTranspose"
            | "BatchNormalization"
            | "InstanceNormalization"
            | "MaxPool"
            | "AveragePool"
            | "Transpose" => input(0),
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" => node
                .input
                .iter()
                .map(|n| rank.get(n.as_str()).copied())
                .collect::<Option<Vec<_>>>()
                .and_then(|r| r.into_iter().max()),
            "Gemm" | "Flatten" => Some(2),
            "Reshape" => node.input.get(1).and_then(|n| shapes.get(n.as_str())).copied(),
            "Unsqueeze" => input(0).zip(axes).map(|(r, a)| r + a),
            "Squeeze" => input(0).zip(axes).and_then(|(r, a)| r.checked_sub(a)),
            _ => None,
        };
        if let (Some(r), Some(o)) = (out, node.output.first()) {
            rank.insert(o, r);
        }
    }
    rank
}

/// Small integer tensors longer than this are not followed (shapes and repeats are short).
const MAX_TRACKED: usize = 64;

/// Checks every node of `graph` (sub-graphs not included: tract folds those at run time) that
/// builds a tensor from a size given as data against `max_bytes`.
pub(crate) fn check_constants(graph: &GraphProto, max_bytes: u64) -> Result<(), Refusal> {
    let inputs: HashSet<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    // Values that depend on constants only (tract folds them at load), and, of those, the small
    // integer ones whose values are known here.
    let mut constant: HashSet<String> = HashSet::new();
    let mut ints: HashMap<String, Vec<i64>> = HashMap::new();
    let mut shapes: HashMap<String, Vec<i64>> = HashMap::new();
    let mut types: HashMap<&str, i32> = HashMap::new();
    for t in &graph.initializer {
        // An initializer that is also a graph input can be overridden by the caller.
        if inputs.contains(t.name.as_str()) {
            continue;
        }
        constant.insert(t.name.clone());
        shapes.insert(t.name.clone(), t.dims.clone());
        types.insert(&t.name, t.data_type);
        if let Some(v) = int_values(t) {
            ints.insert(t.name.clone(), v);
        }
    }
    // Shapes built partly from the input's shape (`Concat(Constant, Unsqueeze(Gather(Shape(x))),
    // Constant)`): the product of their known entries, a floor on the tensor's size in a call
    // of one (every unknown entry at 1). tract may fold such a tensor at load once the input's
    // shape is set (a `ConstantOfShape` of [2^30 + 1, batch, 5] took over a minute), so a floor
    // beyond the budget is refused like a constant size.
    let mut floors: HashMap<String, u128> = HashMap::new();
    for node in &graph.node {
        let is_constant = node.input.iter().all(|i| i.is_empty() || constant.contains(i));
        let refuse = |bytes: Option<u128>| Refusal {
            node: if node.name.is_empty() {
                format!("a {} node", node.op_type)
            } else {
                format!("the {} node `{}`", node.op_type, node.name)
            },
            bytes,
            computes: false,
        };
        if !is_constant {
            let floor_of =
                |name: &String| ints.get(name).map_or_else(|| floors.get(name).copied(), |v| product(v));
            let floor = match node.op_type.as_str() {
                "Concat" => node
                    .input
                    .iter()
                    .filter(|i| !i.is_empty())
                    .map(|i| floor_of(i).unwrap_or(1))
                    .try_fold(1u128, |a, b| a.checked_mul(b))
                    .filter(|_| node.input.iter().any(|i| ints.contains_key(i) || floors.contains_key(i))),
                "Identity" | "Cast" | "Squeeze" | "Unsqueeze" => node.input.first().and_then(floor_of),
                "ConstantOfShape" | "Expand" => {
                    let at = usize::from(node.op_type == "Expand");
                    if let Some(f) = node.input.get(at).and_then(|n| floors.get(n)) {
                        let data_type = match node.op_type.as_str() {
                            "ConstantOfShape" => constant_of_shape_type(node),
                            _ => node.input.first().and_then(|n| types.get(n.as_str())).copied().unwrap_or(0),
                        };
                        let bytes = f.saturating_mul(element_bytes(data_type));
                        if bytes > max_bytes as u128 {
                            return Err(refuse(Some(bytes)));
                        }
                    }
                    None
                }
                _ => None,
            };
            if let (Some(f), Some(o)) = (floor, node.output.first()) {
                floors.insert(o.clone(), f);
            }
            continue;
        }
        let known = |i: usize| node.input.get(i).and_then(|name| ints.get(name));
        if HEAVY.contains(&node.op_type.as_str()) {
            return Err(Refusal { computes: true, ..refuse(None) });
        }
        let elements: Option<Option<u128>> = match node.op_type.as_str() {
            "ConstantOfShape" => Some(known(0).and_then(|s| product(s))),
            "Expand" => Some(known(1).and_then(|s| {
                let data = node.input.first().and_then(|n| shapes.get(n))?;
                broadcast(data, s)
            })),
            "Tile" => Some(known(1).and_then(|r| {
                let data = node.input.first().and_then(|n| shapes.get(n))?;
                Some(product(data)? * product(r)?)
            })),
            "Range" => Some(
                match (known(0).map(Vec::as_slice), known(1).map(Vec::as_slice), known(2).map(Vec::as_slice))
                {
                    (Some([start]), Some([limit]), Some([delta])) if *delta != 0 => {
                        let span = (*limit as i128 - *start as i128) / *delta as i128;
                        Some(span.max(0) as u128 + 1)
                    }
                    _ => None,
                },
            ),
            "RandomNormal" | "RandomUniform" => Some(attr_ints(node, "shape").and_then(|s| product(&s))),
            // A product of two constants: rows of one times columns of the other (or their
            // broadcast batch), when both shapes are known; left to tract otherwise.
            "MatMul" | "Gemm" => {
                let a = node.input.first().and_then(|n| shapes.get(n));
                let b = node.input.get(1).and_then(|n| shapes.get(n));
                match (a, b) {
                    (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => {
                        let lead: Vec<i64> = a.iter().chain(b.iter()).copied().collect();
                        Some(product(&lead).map(|all| {
                            // |A|·|B| / k² bounds m·n·batch from above for any k ≥ 1.
                            let k = *a.last().unwrap_or(&1) as u128;
                            all / (k.max(1) * k.max(1))
                        }))
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(elements) = elements {
            let data_type = match node.op_type.as_str() {
                "ConstantOfShape" => constant_of_shape_type(node),
                "RandomNormal" | "RandomUniform" => node
                    .attribute
                    .iter()
                    .find(|a| a.name == "dtype")
                    .map_or(DataType::Float as i32, |a| a.i as i32),
                _ => node.input.first().and_then(|n| types.get(n.as_str())).copied().unwrap_or(0),
            };
            match elements.map(|e| e.saturating_mul(element_bytes(data_type))) {
                Some(bytes) if bytes <= max_bytes as u128 => {}
                bytes => return Err(refuse(bytes)),
            }
        }
        let out = match node.op_type.as_str() {
            "Constant" => attr_tensor(node).and_then(int_values),
            "Identity" | "Cast" | "Squeeze" | "Unsqueeze" | "Reshape" | "Flatten" => known(0).cloned(),
            "Concat" => node
                .input
                .iter()
                .map(|i| ints.get(i).cloned())
                .collect::<Option<Vec<_>>>()
                .map(|v| v.concat()),
            "Add" | "Sub" | "Mul" => match (known(0), known(1)) {
                (Some(a), Some(b)) => elementwise(&node.op_type, a, b),
                _ => None,
            },
            _ => None,
        };
        for o in &node.output {
            constant.insert(o.clone());
        }
        if let (Some(v), Some(o)) = (out, node.output.first()) {
            if v.len() <= MAX_TRACKED {
                shapes.insert(o.clone(), vec![v.len() as i64]);
                ints.insert(o.clone(), v);
            }
        }
    }
    Ok(())
}

/// Bytes an element of an ONNX data type takes (8, the widest, when unknown).
fn element_bytes(data_type: i32) -> u128 {
    use DataType::*;
    match DataType::try_from(data_type) {
        Ok(Bool | Int8 | Uint8) => 1,
        Ok(Float16 | Bfloat16 | Int16 | Uint16) => 2,
        Ok(Float | Int32 | Uint32) => 4,
        _ => 8,
    }
}

/// The integer values of a small int64 or int32 tensor.
pub(crate) fn int_values(t: &TensorProto) -> Option<Vec<i64>> {
    let len = t.dims.iter().try_fold(1i64, |a, &d| a.checked_mul(d).filter(|&n| n >= 0))? as usize;
    if len > MAX_TRACKED {
        return None;
    }
    let v: Vec<i64> = if t.data_type == DataType::Int64 as i32 {
        if t.raw_data.is_empty() {
            t.int64_data.clone()
        } else {
            t.raw_data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default())).collect()
        }
    } else if t.data_type == DataType::Int32 as i32 {
        if t.raw_data.is_empty() {
            t.int32_data.iter().map(|&v| v as i64).collect()
        } else {
            t.raw_data
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap_or_default()) as i64)
                .collect()
        }
    } else {
        return None;
    };
    (v.len() == len).then_some(v)
}

/// The element type a `ConstantOfShape` builds: its `value`'s. Without one ONNX says float32, but
/// tract builds float64 (a damaged attribute name made a 537 MB estimate a 1.07 GB tensor), so the
/// widest type is counted.
fn constant_of_shape_type(node: &NodeProto) -> i32 {
    attr_tensor(node).map_or(DataType::Double as i32, |t| t.data_type)
}

fn attr_tensor(node: &NodeProto) -> Option<&TensorProto> {
    node.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.as_ref())
}

fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.ints.clone())
}

/// Elements of a tensor of shape `dims`; `None` for a negative dimension.
fn product(dims: &[i64]) -> Option<u128> {
    dims.iter().try_fold(1u128, |a, &d| (d >= 0).then(|| a.saturating_mul(d as u128)))
}

/// Elements of `data` broadcast to `shape` (numpy rules, as `Expand` does).
fn broadcast(data: &[i64], shape: &[i64]) -> Option<u128> {
    let rank = data.len().max(shape.len());
    let at = |v: &[i64], i: usize| if i + v.len() >= rank { v[i + v.len() - rank] } else { 1 };
    let dims: Vec<i64> = (0..rank).map(|i| at(data, i).max(at(shape, i))).collect();
    product(&dims)
}

fn elementwise(op: &str, a: &[i64], b: &[i64]) -> Option<Vec<i64>> {
    let f = |x: i64, y: i64| match op {
        "Add" => x.checked_add(y),
        "Sub" => x.checked_sub(y),
        _ => x.checked_mul(y),
    };
    match (a.len(), b.len()) {
        (n, m) if n == m => a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect(),
        (_, 1) => a.iter().map(|&x| f(x, b[0])).collect(),
        (1, _) => b.iter().map(|&y| f(a[0], y)).collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuse::int64s;
    use tract_onnx::pb::{AttributeProto, ValueInfoProto};

    fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            name: format!("{op}_0"),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        }
    }

    fn graph(inits: Vec<TensorProto>, nodes: Vec<NodeProto>) -> GraphProto {
        GraphProto {
            initializer: inits,
            node: nodes,
            input: vec![ValueInfoProto { name: "x".into(), ..Default::default() }],
            ..Default::default()
        }
    }

    const MB: u64 = 1_000_000;

    #[test]
    fn constant_of_shape_is_refused_above_the_budget_and_kept_below() {
        let big =
            graph(vec![int64s("s", &[1_000_000, 1_000_000])], vec![node("ConstantOfShape", &["s"], "y")]);
        let e = check_constants(&big, 1000 * MB).unwrap_err();
        assert_eq!(
            e,
            Refusal {
                node: "the ConstantOfShape node `ConstantOfShape_0`".into(),
                // No `value`: counted as float64, as tract builds it.
                bytes: Some(8 * 10u128.pow(12)),
                computes: false,
            }
        );
        let small = graph(vec![int64s("s", &[10, 10])], vec![node("ConstantOfShape", &["s"], "y")]);
        assert!(check_constants(&small, MB).is_ok());
        // The budget is where the line is drawn: 100 elements of 8 bytes.
        assert!(check_constants(&small, 800).is_ok());
        assert!(check_constants(&small, 799).is_err());
        // With a float32 `value`, 4 bytes each.
        let value = AttributeProto {
            name: "value".into(),
            t: Some(TensorProto { dims: vec![1], data_type: 1, float_data: vec![0.0], ..Default::default() }),
            ..Default::default()
        };
        let f32_small = graph(
            vec![int64s("s", &[10, 10])],
            vec![NodeProto { attribute: vec![value], ..node("ConstantOfShape", &["s"], "y") }],
        );
        assert!(check_constants(&f32_small, 400).is_ok());
        assert!(check_constants(&f32_small, 399).is_err());
    }

    #[test]
    fn sizes_computed_from_constants_are_followed_or_refused() {
        // Shape = Concat(Mul(a, b), c): followed, 1e6 · 1e6 · 1 elements.
        let nodes = vec![
            node("Mul", &["a", "b"], "ab"),
            NodeProto { input: vec!["ab".into(), "c".into()], ..node("Concat", &[], "s") },
            node("Expand", &["one", "s"], "y"),
        ];
        let one = TensorProto {
            name: "one".into(),
            dims: vec![1],
            data_type: 1,
            float_data: vec![1.0],
            ..Default::default()
        };
        let inits = vec![int64s("a", &[1000]), int64s("b", &[1_000_000_000]), int64s("c", &[1]), one];
        let e = check_constants(&graph(inits.clone(), nodes.clone()), 1000 * MB).unwrap_err();
        assert_eq!(e.bytes, Some(4 * 10u128.pow(12)));
        // Through an op the check does not follow (Gather): the size is unknown, so refused.
        let mut hidden = nodes.clone();
        hidden.insert(1, node("Gather", &["ab", "c"], "ab2"));
        hidden[2].input[0] = "ab2".into();
        assert_eq!(check_constants(&graph(inits, hidden), 1000 * MB).unwrap_err().bytes, None);
    }

    #[test]
    fn a_convolution_of_constants_is_refused_and_one_of_the_input_kept() {
        let w = TensorProto {
            name: "w".into(),
            dims: vec![1, 1, 1, 1],
            data_type: 1,
            float_data: vec![1.0],
            ..Default::default()
        };
        // Conv(w, w): both inputs constant, as when a generator's first node reads a weight.
        let e = check_constants(&graph(vec![w.clone()], vec![node("Conv", &["w", "w"], "y")]), u64::MAX)
            .unwrap_err();
        assert!(e.computes, "{e:?}");
        assert_eq!(e.node, "the Conv node `Conv_0`");
        // Conv(x, w) reads the graph's input: left to run at call time.
        assert!(check_constants(&graph(vec![w.clone()], vec![node("Conv", &["x", "w"], "y")]), 1).is_ok());
        // Through a chain of light ops on constants, the LSTM still computes on constants only.
        let nodes = vec![node("Relu", &["w"], "r"), node("LSTM", &["r", "w", "w"], "y")];
        assert!(check_constants(&graph(vec![w], nodes), u64::MAX).unwrap_err().computes);
    }

    #[test]
    fn a_size_partly_from_the_input_is_refused_when_its_known_part_is_over_the_budget() {
        // ConstantOfShape(Concat([n], Unsqueeze(Gather(Shape(x), 1)), [5])): n · batch · 5 floats.
        let shape = |n: i64| {
            let nodes = vec![
                node("Shape", &["x"], "s"),
                node("Gather", &["s", "one"], "b"),
                node("Unsqueeze", &["b", "zero"], "b1"),
                NodeProto {
                    input: vec!["n".into(), "b1".into(), "five".into()],
                    ..node("Concat", &[], "dims")
                },
                node("ConstantOfShape", &["dims"], "y"),
            ];
            let inits =
                vec![int64s("n", &[n]), int64s("one", &[1]), int64s("zero", &[0]), int64s("five", &[5])];
            graph(inits, nodes)
        };
        // 2^30 + 1 rows (as a fuzzed file had): 43 GB of float64 at a batch of one.
        let e = check_constants(&shape((1 << 30) + 1), 1000 * MB).unwrap_err();
        assert_eq!(e.bytes, Some(((1u128 << 30) + 1) * 5 * 8));
        // One row, as exported: the floor is 40 bytes; the rest is the call check's.
        assert!(check_constants(&shape(1), 1000 * MB).is_ok());
        assert!(check_constants(&shape(1), 40).is_ok());
        assert!(check_constants(&shape(1), 39).is_err());
    }

    #[test]
    fn sizes_that_depend_on_the_input_are_left_to_the_call_check() {
        // ConstantOfShape(Shape(x)): depends on the graph's input, not folded at load.
        let g = graph(vec![], vec![node("Shape", &["x"], "s"), node("ConstantOfShape", &["s"], "y")]);
        assert!(check_constants(&g, 1).is_ok());
        // A Constant node's value is followed like an initializer's.
        let value =
            AttributeProto { name: "value".into(), t: Some(int64s("", &[1 << 40])), ..Default::default() };
        let c = NodeProto { attribute: vec![value], ..node("Constant", &[], "s") };
        let g = graph(vec![], vec![c, node("ConstantOfShape", &["s"], "y")]);
        assert_eq!(check_constants(&g, 1000 * MB).unwrap_err().bytes, Some(8 << 40));
    }

    #[test]
    fn axes_that_are_not_integers_are_refused() {
        let w = TensorProto {
            name: "w".into(),
            dims: vec![2],
            data_type: 1,
            float_data: vec![0.0, 1.0],
            ..Default::default()
        };
        let e = check_structure(&graph(vec![w], vec![node("Squeeze", &["x", "w"], "y")])).unwrap_err();
        assert_eq!(e, "the Squeeze node `Squeeze_0` takes its axes from `w`, which is not an int64 tensor");
        assert!(
            check_structure(&graph(vec![int64s("a", &[0])], vec![node("Squeeze", &["x", "a"], "y")])).is_ok()
        );
    }

    #[test]
    fn normalising_a_tensor_without_channels_is_refused_where_its_rank_follows() {
        // x [batch] → Relu → BatchNormalization: rank 1 through the Relu.
        use tract_onnx::pb::{tensor_shape_proto::Dimension, type_proto, TensorShapeProto, TypeProto};
        let shape = TensorShapeProto { dim: vec![Dimension::default()] };
        let tensor = type_proto::Tensor { elem_type: 1, shape: Some(shape) };
        let x = ValueInfoProto {
            name: "x".into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(tensor)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let bn = NodeProto {
            input: vec!["r".into(), "s".into(), "b".into(), "m".into(), "v".into()],
            ..node("BatchNormalization", &[], "y")
        };
        let inits = ["s", "b", "m", "v"].map(|n| TensorProto {
            name: n.into(),
            dims: vec![1],
            data_type: 1,
            float_data: vec![1.0],
            ..Default::default()
        });
        let mut g = GraphProto {
            input: vec![x],
            initializer: inits.to_vec(),
            node: vec![node("Relu", &["x"], "r"), bn],
            ..Default::default()
        };
        let e = check_structure(&g).unwrap_err();
        assert!(e.contains("normalises `r`, which has no channel axis"), "{e}");
        // Through a Gemm (rank 2) it is fine.
        g.node[0].op_type = "Gemm".into();
        g.node[0].input = vec!["x".into(), "s".into()];
        assert!(check_structure(&g).is_ok());
    }

    #[test]
    fn the_shipped_models_pass() {
        for name in [
            "seed-lstm.onnx",
            "ring8-gan.onnx",
            "grid25-gan.onnx",
            "fashion-dcgan.onnx",
            "shakespeare-lstm.onnx",
        ] {
            let bytes = std::fs::read(format!("{}/../models/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
            use tract_onnx::tract_hir::prelude::Framework as _;
            let m = tract_onnx::onnx().proto_model_for_read(&mut &bytes[..]).unwrap();
            assert!(check_constants(m.graph.as_ref().unwrap(), MB).is_ok(), "{name}");
            assert_eq!(check_structure(m.graph.as_ref().unwrap()), Ok(()), "{name}");
        }
    }
}
