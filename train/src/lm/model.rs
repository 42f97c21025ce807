//! TextLSTM: the next-word model, top to bottom: the LSTM layer, the config, the model.
//!
//! Parameter paths (`embedding.weight`, `lstm.weight_ih_l0`, `head.weight`, …) are part of the
//! export contract: [`super::export`] maps them to ONNX. Change them only together.

use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Kind, Tensor};

/// A stack of LSTM layers with PyTorch's parameter names, layout and initialisation
/// (every weight and bias uniform in ±1/√hidden, as `torch.nn.LSTM`).
#[derive(Debug)]
pub struct Lstm {
    flat_weights: Vec<Tensor>,
    pub layers: i64,
    pub hidden: i64,
    dropout: f64,
}

impl Lstm {
    pub fn new(vs: nn::Path, inputs: i64, hidden: i64, layers: i64, dropout: f64) -> Self {
        let k = 1.0 / (hidden as f64).sqrt();
        let init = nn::Init::Uniform { lo: -k, up: k };
        let mut flat_weights = Vec::new();
        for l in 0..layers {
            let width = if l == 0 { inputs } else { hidden };
            flat_weights.push(vs.var(&format!("weight_ih_l{l}"), &[4 * hidden, width], init));
            flat_weights.push(vs.var(&format!("weight_hh_l{l}"), &[4 * hidden, hidden], init));
            flat_weights.push(vs.var(&format!("bias_ih_l{l}"), &[4 * hidden], init));
            flat_weights.push(vs.var(&format!("bias_hh_l{l}"), &[4 * hidden], init));
        }
        Lstm { flat_weights, layers, hidden, dropout }
    }

    /// Zero state `(h, c)`, each `[layers, batch, hidden]`.
    pub fn zero_state(&self, batch: i64, device: tch::Device) -> (Tensor, Tensor) {
        let z = Tensor::zeros([self.layers, batch, self.hidden], (Kind::Float, device));
        (z.shallow_clone(), z)
    }

    /// Runs a whole sequence: `x [batch, seq, in]` → `(y [batch, seq, hidden], (h, c))`.
    /// Dropout between layers applies only when `train`.
    pub fn seq(&self, x: &Tensor, state: &(Tensor, Tensor), train: bool) -> (Tensor, (Tensor, Tensor)) {
        self.run(x, state, train, true)
    }

    /// [`Lstm::seq`] on `x [seq, batch, in]` → `y [seq, batch, hidden]`: libtorch's own layout,
    /// about 11% faster to train than batch-first, which transposes on the way in and out.
    pub fn seq_first(&self, x: &Tensor, state: &(Tensor, Tensor), train: bool) -> (Tensor, (Tensor, Tensor)) {
        self.run(x, state, train, false)
    }

    fn run(
        &self,
        x: &Tensor,
        state: &(Tensor, Tensor),
        train: bool,
        batch_first: bool,
    ) -> (Tensor, (Tensor, Tensor)) {
        let (y, h, c) = x.lstm(
            &[&state.0, &state.1],
            &self.flat_weights.iter().collect::<Vec<_>>(),
            true,
            self.layers,
            self.dropout,
            train,
            false,
            batch_first,
        );
        (y, (h, c))
    }
}

/// How tokens enter the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum InputKind {
    /// One-hot vectors of vocabulary size (the seed lecture's choice; small vocabularies).
    OneHot,
    /// A learnt embedding of `dim` dimensions.
    Embedding { dim: i64 },
}

/// The model's shape; it travels with the weights in checkpoints and exported files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmConfig {
    pub vocab: i64,
    pub input: InputKind,
    pub hidden: i64,
    pub layers: i64,
    /// Dropout on the input, between LSTM layers and before the head, in training only.
    pub dropout: f64,
    /// Context words per example (windows); the truncated-BPTT length (streams).
    pub context: i64,
    /// The head's weight is the embedding matrix (Press & Wolf 2017); needs an embedding as
    /// wide as the hidden state.
    #[serde(default)]
    pub tie_weights: bool,
    /// Initialise the embedding (and an untied head's weight) uniform in ±this, and the head's
    /// bias at zero, as PyTorch's word_language_model does (what its plain SGD at rate 20 is
    /// tuned for); `None`: the embedding N(0, 1) and the head as `nn::linear`.
    #[serde(default)]
    pub init_range: Option<f64>,
}

impl LmConfig {
    /// Trainable values of the model, in wide integers so absurd sizes cannot overflow.
    pub fn parameters(&self) -> u128 {
        let w = |x: i64| x.max(0) as u128;
        let (v, h) = (w(self.vocab), w(self.hidden));
        let (embedding, mut width) = match self.input {
            InputKind::OneHot => (0, v),
            InputKind::Embedding { dim } => (v.saturating_mul(w(dim)), w(dim)),
        };
        let mut total = embedding;
        for _ in 0..self.layers.max(0) {
            let gates = h.saturating_mul(4);
            total =
                total.saturating_add(gates.saturating_mul(width.saturating_add(h)).saturating_add(2 * gates));
            width = h;
        }
        let head = if self.tie_weights { v } else { h.saturating_mul(v).saturating_add(v) };
        total.saturating_add(head)
    }

