//! One emitter per layer kind. Each takes the builder, the names of its input values and the
//! layer's weights, adds its nodes, and returns the names of its outputs.

use crate::graph::{attr_float, attr_int, attr_ints, GraphBuilder};
use crate::ExportError;

/// A token embedding table `[vocab, dim]`, row `i` for token `i`.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    pub vocab: usize,
    pub dim: usize,
    pub weight: Vec<f32>,
}

impl Embedding {
    /// One-hot input as an embedding: the identity matrix, so `Gather` yields one-hot rows and
    /// every exported file takes token ids. Meant for small vocabularies (`vocab²` floats).
    pub fn one_hot(vocab: usize) -> Self {
        let mut weight = vec![0f32; vocab * vocab];
        for i in 0..vocab {
            weight[i * vocab + i] = 1.0;
        }
        Embedding { vocab, dim: vocab, weight }
    }
}

/// `Gather(weight, ids)`: ids of any shape `S` give `S × [dim]`. Returns the table's
/// initializer (a tied output layer reads it too) and the gathered rows.
pub fn embedding(
    g: &mut GraphBuilder,
    name: &str,
    e: &Embedding,
    ids: &str,
) -> Result<(String, String), ExportError> {
    let w = g.weight(&format!("{name}.weight"), &[e.vocab, e.dim], &e.weight)?;
    let rows = g.op("Gather", &[&w, ids], vec![attr_int("axis", 0)]);
    Ok((w, rows))
}

/// A fully connected layer in PyTorch's layout: `weight [out, in]`, `bias [out]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    pub inputs: usize,
    pub outputs: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// `Gemm(x, W, b, transB=1)`: `[batch, in]` → `[batch, out]`, PyTorch's weights unchanged.
pub fn linear(g: &mut GraphBuilder, name: &str, l: &Linear, x: &str) -> Result<String, ExportError> {
    let w = g.weight(&format!("{name}.weight"), &[l.outputs, l.inputs], &l.weight)?;
    let b = g.weight(&format!("{name}.bias"), &[l.outputs], &l.bias)?;
    Ok(g.op("Gemm", &[x, &w, &b], vec![attr_int("transB", 1)]))
}

/// One LSTM layer's weights exactly as PyTorch (and tch) hold them: gate blocks in the order
/// i, f, g, o; `w_ih [4H, in]`, `w_hh [4H, H]`, `b_ih [4H]`, `b_hh [4H]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LstmLayer {
    pub inputs: usize,
    pub hidden: usize,
    pub w_ih: Vec<f32>,
    pub w_hh: Vec<f32>,
    pub b_ih: Vec<f32>,
    pub b_hh: Vec<f32>,
}

/// Reorders the four gate blocks of a PyTorch LSTM tensor (rows `[4H, cols]`, or a bias with
/// `cols = 1`) from PyTorch's i, f, g, o to ONNX's i, o, f, c (c is PyTorch's g, the cell
/// candidate). PyTorch's own exporter does the same (`torch/onnx/symbolic_opset9.py`,
/// `_generic_rnn`: `reform_permutation = [(0, 1), (3, 4), (1, 3)]`); tract reads i, o, f, c
/// (`onnx/src/ops/rec/lstm.rs`).
pub fn torch_gates_to_onnx(rows: &[f32], hidden: usize) -> Vec<f32> {
    let block = rows.len() / 4;
    debug_assert_eq!(block % hidden.max(1), 0);
    // ONNX block k comes from PyTorch block TORCH_OF_ONNX[k].
    const TORCH_OF_ONNX: [usize; 4] = [0, 3, 1, 2];
    TORCH_OF_ONNX.iter().flat_map(|&t| rows[t * block..(t + 1) * block].iter().copied()).collect()
}

/// Values an [`lstm`] layer produces.
pub struct LstmOutputs {
    /// Every step's hidden state `[seq, batch, H]`, when asked for.
    pub y: Option<String>,
    /// Last hidden and cell state, `[1, batch, H]`.
    pub y_h: String,
    pub y_c: String,
}

