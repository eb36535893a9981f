//! BERT in exact f64, one struct per module of Hugging Face's
//! [modeling_bert.py](https://github.com/huggingface/transformers/blob/main/src/transformers/models/bert/modeling_bert.py),
//! each loaded from its HF name prefix (`embeddings`, `encoder.layer.{i}.attention.self`, ...).
//! This is the plaintext reference the encrypted path is measured against: true softmax with
//! padding keys masked, erf GELU (or tanh, as the config says), LayerNorm with the model's eps.
//!
//! Shapes: T tokens, hidden D, H heads of d_h = D / H, feed-forward F. Token states are row-major
//! `Vec<Vec<f64>>`, T rows of D. Linear layers are `nn::matmul::Linear` (weight [d_in][d_out]).

use super::config::{Activation, BertConfig, Head};
use super::{ModelError, Weights};
use crate::nn::layernorm::layernorm_exact;
use crate::nn::matmul::Linear;

/// Which of a layer's two LayerNorms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    /// `attention.output.LayerNorm`: after attention, on attention output + the layer's input.
    Attention,
    /// `output.LayerNorm`: after the feed-forward, on its output + the attention block's output.
    Output,
}

/// An intermediate value inside one encoder layer, as the forward pass computes it.
#[derive(Clone, Copy, Debug)]
pub enum LayerProbe<'a> {
    /// One query row of one head: q_t . k_u / sqrt(d_h) for the visible keys u (mask 1) in key
    /// order, before the softmax. Every query row, padding rows included, is shown.
    Scores {
        head: usize,
        query: usize,
        scores: &'a [f64],
    },
    /// A LayerNorm's T x D input: the residual stream (dense output + the skip connection).
    NormInput { norm: Norm, x: &'a [Vec<f64>] },
    /// The feed-forward activation's (GELU's) T x F input.
    ActivationInput(&'a [Vec<f64>]),
    /// A T x D matrix whose |x| bounds a bootstrap of the encrypted layer ([`Site`]).
    Values { site: Site, x: &'a [Vec<f64>] },
}

/// Where a [`LayerProbe::Values`] matrix was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// The query, key and value projections (each shown).
    QueryKeyValue,
    /// The attention's context (softmax times V, all heads), before `attention.output.dense`.
    Context,
    /// `attention.output.LayerNorm`'s output (the feed-forward's input).
    AttentionOutput,
    /// `output.LayerNorm`'s output: the layer's output (the next layer's input).
    Output,
}

/// An intermediate value of the whole model ([`BertModel::forward_observed`]).
#[derive(Clone, Copy, Debug)]
pub enum Probe<'a> {
    /// The embeddings' LayerNorm output, T x D: the encoder's input (what a client encrypts).
    Embeddings(&'a [Vec<f64>]),
    /// A probe of encoder layer `layer` (0-based).
    Layer { layer: usize, probe: LayerProbe<'a> },
}

/// `nn.LayerNorm(D, eps)`: `weight` (gamma) and `bias` (beta), [D] each (old TF-converted
/// checkpoints: `gamma`, `beta`).
#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub gamma: Vec<f64>,
    pub beta: Vec<f64>,
    pub eps: f64,
}

impl LayerNorm {
    pub fn load(w: &Weights, d: usize, eps: f64) -> Result<Self, ModelError> {
        let (g, b) = if !w.contains("weight") && w.contains("gamma") {
            ("gamma", "beta")
        } else {
            ("weight", "bias")
        };
        Ok(LayerNorm {
            gamma: w.vector(g, d)?,
            beta: w.vector(b, d)?,
            eps,
        })
    }

    /// Row-wise (x - mean) / sqrt(var + eps) * gamma + beta on T x D.
    pub fn forward(&self, x: &[Vec<f64>]) -> Vec<Vec<f64>> {
        layernorm_exact(x, &self.gamma, &self.beta, self.eps)
    }
}

/// `BertEmbeddings`: word [V, D], position [P, D] and token type [types, D] embeddings, summed,
/// then LayerNorm. Absolute positions 0..T.
#[derive(Clone, Debug)]
pub struct Embeddings {
    /// Row-major [V, D].
    pub word: Vec<f64>,
    /// Row-major [P, D].
    pub position: Vec<f64>,
    /// Row-major [types, D].
    pub token_type: Vec<f64>,
    pub layer_norm: LayerNorm,
    hidden: usize,
}

impl Embeddings {
    /// From `w` at the `embeddings` prefix.
    pub fn load(w: &Weights, c: &BertConfig) -> Result<Self, ModelError> {
        let d = c.hidden;
        Ok(Embeddings {
            word: w.tensor("word_embeddings.weight", &[c.vocab, d])?,
            position: w.tensor("position_embeddings.weight", &[c.max_positions, d])?,
            token_type: w.tensor("token_type_embeddings.weight", &[c.type_vocab, d])?,
            layer_norm: LayerNorm::load(&w.pp("LayerNorm"), d, c.layer_norm_eps)?,
            hidden: d,
        })
    }

    /// T x D input states of `ids` and `type_ids` (length T each). Ids outside the tables and
    /// T above the position table are errors.
    pub fn forward(&self, ids: &[u32], type_ids: &[u32]) -> Result<Vec<Vec<f64>>, ModelError> {
        let d = self.hidden;
        let rows = |table: &[f64]| table.len() / d;
        if ids.len() != type_ids.len() {
            return Err(ModelError::Input(format!(
                "{} token ids but {} token type ids",
                ids.len(),
                type_ids.len()
            )));
        }
        if ids.len() > rows(&self.position) {
            return Err(ModelError::Input(format!(
                "{} tokens, more than max_position_embeddings = {}",
                ids.len(),
                rows(&self.position)
            )));
        }
        let x = ids
            .iter()
            .zip(type_ids)
            .enumerate()
            .map(|(t, (&id, &ty))| {
                let (id, ty) = (id as usize, ty as usize);
                if id >= rows(&self.word) {
                    return Err(ModelError::Input(format!(
                        "token id {id} at position {t} is outside the vocabulary of {}",
                        rows(&self.word)
                    )));
                }
                if ty >= rows(&self.token_type) {
                    return Err(ModelError::Input(format!(
                        "token type {ty} at position {t} is outside type_vocab_size = {}",
                        rows(&self.token_type)
                    )));
                }
                Ok((0..d)
                    .map(|j| {
                        self.word[id * d + j]
                            + self.position[t * d + j]
                            + self.token_type[ty * d + j]
                    })
                    .collect())
            })
            .collect::<Result<Vec<Vec<f64>>, ModelError>>()?;
        Ok(self.layer_norm.forward(&x))
    }
}

/// `BertSelfAttention`: `query`, `key`, `value` (D -> D each), H heads.
#[derive(Clone, Debug)]
pub struct SelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub heads: usize,
}