    /// An upper estimate of the floats one training step holds besides the weights, for `rows`
    /// sequences of `len` positions with a prediction at `predicted` of them: the input rows,
    /// each layer's gates, states and dropout masks kept for the backward pass, and the logits
    /// with their log-softmax and gradient.
    pub fn step_floats(&self, rows: u128, len: u128, predicted: u128) -> u128 {
        let w = |x: i64| x.max(0) as u128;
        let (v, h, layers) = (w(self.vocab), w(self.hidden), w(self.layers));
        let width = match self.input {
            InputKind::OneHot => v,
            InputKind::Embedding { dim } => w(dim),
        };
        let per_position =
            width.saturating_mul(2).saturating_add(h.saturating_mul(layers).saturating_mul(12));
        let per_row =
            len.saturating_mul(per_position).saturating_add(predicted.saturating_mul(v).saturating_mul(3));
        rows.saturating_mul(per_row)
    }
}

/// Largest vocabulary allowed with one-hot input: the export stores a `vocab × vocab` identity.
pub const MAX_ONE_HOT_VOCAB: i64 = 4096;

/// Embedding or one-hot input, an LSTM stack, and a linear head on the last position.
#[derive(Debug)]
pub struct TextLstm {
    embedding: Option<nn::Embedding>,
    pub lstm: Lstm,
    head: nn::Linear,
    pub config: LmConfig,
}

impl TextLstm {
    pub fn new(vs: &nn::Path, config: &LmConfig) -> Self {
        let (embedding, width) = match config.input {
            InputKind::OneHot => (None, config.vocab),
            InputKind::Embedding { dim } => {
                let mut c = nn::EmbeddingConfig::default();
                if let Some(r) = config.init_range {
                    c.ws_init = nn::Init::Uniform { lo: -r, up: r };
                }
                (Some(nn::embedding(vs / "embedding", config.vocab, dim, c)), dim)
            }
        };
        let k = 1.0 / (config.hidden as f64).sqrt();
        let bias_init = match config.init_range {
            Some(_) => nn::Init::Const(0.0),
            None => nn::Init::Uniform { lo: -k, up: k },
        };
        let lstm = Lstm::new(vs / "lstm", width, config.hidden, config.layers, config.dropout);
        let head = match &embedding {
            // The embedding's weight, and a bias initialised as nn::linear's.
            Some(e) if config.tie_weights => {
                let bias = (vs / "head").var("bias", &[config.vocab], bias_init);
                nn::Linear { ws: e.ws.shallow_clone(), bs: Some(bias) }
            }
            _ => {
                let mut c = nn::LinearConfig::default();
                if let Some(r) = config.init_range {
                    c.ws_init = nn::Init::Uniform { lo: -r, up: r };
                    c.bs_init = Some(bias_init);
                }
                nn::linear(vs / "head", config.hidden, config.vocab, c)
            }
        };
        TextLstm { embedding, lstm, head, config: config.clone() }
    }

    fn embed(&self, tokens: &Tensor, train: bool) -> Tensor {
        let x = match &self.embedding {
            Some(e) => e.forward(tokens), // [batch, seq, dim]
            None => tokens.one_hot(self.config.vocab).to_kind(Kind::Float), // [batch, seq, vocab]
        };
        x.dropout(self.config.dropout, train)
    }

    /// `tokens [batch, seq]` (int64) → `(logits [batch, seq, vocab] after every position,
    /// state)`: the stream protocol's forward pass (the logits are a transposed view of
    /// [`TextLstm::forward_seq_first`]'s).
    pub fn forward_all(
        &self,
        tokens: &Tensor,
        state: &(Tensor, Tensor),
        train: bool,
    ) -> (Tensor, (Tensor, Tensor)) {
        let (logits, state) = self.forward_seq_first(&tokens.transpose(0, 1), state, train);
        (logits.transpose(0, 1), state)
    }

    /// `tokens [seq, batch]` (int64) → `(logits [seq, batch, vocab], state)`: the stream
    /// protocol's forward pass in the layout libtorch's LSTM runs fastest.
    pub fn forward_seq_first(
        &self,
        tokens: &Tensor,
        state: &(Tensor, Tensor),
        train: bool,
    ) -> (Tensor, (Tensor, Tensor)) {
        let x = self.embed(&tokens.contiguous(), train);
        let (y, state) = self.lstm.seq_first(&x, state, train); // [seq, batch, hidden]
        (self.head.forward(&y.dropout(self.config.dropout, train)), state)
    }

    /// `tokens [batch, seq]` (int64) → `(logits [batch, vocab] for the last position, state)`.
    pub fn forward(
        &self,
        tokens: &Tensor,
        state: Option<&(Tensor, Tensor)>,
        train: bool,
    ) -> (Tensor, (Tensor, Tensor)) {
        let x = self.embed(tokens, train);
        let zero;
        let state = match state {
            Some(s) => s,
            None => {
                zero = self.lstm.zero_state(tokens.size()[0], tokens.device());
                &zero
            }
        };
        let (_, (h, c)) = self.lstm.seq(&x, state, train);
        let last = h.get(self.lstm.layers - 1).dropout(self.config.dropout, train); // [batch, hidden]
        (self.head.forward(&last), (h, c))
    }
}

#[cfg(test)]
mod parameter_tests {
    use super::*;

    /// The count from the configuration is the count of values the model's VarStore holds.
    #[test]
    fn parameters_are_counted_as_the_model_holds_them() {
        for (input, tie) in [
            (InputKind::OneHot, false),
            (InputKind::Embedding { dim: 6 }, true),
            (InputKind::Embedding { dim: 4 }, false),
        ] {
            let cfg = LmConfig {
                vocab: 11,
                input,
                hidden: 6,
                layers: 2,
                dropout: 0.0,
                context: 3,
                tie_weights: tie,
                init_range: None,
            };
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let _model = TextLstm::new(&vs.root(), &cfg);
            let held: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
            assert_eq!(cfg.parameters(), held as u128, "{cfg:?}");
        }
    }
}
