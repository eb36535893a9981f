//! GPT-2 in exact f64, one struct per module of Hugging Face's
//! [modeling_gpt2.py](https://github.com/huggingface/transformers/blob/main/src/transformers/models/gpt2/modeling_gpt2.py),
//! each loaded from its HF name prefix (`wte`, `wpe`, `h.{i}.attn.c_attn`, ..., `ln_f`, with or
//! without `transformer.`): pre-LN blocks, causal attention with a KV cache, GELU's tanh form
//! (`gelu_new`), LM head tied to `wte` unless the file has `lm_head.weight`. This is the plaintext
//! reference the encrypted path is measured against.
//!
//! Shapes: T tokens, hidden D (`n_embd`), H heads of d_h = D / H, feed-forward F (`n_inner`),
//! vocabulary V. Token states are row-major `Vec<Vec<f64>>`, T rows of D. `Conv1D` weights are
//! stored [in, out], which is `nn::matmul::Linear`'s orientation.

use std::path::Path;

use super::bert::LayerNorm;
use super::config::{Activation, Gpt2Config};
use super::{ModelError, Weights};
use crate::nn::block::BlockWeights;
use crate::nn::matmul::Linear;

/// `GPT2Attention`: `c_attn` (D -> 3D: Q, K, V side by side) and `c_proj` (D -> D).
#[derive(Clone, Debug)]
pub struct Attention {
    pub c_attn: Linear,
    pub c_proj: Linear,
    pub heads: usize,
}

impl Attention {
    /// From `w` at `h.{i}.attn`.
    pub fn load(w: &Weights, c: &Gpt2Config) -> Result<Self, ModelError> {
        let d = c.hidden;
        Ok(Attention {
            c_attn: w.pp("c_attn").conv1d(d, 3 * d)?,
            c_proj: w.pp("c_proj").conv1d(d, d)?,
            heads: c.heads,
        })
    }

    /// `c_attn` split into the query, key and value projections (columns 0..D, D..2D, 2D..3D).
    pub fn qkv(&self) -> (Linear, Linear, Linear) {
        let d = self.c_proj.d_in();
        let part = |k: usize| Linear {
            weight: self
                .c_attn
                .weight
                .iter()
                .map(|row| row[k * d..(k + 1) * d].to_vec())
                .collect(),
            bias: self.c_attn.bias[k * d..(k + 1) * d].to_vec(),
        };
        (part(0), part(1), part(2))
    }

    /// The new tokens' outputs (T x D): their Q, K, V; K and V appended to `cache`; each new
    /// token at position p attends to the cached keys 0..=p with softmax(q k^T / sqrt(d_h)).
    pub fn forward(
        &self,
        x: &[Vec<f64>],
        cache: &mut LayerCache,
    ) -> Result<Vec<Vec<f64>>, ModelError> {
        self.forward_observed(x, cache, &mut |_| {})
    }

    /// [`Attention::forward`], showing `see` the Q/K/V rows, every score row and the context.
    pub fn forward_observed(
        &self,
        x: &[Vec<f64>],
        cache: &mut LayerCache,
        see: &mut dyn FnMut(Probe),
    ) -> Result<Vec<Vec<f64>>, ModelError> {
        let d = self.c_proj.d_in();
        let dh = d / self.heads;
        let qkv = self.c_attn.twin(x)?;
        see(Probe::QueryKeyValue(&qkv));
        let start = cache.keys.len();
        for row in &qkv {
            cache.keys.push(row[d..2 * d].to_vec());
            cache.values.push(row[2 * d..].to_vec());
        }
        let scale = 1.0 / (dh as f64).sqrt();
        let mut context = Vec::with_capacity(qkv.len());
        for (t, row) in qkv.iter().enumerate() {
            let visible = start + t + 1;
            let mut out = vec![0.0; d];
            for h in 0..self.heads {
                let r = h * dh..(h + 1) * dh;
                let q = &row[r.clone()];
                let scores: Vec<f64> = cache.keys[..visible]
                    .iter()
                    .map(|k| q.iter().zip(&k[r.clone()]).map(|(a, b)| a * b).sum::<f64>() * scale)
                    .collect();
                see(Probe::Scores {
                    head: h,
                    scores: &scores,
                });
                let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - mx).exp()).collect();
                let sum: f64 = e.iter().sum();
                for (p, v) in e.iter().zip(&cache.values[..visible]) {
                    for (o, vv) in out[r.clone()].iter_mut().zip(&v[r.clone()]) {
                        *o += p / sum * vv;
                    }
                }
            }
            context.push(out);
        }
        see(Probe::Context(&context));
        Ok(self.c_proj.twin(&context)?)
    }
}