impl SelfAttention {
    pub fn load(w: &Weights, c: &BertConfig) -> Result<Self, ModelError> {
        let d = c.hidden;
        Ok(SelfAttention {
            query: w.pp("query").linear(d, d)?,
            key: w.pp("key").linear(d, d)?,
            value: w.pp("value").linear(d, d)?,
            heads: c.heads,
        })
    }

    /// T x D context: per head, softmax(q k^T / sqrt(d_h)) v over the keys whose mask is 1 (HF
    /// adds the dtype's minimum to masked scores, which gives them weight exactly 0; here they are
    /// skipped). Every query row, padding included, is computed.
    pub fn forward(&self, x: &[Vec<f64>], mask: &[u32]) -> Result<Vec<Vec<f64>>, ModelError> {
        self.forward_observed(x, mask, &mut |_| {})
    }

    /// `forward`, showing `observe` every row of scaled scores (one [`LayerProbe::Scores`] per
    /// query row and head, over the visible keys only, before the softmax).
    pub fn forward_observed(
        &self,
        x: &[Vec<f64>],
        mask: &[u32],
        observe: &mut dyn FnMut(LayerProbe),
    ) -> Result<Vec<Vec<f64>>, ModelError> {
        let (q, k, v) = (self.query.twin(x)?, self.key.twin(x)?, self.value.twin(x)?);
        for m in [&q, &k, &v] {
            observe(LayerProbe::Values {
                site: Site::QueryKeyValue,
                x: m,
            });
        }
        let d = self.query.d_out();
        let dh = d / self.heads;
        let scale = 1.0 / (dh as f64).sqrt();
        let keys: Vec<usize> = (0..x.len()).filter(|&u| mask[u] != 0).collect();
        let rows = q
            .iter()
            .enumerate()
            .map(|(query, qt)| {
                let mut row = vec![0.0; d];
                for h in 0..self.heads {
                    let cols = h * dh..(h + 1) * dh;
                    let s: Vec<f64> = keys
                        .iter()
                        .map(|&u| cols.clone().map(|j| qt[j] * k[u][j]).sum::<f64>() * scale)
                        .collect();
                    observe(LayerProbe::Scores {
                        head: h,
                        query,
                        scores: &s,
                    });
                    let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for (&u, p) in keys.iter().zip(&e) {
                        for j in cols.clone() {
                            row[j] += p / z * v[u][j];
                        }
                    }
                }
                row
            })
            .collect::<Vec<_>>();
        observe(LayerProbe::Values {
            site: Site::Context,
            x: &rows,
        });
        Ok(rows)
    }
}

