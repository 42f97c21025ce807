//! A small ONNX graph builder over tract's protobuf types (`tract_onnx::pb`), so that no
//! `protoc` runs at build time.

use std::path::Path;

use kiln_infer::pb::{
    self, attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension, type_proto,
};
use prost::Message;

use crate::{ExportError, IR_VERSION, OPSET};

/// A dimension of a graph input or output: fixed, or a named symbol such as `batch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    Param(&'static str),
}

/// Element types kiln's graphs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    F32,
    I64,
}

impl Elem {
    fn onnx(self) -> i32 {
        match self {
            Elem::F32 => DataType::Float as i32,
            Elem::I64 => DataType::Int64 as i32,
        }
    }
}

/// Builds one graph: inputs, initializers, nodes, outputs.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    graph: pb::GraphProto,
    next_id: usize,
}

impl GraphBuilder {
    pub fn new(name: &str) -> Self {
        GraphBuilder { graph: pb::GraphProto { name: name.into(), ..Default::default() }, next_id: 0 }
    }

    /// A fresh value name starting with `hint`.
    pub fn fresh(&mut self, hint: &str) -> String {
        self.next_id += 1;
        format!("{hint}_{}", self.next_id)
    }

    pub fn input(&mut self, name: &str, elem: Elem, dims: &[Dim]) {
        self.graph.input.push(value_info(name, elem, dims));
    }

    pub fn output(&mut self, name: &str, elem: Elem, dims: &[Dim]) {
        self.graph.output.push(value_info(name, elem, dims));
    }

    /// Adds a float initializer of shape `dims`; checks that `data` fills it.
    pub fn weight(&mut self, name: &str, dims: &[usize], data: &[f32]) -> Result<String, ExportError> {
        check_len(name, dims, data.len())?;
        let raw = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.initializer(name, dims, Elem::F32, raw);
        Ok(name.to_string())
    }

    /// Adds an int64 initializer (shapes, axes, indices).
    pub fn ints(&mut self, hint: &str, dims: &[usize], data: &[i64]) -> Result<String, ExportError> {
        check_len(hint, dims, data.len())?;
        let name = self.fresh(hint);
        let raw = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.initializer(&name, dims, Elem::I64, raw);
        Ok(name)
    }

    fn initializer(&mut self, name: &str, dims: &[usize], elem: Elem, raw: Vec<u8>) {
        self.graph.initializer.push(pb::TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: elem.onnx(),
            raw_data: raw,
            ..Default::default()
        });
    }

    /// Adds a node. An empty string in `inputs` or `outputs` skips an optional slot.
    pub fn node(&mut self, op: &str, inputs: &[&str], outputs: &[&str], attributes: Vec<pb::AttributeProto>) {
        let name = self.fresh(op);
        self.graph.node.push(pb::NodeProto {
            name,
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attributes,
            ..Default::default()
        });
    }

    /// A node with one output, named fresh from `op`; returns that name.
    pub fn op(&mut self, op: &str, inputs: &[&str], attributes: Vec<pb::AttributeProto>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.node(op, inputs, &[&out], attributes);
        out
    }

    /// Wraps the graph in a model with kiln's opset and the given metadata.
    pub fn finish(self, doc: &str, metadata: Vec<(String, String)>) -> pb::ModelProto {
        pb::ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: OPSET }],
            producer_name: "kiln".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.into(),
            graph: Some(self.graph),
            metadata_props: metadata
                .into_iter()
                .map(|(key, value)| pb::StringStringEntryProto { key, value })
                .collect(),
            ..Default::default()
        }
    }
}

fn check_len(what: &str, dims: &[usize], found: usize) -> Result<(), ExportError> {
    let expected: usize = dims.iter().product();
    if expected != found {
        return Err(ExportError::Shape { what: format!("{what} {dims:?}"), expected, found });
    }
    Ok(())
}

fn value_info(name: &str, elem: Elem, dims: &[Dim]) -> pb::ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| pb::tensor_shape_proto::Dimension {
            value: Some(match *d {
                Dim::Fixed(n) => dimension::Value::DimValue(n as i64),
                Dim::Param(p) => dimension::Value::DimParam(p.into()),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem.onnx(),
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An integer attribute.
pub fn attr_int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i, ..Default::default() }
}

/// A list-of-integers attribute.
pub fn attr_ints(name: &str, ints: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

/// A float attribute.
pub fn attr_float(name: &str, f: f32) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: AttributeType::Float as i32, f, ..Default::default() }
}

/// Serialises `model` and writes it atomically (temporary file, then rename).
pub fn write_model(model: &pb::ModelProto, path: impl AsRef<Path>) -> Result<(), ExportError> {
    let path = path.as_ref();
    kiln_infer::fsx::write_atomic(path, &model.encode_to_vec())
        .map_err(|source| ExportError::Write { path: path.display().to_string(), source })
}