/// The standard ONNX `LSTM` op for one layer, sequence-major (`layout = 0`): `x [seq, batch, in]`,
/// `h0`/`c0` `[1, batch, H]`. `B` is `[b_ih ; b_hh]` (ONNX's `Wb` then `Rb`).
pub fn lstm(
    g: &mut GraphBuilder,
    name: &str,
    l: &LstmLayer,
    x: &str,
    h0: &str,
    c0: &str,
    want_y: bool,
) -> Result<LstmOutputs, ExportError> {
    let (h, i) = (l.hidden, l.inputs);
    check(&format!("{name}.w_ih"), 4 * h * i, l.w_ih.len())?;
    check(&format!("{name}.w_hh"), 4 * h * h, l.w_hh.len())?;
    check(&format!("{name}.b_ih"), 4 * h, l.b_ih.len())?;
    check(&format!("{name}.b_hh"), 4 * h, l.b_hh.len())?;
    let w = g.weight(&format!("{name}.W"), &[1, 4 * h, i], &torch_gates_to_onnx(&l.w_ih, h))?;
    let r = g.weight(&format!("{name}.R"), &[1, 4 * h, h], &torch_gates_to_onnx(&l.w_hh, h))?;
    let mut bias = torch_gates_to_onnx(&l.b_ih, h);
    bias.extend(torch_gates_to_onnx(&l.b_hh, h));
    let b = g.weight(&format!("{name}.B"), &[1, 8 * h], &bias)?;

    let y4 = if want_y { g.fresh(&format!("{name}.Y")) } else { String::new() };
    let y_h = g.fresh(&format!("{name}.Y_h"));
    let y_c = g.fresh(&format!("{name}.Y_c"));
    g.node("LSTM", &[x, &w, &r, &b, "", h0, c0], &[&y4, &y_h, &y_c], vec![attr_int("hidden_size", h as i64)]);
    let y = if want_y {
        // [seq, num_directions = 1, batch, H] → [seq, batch, H]
        let axes = g.ints("axes", &[1], &[1])?;
        Some(g.op("Squeeze", &[&y4, &axes], vec![]))
    } else {
        None
    };
    Ok(LstmOutputs { y, y_h, y_c })
}

/// `Transpose` with the given permutation.
pub fn transpose(g: &mut GraphBuilder, x: &str, perm: &[i64]) -> String {
    g.op("Transpose", &[x], vec![attr_ints("perm", perm)])
}

/// `x[start..end]` along `axis`.
pub fn slice(g: &mut GraphBuilder, x: &str, axis: i64, start: i64, end: i64) -> Result<String, ExportError> {
    let starts = g.ints("starts", &[1], &[start])?;
    let ends = g.ints("ends", &[1], &[end])?;
    let axes = g.ints("axes", &[1], &[axis])?;
    Ok(g.op("Slice", &[x, &starts, &ends, &axes], vec![]))
}

/// An element-wise activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Relu,
    LeakyRelu { alpha: f32 },
    Tanh,
    Sigmoid,
}

/// `Relu`, `LeakyRelu`, `Tanh` or `Sigmoid`, shape unchanged.
pub fn activation(g: &mut GraphBuilder, a: Activation, x: &str) -> String {
    match a {
        Activation::Relu => g.op("Relu", &[x], vec![]),
        Activation::LeakyRelu { alpha } => g.op("LeakyRelu", &[x], vec![attr_float("alpha", alpha)]),
        Activation::Tanh => g.op("Tanh", &[x], vec![]),
        Activation::Sigmoid => g.op("Sigmoid", &[x], vec![]),
    }
}

/// `Reshape` to `[batch, …shape]`, the batch dimension kept whatever its size.
pub fn reshape(g: &mut GraphBuilder, x: &str, shape: &[usize]) -> Result<String, ExportError> {
    let mut dims = vec![-1i64];
    dims.extend(shape.iter().map(|&d| d as i64));
    let target = g.ints("shape", &[dims.len()], &dims)?;
    Ok(g.op("Reshape", &[x, &target], vec![]))
}