/// A dense layer whose output is added to the residual input and LayerNormed: HF's
/// `BertSelfOutput` (`dense` D -> D after attention) and `BertOutput` (`dense` F -> D after the
/// feed-forward) are this one module at two widths.
#[derive(Clone, Debug)]
pub struct AddNorm {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
}

/// `BertSelfOutput`: `dense` (D -> D), then LayerNorm of the result plus the attention's input.
pub type SelfOutput = AddNorm;
/// `BertOutput`: `dense` (F -> D), then LayerNorm of the result plus the attention output.
pub type Output = AddNorm;

impl AddNorm {
    /// `dense` (d_in -> D) and `LayerNorm` under `w`.
    pub fn load(w: &Weights, d_in: usize, c: &BertConfig) -> Result<Self, ModelError> {
        Ok(AddNorm {
            dense: w.pp("dense").linear(d_in, c.hidden)?,
            layer_norm: LayerNorm::load(&w.pp("LayerNorm"), c.hidden, c.layer_norm_eps)?,
        })
    }

    /// LayerNorm(dense(h) + input): h is T x d_in, input and the result T x D.
    pub fn forward(&self, h: &[Vec<f64>], input: &[Vec<f64>]) -> Result<Vec<Vec<f64>>, ModelError> {
        self.forward_observed(h, input, &mut |_, _| {})
    }

    /// `forward`, showing `observe` the LayerNorm's T x D input (the residual stream) and then
    /// its output.
    pub fn forward_observed(
        &self,
        h: &[Vec<f64>],
        input: &[Vec<f64>],
        observe: &mut dyn FnMut(&[Vec<f64>], bool),
    ) -> Result<Vec<Vec<f64>>, ModelError> {
        let mut y = self.dense.twin(h)?;
        for (r, x) in y.iter_mut().zip(input) {
            for (v, a) in r.iter_mut().zip(x) {
                *v += a;
            }
        }
        observe(&y, false);
        let out = self.layer_norm.forward(&y);
        observe(&out, true);
        Ok(out)
    }
}

/// `BertAttention`: `self` ([`SelfAttention`]) then `output` ([`SelfOutput`]).
#[derive(Clone, Debug)]
pub struct Attention {
    pub self_attention: SelfAttention,
    pub output: SelfOutput,
}

impl Attention {
    pub fn load(w: &Weights, c: &BertConfig) -> Result<Self, ModelError> {
        Ok(Attention {
            self_attention: SelfAttention::load(&w.pp("self"), c)?,
            output: SelfOutput::load(&w.pp("output"), c.hidden, c)?,
        })
    }

    pub fn forward(&self, x: &[Vec<f64>], mask: &[u32]) -> Result<Vec<Vec<f64>>, ModelError> {
        self.forward_observed(x, mask, &mut |_| {})
    }

