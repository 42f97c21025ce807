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

/// A node that would build too large a tensor at load, or one whose size cannot be known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The node, as messages name it: "the Expand node `x`", "a ConstantOfShape node".
    pub node: String,
    /// Bytes it would build; `None` when they cannot be computed from the file.
    pub bytes: Option<u128>,
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
    for node in &graph.node {
        let is_constant = node.input.iter().all(|i| i.is_empty() || constant.contains(i));
        if !is_constant {
            continue;
        }
        let known = |i: usize| node.input.get(i).and_then(|name| ints.get(name));
        let refuse = |bytes: Option<u128>| Refusal {
            node: if node.name.is_empty() {
                format!("a {} node", node.op_type)
            } else {
                format!("the {} node `{}`", node.op_type, node.name)
            },
            bytes,
        };
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
            _ => None,
        };
        if let Some(elements) = elements {
            let data_type = match node.op_type.as_str() {
                "ConstantOfShape" => attr_tensor(node).map_or(DataType::Float as i32, |t| t.data_type),
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
fn int_values(t: &TensorProto) -> Option<Vec<i64>> {
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
    use tract_onnx::pb::{AttributeProto, ValueInfoProto};

    fn int64s(name: &str, v: &[i64]) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: vec![v.len() as i64],
            data_type: DataType::Int64 as i32,
            int64_data: v.to_vec(),
            ..Default::default()
        }
    }

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
                bytes: Some(4 * 10u128.pow(12))
            }
        );
        let small = graph(vec![int64s("s", &[10, 10])], vec![node("ConstantOfShape", &["s"], "y")]);
        assert!(check_constants(&small, MB).is_ok());
        // The budget is where the line is drawn: 100 float elements of 4 bytes.
        assert!(check_constants(&small, 400).is_ok());
        assert!(check_constants(&small, 399).is_err());
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
    fn sizes_that_depend_on_the_input_are_left_to_the_call_check() {
        // ConstantOfShape(Shape(x)): depends on the graph's input, not folded at load.
        let g = graph(vec![], vec![node("Shape", &["x"], "s"), node("ConstantOfShape", &["s"], "y")]);
        assert!(check_constants(&g, 1).is_ok());
        // A Constant node's value is followed like an initializer's.
        let value =
            AttributeProto { name: "value".into(), t: Some(int64s("", &[1 << 40])), ..Default::default() };
        let c = NodeProto { attribute: vec![value], ..node("Constant", &[], "s") };
        let g = graph(vec![], vec![c, node("ConstantOfShape", &["s"], "y")]);
        assert_eq!(check_constants(&g, 1000 * MB).unwrap_err().bytes, Some(4 << 40));
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
        }
    }
}