/// A 2-D transposed convolution in PyTorch's layout (`weight [in, out, k, k]`, which is also
/// ONNX's), square kernel, same stride and padding on both axes.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvTranspose2d {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
}

impl ConvTranspose2d {
    /// Output side for an input side `n`: `(n − 1)·stride − 2·padding + kernel`.
    pub fn output_size(&self, n: usize) -> Option<usize> {
        ((n - 1) * self.stride + self.kernel).checked_sub(2 * self.padding).filter(|&m| m > 0)
    }
}

/// `ConvTranspose`: `[batch, in, h, w]` → `[batch, out, h', w']`.
pub fn conv_transpose(
    g: &mut GraphBuilder,
    name: &str,
    c: &ConvTranspose2d,
    x: &str,
) -> Result<String, ExportError> {
    let k = c.kernel;
    let w = g.weight(&format!("{name}.weight"), &[c.in_channels, c.out_channels, k, k], &c.weight)?;
    let mut inputs = vec![x.to_string(), w];
    if let Some(b) = &c.bias {
        inputs.push(g.weight(&format!("{name}.bias"), &[c.out_channels], b)?);
    }
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let (s, p) = (c.stride as i64, c.padding as i64);
    Ok(g.op(
        "ConvTranspose",
        &refs,
        vec![
            attr_ints("kernel_shape", &[k as i64, k as i64]),
            attr_ints("strides", &[s, s]),
            attr_ints("pads", &[p, p, p, p]),
        ],
    ))
}

/// Batch normalisation in evaluation mode: the running statistics, as PyTorch's
/// `BatchNorm1d`/`BatchNorm2d` use them after `eval()`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNorm {
    pub channels: usize,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
    pub eps: f32,
}

/// `BatchNormalization` over axis 1 of `[batch, channels, …]`.
pub fn batch_norm(g: &mut GraphBuilder, name: &str, b: &BatchNorm, x: &str) -> Result<String, ExportError> {
    let c = b.channels;
    let scale = g.weight(&format!("{name}.weight"), &[c], &b.gamma)?;
    let bias = g.weight(&format!("{name}.bias"), &[c], &b.beta)?;
    let mean = g.weight(&format!("{name}.running_mean"), &[c], &b.running_mean)?;
    let var = g.weight(&format!("{name}.running_var"), &[c], &b.running_var)?;
    Ok(g.op("BatchNormalization", &[x, &scale, &bias, &mean, &var], vec![attr_float("epsilon", b.eps)]))
}

fn check(what: &str, expected: usize, found: usize) -> Result<(), ExportError> {
    if expected == found {
        Ok(())
    } else {
        Err(ExportError::Shape { what: what.into(), expected, found })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_reorder_golden() {
        // hidden 1, one column: PyTorch rows are [i, f, g, o] = [1, 2, 3, 4].
        assert_eq!(torch_gates_to_onnx(&[1., 2., 3., 4.], 1), [1., 4., 2., 3.]);
        // hidden 2, two columns: blocks of 2 rows × 2 columns move whole.
        let torch: Vec<f32> = (0..16).map(|x| x as f32).collect();
        let onnx = torch_gates_to_onnx(&torch, 2);
        assert_eq!(&onnx[0..4], &[0., 1., 2., 3.]); // i
        assert_eq!(&onnx[4..8], &[12., 13., 14., 15.]); // o
        assert_eq!(&onnx[8..12], &[4., 5., 6., 7.]); // f
        assert_eq!(&onnx[12..16], &[8., 9., 10., 11.]); // c (PyTorch's g)
    }

    #[test]
    fn wrong_sized_weights_are_a_typed_error() {
        let mut g = GraphBuilder::new("t");
        let l =
            LstmLayer { inputs: 3, hidden: 2, w_ih: vec![0.; 5], w_hh: vec![], b_ih: vec![], b_hh: vec![] };
        let err = lstm(&mut g, "lstm.0", &l, "x", "h", "c", false).err().unwrap();
        assert!(matches!(err, ExportError::Shape { expected: 24, found: 5, .. }), "{err}");
    }
}