    /// `forward`, showing `observe` the scores and the first LayerNorm's input.
    pub fn forward_observed(
        &self,
        x: &[Vec<f64>],
        mask: &[u32],
        observe: &mut dyn FnMut(LayerProbe),
    ) -> Result<Vec<Vec<f64>>, ModelError> {
        let context = self.self_attention.forward_observed(x, mask, observe)?;
        self.output.forward_observed(&context, x, &mut |y, output| {
            observe(if output {
                LayerProbe::Values {
                    site: Site::AttentionOutput,
                    x: y,
                }
            } else {
                LayerProbe::NormInput {
                    norm: Norm::Attention,
                    x: y,
                }
            })
        })
    }
}

/// `BertIntermediate`: `dense` (D -> F), then the activation.
#[derive(Clone, Debug)]
pub struct Intermediate {
    pub dense: Linear,
    pub activation: Activation,
}

impl Intermediate {
    pub fn load(w: &Weights, c: &BertConfig) -> Result<Self, ModelError> {
        Ok(Intermediate {
            dense: w.pp("dense").linear(c.hidden, c.intermediate)?,
            activation: c.activation,
        })
    }

    /// T x F.
    pub fn forward(&self, x: &[Vec<f64>]) -> Result<Vec<Vec<f64>>, ModelError> {
        self.forward_observed(x, &mut |_| {})
    }

    /// `forward`, showing `observe` the activation's T x F input.
    pub fn forward_observed(
        &self,
        x: &[Vec<f64>],
        observe: &mut dyn FnMut(&[Vec<f64>]),
    ) -> Result<Vec<Vec<f64>>, ModelError> {
        let mut h = self.dense.twin(x)?;
        observe(&h);
        for v in h.iter_mut().flatten() {
            *v = self.activation.apply(*v);
        }
        Ok(h)
    }
}

/// `BertLayer`: attention, intermediate, output (post-LN).
#[derive(Clone, Debug)]
pub struct Layer {
    pub attention: Attention,
    pub intermediate: Intermediate,
    pub output: Output,
}

impl Layer {
    pub fn load(w: &Weights, c: &BertConfig) -> Result<Self, ModelError> {
        Ok(Layer {
            attention: Attention::load(&w.pp("attention"), c)?,
            intermediate: Intermediate::load(&w.pp("intermediate"), c)?,
            output: Output::load(&w.pp("output"), c.intermediate, c)?,
        })
    }

    pub fn forward(&self, x: &[Vec<f64>], mask: &[u32]) -> Result<Vec<Vec<f64>>, ModelError> {
        self.forward_observed(x, mask, &mut |_| {})
    }

    /// `forward`, showing `observe` every [`LayerProbe`] of the layer in order.
    pub fn forward_observed(
        &self,
        x: &[Vec<f64>],
        mask: &[u32],
        observe: &mut dyn FnMut(LayerProbe),
    ) -> Result<Vec<Vec<f64>>, ModelError> {
        let a = self.attention.forward_observed(x, mask, observe)?;
        let h = self
            .intermediate
            .forward_observed(&a, &mut |x| observe(LayerProbe::ActivationInput(x)))?;
        self.output.forward_observed(&h, &a, &mut |y, output| {
            observe(if output {
                LayerProbe::Values {
                    site: Site::Output,
                    x: y,
                }
            } else {
                LayerProbe::NormInput {
                    norm: Norm::Output,
                    x: y,
                }
            })
        })
    }
}

/// `BertEncoder`: `layer.{i}` for i < num_hidden_layers.
#[derive(Clone, Debug)]
pub struct Encoder {
    pub layers: Vec<Layer>,
}

impl Encoder {
    pub fn load(w: &Weights, c: &BertConfig) -> Result<Self, ModelError> {
        let layers = (0..c.layers)
            .map(|i| Layer::load(&w.pp(format!("layer.{i}")), c))
            .collect::<Result<_, _>>()?;
        Ok(Encoder { layers })
    }

    pub fn forward(&self, x: &[Vec<f64>], mask: &[u32]) -> Result<Vec<Vec<f64>>, ModelError> {
        self.forward_observed(x, mask, &mut |_| {})
    }

