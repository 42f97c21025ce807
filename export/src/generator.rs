//! A generator (the G of a GAN) as ONNX: noise `z [batch, latent]` through a stack of layers to
//! `samples [batch, …sample shape]`, `batch` symbolic. The stack is a list of [`GenLayer`]s in
//! order; shapes are checked as it is assembled, so a wrong stack is an error, not a bad file.
//!
//! ```text
//! z [batch, latent] ─Gemm─▶ [batch, F] ─BatchNormalization─▶ ─Relu─▶ ─Reshape─▶ [batch, C, H, W]
//!   ─ConvTranspose─▶ [batch, C', 2H, 2W] ─ … ─Tanh─▶ samples
//! ```

use kiln_infer::contract::{io, GeneratorMeta};
use kiln_infer::pb::ModelProto;

use crate::graph::{Dim, Elem, GraphBuilder};
use crate::layers::{self, Activation, BatchNorm, ConvTranspose2d, Linear};
use crate::ExportError;

/// One layer of a generator.
#[derive(Debug, Clone, PartialEq)]
pub enum GenLayer {
    Linear(Linear),
    BatchNorm(BatchNorm),
    Activation(Activation),
    /// Reshape each sample to this shape (e.g. `[C, H, W]`).
    Reshape(Vec<usize>),
    ConvTranspose(ConvTranspose2d),
}

/// Builds the ONNX model of a generator whose input is `meta.latent` wide.
pub fn generator_model(stack: &[GenLayer], meta: &GeneratorMeta) -> Result<ModelProto, ExportError> {
    let mut g = GraphBuilder::new("kiln_generator");
    let batch = Dim::Param(io::BATCH);
    g.input(io::Z, Elem::F32, &[batch, Dim::Fixed(meta.latent)]);
    let mut shape = vec![meta.latent]; // per sample
    let mut x = io::Z.to_string();
    let bad = |i: usize, what: String| ExportError::Invalid(format!("generator layer {i}: {what}"));
    for (i, layer) in stack.iter().enumerate() {
        let name = format!("g.{i}");
        x = match layer {
            GenLayer::Linear(l) => {
                if shape != [l.inputs] {
                    return Err(bad(i, format!("Linear takes [{}], gets {shape:?}", l.inputs)));
                }
                shape = vec![l.outputs];
                layers::linear(&mut g, &name, l, &x)?
            }
            GenLayer::BatchNorm(b) => {
                if shape.first() != Some(&b.channels) {
                    return Err(bad(i, format!("BatchNorm over {} channels, gets {shape:?}", b.channels)));
                }
                layers::batch_norm(&mut g, &name, b, &x)?
            }
            GenLayer::Activation(a) => layers::activation(&mut g, *a, &x),
            GenLayer::Reshape(to) => {
                if to.iter().product::<usize>() != shape.iter().product::<usize>() {
                    return Err(bad(i, format!("cannot reshape {shape:?} to {to:?}")));
                }
                shape = to.clone();
                layers::reshape(&mut g, &x, to)?
            }
            GenLayer::ConvTranspose(c) => {
                let (h, w) = match shape.as_slice() {
                    [ch, h, w] if *ch == c.in_channels => (*h, *w),
                    _ => {
                        return Err(bad(
                            i,
                            format!("ConvTranspose takes [{}, H, W], gets {shape:?}", c.in_channels),
                        ))
                    }
                };
                let (Some(h2), Some(w2)) = (c.output_size(h), c.output_size(w)) else {
                    return Err(bad(i, format!("ConvTranspose leaves nothing of {shape:?}")));
                };
                shape = vec![c.out_channels, h2, w2];
                layers::conv_transpose(&mut g, &name, c, &x)?
            }
        };
    }
    if shape != meta.output_shape {
        return Err(ExportError::Invalid(format!(
            "the generator makes samples of shape {shape:?}, the metadata says {:?}",
            meta.output_shape
        )));
    }
    g.node("Identity", &[&x], &[io::SAMPLES], vec![]);
    let mut out = vec![batch];
    out.extend(shape.iter().map(|&d| Dim::Fixed(d)));
    g.output(io::SAMPLES, Elem::F32, &out);
    Ok(g.finish("kiln generator", meta.to_props()))
}