/// `GPT2MLP`: `c_fc` (D -> F), the activation, `c_proj` (F -> D).
#[derive(Clone, Debug)]
pub struct Mlp {
    pub c_fc: Linear,
    pub c_proj: Linear,
    pub activation: Activation,
}

impl Mlp {
    /// From `w` at `h.{i}.mlp`.
    pub fn load(w: &Weights, c: &Gpt2Config) -> Result<Self, ModelError> {
        Ok(Mlp {
            c_fc: w.pp("c_fc").conv1d(c.hidden, c.inner)?,
            c_proj: w.pp("c_proj").conv1d(c.inner, c.hidden)?,
            activation: c.activation,
        })
    }

    pub fn forward(&self, x: &[Vec<f64>]) -> Result<Vec<Vec<f64>>, ModelError> {
        self.forward_observed(x, &mut |_| {})
    }

    /// [`Mlp::forward`], showing `see` the activation's input and output.
    pub fn forward_observed(
        &self,
        x: &[Vec<f64>],
        see: &mut dyn FnMut(Probe),
    ) -> Result<Vec<Vec<f64>>, ModelError> {
        let mut f = self.c_fc.twin(x)?;
        see(Probe::ActivationInput(&f));
        f.iter_mut()
            .flatten()
            .for_each(|v| *v = self.activation.apply(*v));
        see(Probe::ActivationOutput(&f));
        Ok(self.c_proj.twin(&f)?)
    }
}

/// `GPT2Block`: x + attn(ln_1(x)), then + mlp(ln_2(.)).
#[derive(Clone, Debug)]
pub struct Block {
    pub ln_1: LayerNorm,
    pub attn: Attention,
    pub ln_2: LayerNorm,
    pub mlp: Mlp,
}

impl Block {
    /// From `w` at `h.{i}`.
    pub fn load(w: &Weights, c: &Gpt2Config) -> Result<Self, ModelError> {
        let (d, eps) = (c.hidden, c.layer_norm_eps);
        Ok(Block {
            ln_1: LayerNorm::load(&w.pp("ln_1"), d, eps)?,
            attn: Attention::load(&w.pp("attn"), c)?,
            ln_2: LayerNorm::load(&w.pp("ln_2"), d, eps)?,
            mlp: Mlp::load(&w.pp("mlp"), c)?,
        })
    }

    pub fn forward(
        &self,
        x: &[Vec<f64>],
        cache: &mut LayerCache,
    ) -> Result<Vec<Vec<f64>>, ModelError> {
        self.forward_observed(x, cache, &mut |_| {})
    }

    /// [`Block::forward`], showing `see` every intermediate value ([`Probe`]).
    pub fn forward_observed(
        &self,
        x: &[Vec<f64>],
        cache: &mut LayerCache,
        see: &mut dyn FnMut(Probe),
    ) -> Result<Vec<Vec<f64>>, ModelError> {
        see(Probe::NormInput(Norm::Ln1, x));
        let h = self.ln_1.forward(x);
        see(Probe::NormOutput(Norm::Ln1, &h));
        let a = self.attn.forward_observed(&h, cache, see)?;
        see(Probe::BranchOutput(&a));
        let x2 = add(x, &a);
        see(Probe::NormInput(Norm::Ln2, &x2));
        let h2 = self.ln_2.forward(&x2);
        see(Probe::NormOutput(Norm::Ln2, &h2));
        let f = self.mlp.forward_observed(&h2, see)?;
        see(Probe::BranchOutput(&f));
        let y = add(&x2, &f);
        see(Probe::Output(&y));
        Ok(y)
    }

    /// The block as `nn::block`'s weights (c_attn split into Q, K, V), for the encrypted path.
    pub fn block_weights(&self) -> BlockWeights {
        let (q, k, v) = self.attn.qkv();
        BlockWeights {
            q,
            k,
            v,
            o: self.attn.c_proj.clone(),
            ln1: (self.ln_1.gamma.clone(), self.ln_1.beta.clone()),
            ff1: self.mlp.c_fc.clone(),
            ff2: self.mlp.c_proj.clone(),
            ln2: (self.ln_2.gamma.clone(), self.ln_2.beta.clone()),
        }
    }
}