    /// `forward`, showing `observe` each layer's probes tagged with the layer's index.
    pub fn forward_observed(
        &self,
        x: &[Vec<f64>],
        mask: &[u32],
        observe: &mut dyn FnMut(Probe),
    ) -> Result<Vec<Vec<f64>>, ModelError> {
        self.layers
            .iter()
            .enumerate()
            .try_fold(x.to_vec(), |h, (layer, l)| {
                l.forward_observed(&h, mask, &mut |probe| {
                    observe(Probe::Layer { layer, probe })
                })
            })
    }
}

/// `BertPooler`: tanh(dense(state of token 0)), D -> D.
#[derive(Clone, Debug)]
pub struct Pooler {
    pub dense: Linear,
}

impl Pooler {
    pub fn load(w: &Weights, c: &BertConfig) -> Result<Self, ModelError> {
        Ok(Pooler {
            dense: w.pp("dense").linear(c.hidden, c.hidden)?,
        })
    }

    /// D values from T x D states.
    pub fn forward(&self, h: &[Vec<f64>]) -> Result<Vec<f64>, ModelError> {
        Ok(self.dense.twin(&h[..1])?[0]
            .iter()
            .map(|v| v.tanh())
            .collect())
    }
}

/// `BertModel` (and the `classifier` of `BertForSequenceClassification`, D -> labels).
#[derive(Clone, Debug)]
pub struct BertModel {
    pub config: BertConfig,
    pub embeddings: Embeddings,
    pub encoder: Encoder,
    /// Present when the file has `pooler.dense.*` (sentence-transformers does not use it).
    pub pooler: Option<Pooler>,
    pub classifier: Option<Linear>,
}

impl BertModel {
    /// Loads every module from `w` (root prefix; names with or without `bert.`).
    pub fn load(w: &Weights, config: &BertConfig) -> Result<Self, ModelError> {
        let c = config;
        let pooler = if w.contains("pooler.dense.weight") {
            Some(Pooler::load(&w.pp("pooler"), c)?)
        } else {
            None
        };
        let classifier = match c.head {
            Head::None => None,
            Head::SequenceClassification { labels } => {
                if pooler.is_none() {
                    // Named by the lookup that fails.
                    Pooler::load(&w.pp("pooler"), c)?;
                }
                Some(w.pp("classifier").linear(c.hidden, labels)?)
            }
        };
        Ok(BertModel {
            config: config.clone(),
            embeddings: Embeddings::load(&w.pp("embeddings"), c)?,
            encoder: Encoder::load(&w.pp("encoder"), c)?,
            pooler,
            classifier,
        })
    }

    /// The last layer's T x D states for `ids`, `type_ids` and `mask` (length T each).
    pub fn forward(
        &self,
        ids: &[u32],
        type_ids: &[u32],
        mask: &[u32],
    ) -> Result<Vec<Vec<f64>>, ModelError> {
        self.forward_observed(ids, type_ids, mask, &mut |_| {})
    }

    /// `forward`, showing `observe` every intermediate value a calibration needs ([`Probe`]), in
    /// the order the forward pass computes them. The observer cannot change them.
    pub fn forward_observed(
        &self,
        ids: &[u32],
        type_ids: &[u32],
        mask: &[u32],
        observe: &mut dyn FnMut(Probe),
    ) -> Result<Vec<Vec<f64>>, ModelError> {
        if mask.len() != ids.len() {
            return Err(ModelError::Input(format!(
                "{} token ids but an attention mask of {}",
                ids.len(),
                mask.len()
            )));
        }
        if !mask.iter().any(|&m| m != 0) {
            return Err(ModelError::Input(
                "the attention mask has no real token".into(),
            ));
        }
        let x = self.embeddings.forward(ids, type_ids)?;
        observe(Probe::Embeddings(&x));
        self.encoder.forward_observed(&x, mask, observe)
    }

    /// The classifier's logits from the last states (pooler, then classifier), when the model
    /// has a classification head.
    pub fn logits(&self, h: &[Vec<f64>]) -> Result<Option<Vec<f64>>, ModelError> {
        let (Some(pooler), Some(classifier)) = (&self.pooler, &self.classifier) else {
            return Ok(None);
        };
        let pooled = pooler.forward(h)?;
        Ok(Some(classifier.twin(&[pooled])?[0].clone()))
    }
}