fn add(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    a.iter()
        .zip(b)
        .map(|(u, v)| u.iter().zip(v).map(|(p, q)| p + q).collect())
        .collect()
}

/// Which LayerNorm of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    /// `ln_1`, before attention, on the residual stream.
    Ln1,
    /// `ln_2`, before the MLP, on the residual stream plus attention's output.
    Ln2,
}

/// An intermediate value inside one block (rows of the new tokens only).
#[derive(Clone, Copy, Debug)]
pub enum Probe<'a> {
    /// A LayerNorm's input (the residual stream).
    NormInput(Norm, &'a [Vec<f64>]),
    /// A LayerNorm's output (the input of Q/K/V or of the MLP).
    NormOutput(Norm, &'a [Vec<f64>]),
    /// `c_attn`'s output, Q, K and V side by side (3D per row).
    QueryKeyValue(&'a [Vec<f64>]),
    /// One query row of one head: q . k_u / sqrt(d_h) for the visible keys u = 0..=p.
    Scores { head: usize, scores: &'a [f64] },
    /// The attention's context (before `c_proj`).
    Context(&'a [Vec<f64>]),
    /// A branch's output before it joins the residual stream (attention's, then the MLP's).
    BranchOutput(&'a [Vec<f64>]),
    /// The activation's input (T x F).
    ActivationInput(&'a [Vec<f64>]),
    /// The activation's output (T x F).
    ActivationOutput(&'a [Vec<f64>]),
    /// The block's output (the next block's input).
    Output(&'a [Vec<f64>]),
}

/// One layer's keys and values, one D-row per position so far (heads side by side).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerCache {
    pub keys: Vec<Vec<f64>>,
    pub values: Vec<Vec<f64>>,
}

/// Every layer's keys and values: what decoding one more token needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KvCache {
    pub layers: Vec<LayerCache>,
}

impl KvCache {
    /// Positions cached (the next token's position).
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |l| l.keys.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `GPT2LMHeadModel`: `wte` [V, D], `wpe` [P, D], the blocks, `ln_f`, and the LM head
/// (`lm_head.weight` [V, D], or `wte` when tied).
#[derive(Clone, Debug)]
pub struct Gpt2Model {
    pub config: Gpt2Config,
    /// Row-major [V, D].
    pub wte: Vec<f64>,
    /// Row-major [P, D].
    pub wpe: Vec<f64>,
    pub h: Vec<Block>,
    pub ln_f: LayerNorm,
    /// Row-major [V, D] when the file has its own `lm_head.weight`; `None`: tied to `wte`.
    pub lm_head: Option<Vec<f64>>,
}

impl Gpt2Model {
    /// A GPT-2 directory: `config.json` and `model.safetensors`. Errors: as
    /// [`Gpt2Config::from_file`] and [`Weights::tensor`]; an untied model without `lm_head.weight`.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let config = Gpt2Config::from_file(&dir.join("config.json"))?;
        let w = Weights::open(&dir.join("model.safetensors"))?;
        Self::from_weights(config, &w)
    }

    pub fn from_weights(config: Gpt2Config, w: &Weights) -> Result<Self, ModelError> {
        let c = &config;
        let d = c.hidden;
        let h = (0..c.layers)
            .map(|i| Block::load(&w.pp(format!("h.{i}")), c))
            .collect::<Result<Vec<_>, _>>()?;
        // `lm_head.weight` sits outside the `transformer.` prefix.
        let lm_head = if w.contains("lm_head.weight") {
            Some(w.tensor("lm_head.weight", &[c.vocab, d])?)
        } else if c.tie_word_embeddings {
            None
        } else {
            return Err(ModelError::MissingTensor {
                path: w.path().to_path_buf(),
                name: "lm_head.weight".into(),
                tried: " (the config says tie_word_embeddings: false)".into(),
            });
        };
        Ok(Gpt2Model {
            wte: w.tensor("wte.weight", &[c.vocab, d])?,
            wpe: w.tensor("wpe.weight", &[c.max_positions, d])?,
            h,
            ln_f: LayerNorm::load(&w.pp("ln_f"), d, c.layer_norm_eps)?,
            lm_head,
            config,
        })
    }

    /// wte[id] + wpe[start + t] for each id (T x D): what the client encrypts. Errors: an id
    /// outside the vocabulary, a position at or past `n_positions`.
    pub fn embed(&self, ids: &[u32], start: usize) -> Result<Vec<Vec<f64>>, ModelError> {
        let (d, c) = (self.config.hidden, &self.config);
        if start + ids.len() > c.max_positions {
            return Err(ModelError::Input(format!(
                "positions {start}..{} do not fit the model's n_positions = {}",
                start + ids.len(),
                c.max_positions
            )));
        }
        ids.iter()
            .enumerate()
            .map(|(t, &id)| {
                let id = id as usize;
                if id >= c.vocab {
                    return Err(ModelError::Input(format!(
                        "token id {id} is outside the vocabulary of {}",
                        c.vocab
                    )));
                }
                let p = start + t;
                Ok((0..d)
                    .map(|j| self.wte[id * d + j] + self.wpe[p * d + j])
                    .collect())
            })
            .collect()
    }

    /// An empty cache with one slot per layer.
    pub fn new_cache(&self) -> KvCache {
        KvCache {
            layers: vec![LayerCache::default(); self.config.layers],
        }
    }

    /// The blocks on embedded rows `x` (T x D) at positions `cache.len()..`, appending to the
    /// cache; returns the residual stream after the last block (before `ln_f`).
    pub fn blocks(
        &self,
        x: Vec<Vec<f64>>,
        cache: &mut KvCache,
    ) -> Result<Vec<Vec<f64>>, ModelError> {
        self.blocks_observed(x, cache, &mut |_, _| {})
    }

    /// [`Gpt2Model::blocks`], showing `see` each block's probes with the block's index.
    pub fn blocks_observed(
        &self,
        x: Vec<Vec<f64>>,
        cache: &mut KvCache,
        see: &mut dyn FnMut(usize, Probe),
    ) -> Result<Vec<Vec<f64>>, ModelError> {
        if cache.layers.len() != self.h.len() {
            return Err(ModelError::Input(format!(
                "a cache of {} layers for a model of {}",
                cache.layers.len(),
                self.h.len()
            )));
        }
        let mut x = x;
        for (i, (block, layer)) in self.h.iter().zip(&mut cache.layers).enumerate() {
            x = block.forward_observed(&x, layer, &mut |p| see(i, p))?;
        }
        Ok(x)
    }

    /// `ln_f`, then the LM head: V logits for each row.
    pub fn logits(&self, x: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let d = self.config.hidden;
        let head = self.lm_head.as_deref().unwrap_or(&self.wte);
        self.ln_f
            .forward(x)
            .iter()
            .map(|h| {
                head.chunks_exact(d)
                    .map(|w| w.iter().zip(h).map(|(a, b)| a * b).sum())
                    .collect()
            })
            .collect()
    }

    /// Logits (T x V) for `ids` at positions `cache.len()..`, extending the cache (prefill with
    /// an empty cache; one id per decode step).
    pub fn forward(&self, ids: &[u32], cache: &mut KvCache) -> Result<Vec<Vec<f64>>, ModelError> {
        let x = self.embed(ids, cache.len())?;
        let x = self.blocks(x, cache)?;
        Ok(self.logits(&x))
    }

    /// Greedy decoding: `max_new` tokens after `prompt` (each the argmax of the last logits,
    /// the lowest id on a tie). Errors: an empty prompt; as [`Gpt2Model::forward`] (the prompt
    /// and the new tokens must fit `n_positions`).
    pub fn generate_greedy(&self, prompt: &[u32], max_new: usize) -> Result<Vec<u32>, ModelError> {
        if prompt.is_empty() {
            return Err(ModelError::Input("an empty prompt".into()));
        }
        let last = prompt.len() + max_new.saturating_sub(1);
        if last > self.config.max_positions {
            return Err(ModelError::Input(format!(
                "{} prompt tokens and {max_new} new ones need {last} positions, more than the \
                 model's n_positions = {}",
                prompt.len(),
                self.config.max_positions
            )));
        }
        let mut cache = self.new_cache();
        let mut logits = self.forward(prompt, &mut cache)?;
        let mut out = Vec::with_capacity(max_new);
        for step in 0..max_new {
            let next = argmax(logits.last().expect("one row per token"));
            out.push(next);
            if step + 1 < max_new {
                logits = self.forward(&[next], &mut cache)?;
            }
        }
        Ok(out)
    }
}

/// The index of the largest value, the lowest index on a tie (a NaN is never chosen over a
/// number after it; logits are finite).
pub fn argmax(v: &[f64]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}
