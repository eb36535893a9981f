//! Transformer blocks built from the layers: BERT's encoder block (post-LN) and GPT-2's block
//! (pre-LN, causal attention, GELU's tanh form), each with an f64 twin (the same packing and
//! approximations, bootstraps as identity) and the exact reference (true softmax, GELU,
//! LayerNorm).
//!
//! ```text
//! BERT:  h = LN1(x + Wo attn(x Wq, x Wk, x Wv));     y = LN2(h + W2 gelu(h W1))
//! GPT-2: x' = x + Wo attn(LN1(x) Wq, ...) (causal);  y = x' + W2 gelu(LN2(x') W1)
//! ```
//!
//! Written once against `Circuit`: on a plain evaluator it needs all its levels up front; under
//! `ckks::bootstrap::Refreshing` every stage refreshes what it consumes (`Circuit::refresh`), so
//! the block runs on the bootstrapping parameter sets, and on `Refreshing<Simulator>` the same
//! code places the bootstraps and counts the operations (the planner, `planner.rs`).

use super::approx::PolyApprox;
use super::attention::{self, AttentionOptions};
use super::chain::{add_aligned, mul_plain_down};
use super::gelu;
use super::layernorm::{self, LayerNormOptions};
use super::matmul::{linear, linear_rotations, Linear};
use super::packing::Layout;
use crate::ckks::{Circuit, CkksError};
use crate::math::fft::C64;
use crate::math::sampling::Prng;

/// Which block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum BlockKind {
    /// BERT encoder block: post-LN, bidirectional attention, GELU (erf).
    Bert,
    /// GPT-2 block: pre-LN, causal attention, GELU (tanh).
    Gpt2,
}

/// One block's weights (HF names: attention.self.{query,key,value}, attention.output.dense,
/// intermediate.dense, output.dense and the two LayerNorms; GPT-2's c_attn split in three).
#[derive(Clone, Debug)]
pub struct BlockWeights {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub ln1: (Vec<f64>, Vec<f64>),
    pub ff1: Linear,
    pub ff2: Linear,
    pub ln2: (Vec<f64>, Vec<f64>),
}

/// A standard normal sample (Box-Muller) for random weights and inputs.
pub fn gaussian(prng: &mut Prng) -> f64 {
    let u = |p: &mut Prng| ((p.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let (a, b) = (u(prng), u(prng));
    (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
}

fn random_linear(prng: &mut Prng, d_in: usize, d_out: usize, gain: f64) -> Linear {
    let s = gain / (d_in as f64).sqrt();
    let weight = (0..d_in)
        .map(|_| (0..d_out).map(|_| s * gaussian(prng)).collect())
        .collect();
    let bias = (0..d_out).map(|_| 0.02 * gaussian(prng)).collect();
    Linear { weight, bias }
}

impl BlockWeights {
    /// Random weights at the scale of trained BERT-base / GPT-2 (std ~ 1/sqrt(d_in), so unit
    /// activations stay unit; Q and K a little larger so that attention is not uniform; LayerNorm
    /// gains 1 +- 0.1). Deterministic in `seed`.
    pub fn random(hidden: usize, ffn: usize, seed: u64) -> Self {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        let mut prng = Prng::from_seed(s);
        let ln = |p: &mut Prng| -> (Vec<f64>, Vec<f64>) {
            (
                (0..hidden).map(|_| 1.0 + 0.1 * gaussian(p)).collect(),
                (0..hidden).map(|_| 0.05 * gaussian(p)).collect(),
            )
        };
        let q = random_linear(&mut prng, hidden, hidden, 1.2);
        let k = random_linear(&mut prng, hidden, hidden, 1.2);
        let v = random_linear(&mut prng, hidden, hidden, 1.0);
        let o = random_linear(&mut prng, hidden, hidden, 1.0);
        let ln1 = ln(&mut prng);
        let ff1 = random_linear(&mut prng, hidden, ffn, 1.0);
        let ff2 = random_linear(&mut prng, ffn, hidden, 1.0);
        let ln2 = ln(&mut prng);
        BlockWeights {
            q,
            k,
            v,
            o,
            ln1,
            ff1,
            ff2,
            ln2,
        }
    }

    pub fn hidden(&self) -> usize {
        self.q.d_in()
    }

    /// Errors (`Invalid`): a `Linear` failing its `validate`; Q, K, V, O not hidden x hidden, FFN
    /// weights not hidden x ffn and ffn x hidden; LayerNorm gains and biases not `hidden` finite
    /// values.
    pub fn validate(&self) -> Result<(), CkksError> {
        let (d, f) = (self.hidden(), self.ffn());
        let shapes = [
            ("q", &self.q, d, d),
            ("k", &self.k, d, d),
            ("v", &self.v, d, d),
            ("o", &self.o, d, d),
            ("ff1", &self.ff1, d, f),
            ("ff2", &self.ff2, f, d),
        ];
        for (name, lin, d_in, d_out) in shapes {
            lin.validate()?;
            if (lin.d_in(), lin.d_out()) != (d_in, d_out) {
                return Err(CkksError::Invalid(format!(
                    "{name} is {} x {}, expected {d_in} x {d_out}",
                    lin.d_in(),
                    lin.d_out()
                )));
            }
        }
        for (name, (g, b)) in [("ln1", &self.ln1), ("ln2", &self.ln2)] {
            if g.len() != d || b.len() != d || g.iter().chain(b).any(|v| !v.is_finite()) {
                return Err(CkksError::Invalid(format!(
                    "{name} needs {d} finite gains and biases, has {} and {}",
                    g.len(),
                    b.len()
                )));
            }
        }
        Ok(())
    }

    pub fn ffn(&self) -> usize {
        self.ff1.d_out()
    }
}

/// Random activations with unit variance per token (what a block sees after the embeddings'
/// LayerNorm), row-major T x D.
pub fn random_input(tokens: usize, hidden: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[31] = 1;
    let mut prng = Prng::from_seed(s);
    (0..tokens)
        .map(|_| (0..hidden).map(|_| gaussian(&mut prng)).collect())
        .collect()
}

/// |x| bounds of the four dense layers' inputs (what their bootstraps assume).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearBounds {
    /// Q, K and V's input: the block's input (BERT) or LN1's output (GPT-2).
    pub qkv: f64,
    /// The attention output's input (the context, a convex mix of V's rows).
    pub o: f64,
    /// The first FFN layer's input (LN1's output for BERT, LN2's for GPT-2).
    pub ff1: f64,
    /// The second FFN layer's input (the activation's output).
    pub ff2: f64,
}

impl LinearBounds {
    /// One bound everywhere.
    pub fn uniform(b: f64) -> Self {
        LinearBounds {
            qkv: b,
            o: b,
            ff1: b,
            ff2: b,
        }
    }

    fn all(&self) -> [f64; 4] {
        [self.qkv, self.o, self.ff1, self.ff2]
    }
}

/// A block: its kind, weights and approximations.
#[derive(Clone, Debug)]
pub struct Block {
    pub kind: BlockKind,
    pub weights: BlockWeights,
    pub attention: AttentionOptions,
    /// The first LayerNorm (BERT: after attention; GPT-2: before it).
    pub layernorm: LayerNormOptions,
    /// The second LayerNorm (BERT: after the FFN; GPT-2: before it). Its input's variance and
    /// range differ from the first's in real models (MiniLM: up to 130 against 0.9).
    pub layernorm2: LayerNormOptions,
    pub gelu: PolyApprox,
    /// |activation| <= bound on the residual stream and the Q, K, V and FFN outputs (what their
    /// bootstraps assume); the default of `bounds`.
    pub bound: f64,
    /// Per dense layer input bounds (`Block::new`: all `bound`; a calibrated model sets each).
    pub bounds: LinearBounds,
}

impl Block {
    /// Default approximations for `layout` (T tokens per input): softmax with the row mean plus
    /// 8, LayerNorm on [0.5, 2500], GELU on [-16, 16], activations within 16. Errors:
    /// `weights.validate()`, a layout whose features are not the hidden size, as
    /// `AttentionOptions::new`.
    pub fn new(
        kind: BlockKind,
        weights: BlockWeights,
        heads: usize,
        layout: &Layout,
    ) -> Result<Self, CkksError> {
        weights.validate()?;
        layout.validate()?;
        if layout.features != weights.hidden() {
            return Err(CkksError::Invalid(format!(
                "a {}-feature layout for a block of hidden size {}",
                layout.features,
                weights.hidden()
            )));
        }
        let bound = 16.0;
        let causal = kind == BlockKind::Gpt2;
        let attention = AttentionOptions::new(layout, heads, 8.0, bound, causal)?;
        let mut layernorm = LayerNormOptions::new(1e-5)?;
        layernorm.bound = bound;
        let gelu = match kind {
            BlockKind::Bert => gelu::default_erf()?,
            BlockKind::Gpt2 => gelu::default_tanh()?,
        };
        Ok(Block {
            kind,
            weights,
            attention,
            layernorm2: layernorm.clone(),
            layernorm,
            gelu,
            bound,
            bounds: LinearBounds::uniform(bound),
        })
    }

    /// Masks padding keys: only the first `n` tokens of each input are real (None: all). The real
    /// length is public to the server (docs/ARCHITECTURE.md D14). Padding *query* rows are still
    /// computed; a caller keeps them in range by padding with copies of real rows.
    pub fn set_valid_tokens(&mut self, n: Option<usize>) {
        self.attention.softmax.valid_keys = n;
    }

    /// Checks a block built or changed by hand: `BlockWeights::validate`, each layer's options,
    /// a finite positive bound, a layout whose features are the hidden size. Errors: `Invalid`.
    pub fn validate(&self, layout: &Layout) -> Result<(), CkksError> {
        self.weights.validate()?;
        self.attention.validate()?;
        self.layernorm.validate()?;
        self.layernorm2.validate()?;
        self.gelu.validate()?;
        layout.validate()?;
        let finite = |b: f64| b.is_finite() && b > 0.0;
        if !finite(self.bound) || !self.bounds.all().into_iter().all(finite) {
            return Err(CkksError::Invalid(format!(
                "block: bound {}, bounds {:?} (need finite > 0)",
                self.bound, self.bounds
            )));
        }
        if layout.features != self.weights.hidden() {
            return Err(CkksError::Invalid(format!(
                "a {}-feature layout for a block of hidden size {}",
                layout.features,
                self.weights.hidden()
            )));
        }
        Ok(())
    }

    fn linear<C: Circuit>(
        &self,
        c: &C,
        layout: &Layout,
        x: &[C::Ct],
        lin: &Linear,
        bound: f64,
    ) -> Result<Vec<C::Ct>, CkksError> {
        let x = c.refresh_all(x, 1, bound)?;
        // All inputs at one level (a refresh may have lifted only some of them).
        let l = x.iter().map(|ct| c.level(ct)).min().unwrap_or(0);
        let x = x
            .iter()
            .map(|ct| c.drop_to_level(ct, l))
            .collect::<Result<Vec<_>, _>>()?;
        linear(c, &layout.with_features(lin.d_in()), &x, lin)
    }

    fn ln<C: Circuit>(
        &self,
        c: &C,
        layout: &Layout,
        x: &[C::Ct],
        (g, b): &(Vec<f64>, Vec<f64>),
        o: &LayerNormOptions,
    ) -> Result<Vec<C::Ct>, CkksError> {
        layernorm::layernorm_in(c, layout, x, g, b, o)
    }

    /// Every ciphertext with at least two levels (bootstrapped with `bound` otherwise).
    fn refreshed<C: Circuit>(c: &C, x: &[C::Ct], bound: f64) -> Result<Vec<C::Ct>, CkksError> {
        c.refresh_all(x, 1, bound)
    }

    /// a + b, each operand bounded by `bound`. An operand at level 1 is refreshed first: aligning
    /// an off-chain scale costs a level, and a sum at level 0 could not be bootstrapped with a
    /// bound above 1 by the LayerNorm that follows.
    fn residual<C: Circuit>(
        c: &C,
        a: &[C::Ct],
        b: &[C::Ct],
        bound: f64,
    ) -> Result<Vec<C::Ct>, CkksError> {
        let ab = c.refresh_all(&[a, b].concat(), 1, bound)?;
        let (a, b) = ab.split_at(a.len());
        a.iter().zip(b).map(|(x, y)| add_aligned(c, x, y)).collect()
    }

    fn attention_branch<C: Circuit>(
        &self,
        c: &C,
        layout: &Layout,
        h: &[C::Ct],
    ) -> Result<Vec<C::Ct>, CkksError> {
        Ok(self.attention_branch_kv(c, layout, h, None)?.0)
    }

    /// The attention branch, also returning the K and V it attended over. With a cache
    /// `(K, V, p)` (decode: every row of `h` is the same token), the token's key and value
    /// replace row p of the cache and it attends to keys 0..=p.
    #[allow(clippy::type_complexity)]
    fn attention_branch_kv<C: Circuit>(
        &self,
        c: &C,
        layout: &Layout,
        h: &[C::Ct],
        cache: Option<(&[C::Ct], &[C::Ct], usize)>,
    ) -> Result<(Vec<C::Ct>, Vec<C::Ct>, Vec<C::Ct>), CkksError> {
        let (w, b) = (&self.weights, &self.bounds);
        let q = self.linear(c, layout, h, &w.q, b.qkv)?;
        let k = self.linear(c, layout, h, &w.k, b.qkv)?;
        let v = self.linear(c, layout, h, &w.v, b.qkv)?;
        let (k, v, options) = match cache {
            None => (k, v, self.attention.clone()),
            Some((ck, cv, p)) => {
                let bound = self.attention.bound;
                let k = write_row(c, layout, ck, &k, p, bound)?;
                let v = write_row(c, layout, cv, &v, p, bound)?;
                (k, v, self.decode_attention(layout, p)?)
            }
        };
        // Refreshed here rather than inside `attention_in` (same bootstraps), so that the cache
        // keeps its levels for the next decode step.
        let bound = self.attention.bound;
        let needs: Vec<usize> = k.iter().map(|_| 3).chain(v.iter().map(|_| 2)).collect();
        let kv = c.refresh_each(&[&k[..], &v[..]].concat(), &needs, bound)?;
        let (k, v) = (kv[..k.len()].to_vec(), kv[k.len()..].to_vec());
        let a = attention::attention_in(c, layout, &q, &k, &v, &options)?;
        Ok((self.linear(c, layout, &a, &w.o, b.o)?, k, v))
    }

    /// Decode's attention: one query (in every row) at position p sees keys 0..=p, not causal
    /// per row. Errors: a GPT-2 block only, p past the layout's tokens.
    fn decode_attention(&self, layout: &Layout, p: usize) -> Result<AttentionOptions, CkksError> {
        let t = layout.tokens_per_input();
        if self.kind != BlockKind::Gpt2 || layout.batch != 1 || p >= t {
            return Err(CkksError::Invalid(format!(
                "decoding position {p} with a {:?} block of {t} positions (GPT-2, no batch)",
                self.kind
            )));
        }
        let mut o = self.attention.clone();
        o.softmax.causal = false;
        // All keys visible: no mask (it costs a level).
        o.softmax.valid_keys = (p + 1 < t).then_some(p + 1);
        o.validate()?;
        Ok(o)
    }

    fn ffn_branch<C: Circuit>(
        &self,
        c: &C,
        layout: &Layout,
        h: &[C::Ct],
    ) -> Result<Vec<C::Ct>, CkksError> {
        let (w, b) = (&self.weights, &self.bounds);
        let f = self.linear(c, layout, h, &w.ff1, b.ff1)?;
        let g = self.gelu.evaluate_all(c, &f)?;
        self.linear(c, &layout.with_features(w.ffn()), &g, &w.ff2, b.ff2)
    }

    /// The encrypted block on a T x D matrix in `layout` (D = hidden). Run it under `Refreshing`
    /// (bootstrapping parameters) or with enough levels; `planner::plan` rehearses it.
    pub fn forward<C: Circuit>(
        &self,
        c: &C,
        layout: &Layout,
        x: &[C::Ct],
    ) -> Result<Vec<C::Ct>, CkksError> {
        self.validate(layout)?;
        super::packing::check_layout(c, layout, x)?;
        let w = &self.weights;
        match self.kind {
            BlockKind::Bert => {
                // Each input is refreshed once here for both of its uses (Q, K, V and the
                // residual; the FFN and the residual), not once per use.
                let x = &Self::refreshed(c, x, self.bounds.qkv)?;
                let a = self.attention_branch(c, layout, x)?;
                // |x + a| <= the LayerNorm's bound, so |a| <= that plus |x|.
                let b1 = self.layernorm.bound + self.bounds.qkv;
                let s1 = Self::residual(c, x, &a, b1)?;
                let h = self.ln(c, layout, &s1, &w.ln1, &self.layernorm)?;
                let h = Self::refreshed(c, &h, self.bounds.ff1)?;
                let f = self.ffn_branch(c, layout, &h)?;
                let b2 = self.layernorm2.bound + self.bounds.ff1;
                let y = Self::residual(c, &h, &f, b2)?;
                self.ln(c, layout, &y, &w.ln2, &self.layernorm2)
            }
            BlockKind::Gpt2 => Ok(self.gpt2_cached(c, layout, x, None)?.0),
        }
    }

    /// GPT-2 prefill: [`Block::forward`] that also returns the block's K and V (the KV cache,
    /// T x D each in `layout`; rows at or past the real length are padding, masked later).
    /// Errors: as `forward`; a BERT block.
    #[allow(clippy::type_complexity)]
    pub fn prefill<C: Circuit>(
        &self,
        c: &C,
        layout: &Layout,
        x: &[C::Ct],
    ) -> Result<(Vec<C::Ct>, Vec<C::Ct>, Vec<C::Ct>), CkksError> {
        self.gpt2_cached(c, layout, x, None)
    }

    /// GPT-2 decode of one token at position p: `x` holds that token's row in every row of
    /// `layout`; `k`, `v` are the cache (rows < p real). Returns the block's output (the token's
    /// row in every row) and the cache with row p written. Errors: as `forward`; a BERT block,
    /// p at or past the layout's tokens, a cache of another shape.
    #[allow(clippy::type_complexity)]
    pub fn decode<C: Circuit>(
        &self,
        c: &C,
        layout: &Layout,
        x: &[C::Ct],
        k: &[C::Ct],
        v: &[C::Ct],
        p: usize,
    ) -> Result<(Vec<C::Ct>, Vec<C::Ct>, Vec<C::Ct>), CkksError> {
        super::packing::check_layout(c, layout, k)?;
        super::packing::check_layout(c, layout, v)?;
        self.gpt2_cached(c, layout, x, Some((k, v, p)))
    }

    #[allow(clippy::type_complexity)]
    fn gpt2_cached<C: Circuit>(
        &self,
        c: &C,
        layout: &Layout,
        x: &[C::Ct],
        cache: Option<(&[C::Ct], &[C::Ct], usize)>,
    ) -> Result<(Vec<C::Ct>, Vec<C::Ct>, Vec<C::Ct>), CkksError> {
        self.validate(layout)?;
        super::packing::check_layout(c, layout, x)?;
        if self.kind != BlockKind::Gpt2 {
            return Err(CkksError::Invalid(
                "a KV cache is GPT-2's (a BERT block has none)".into(),
            ));
        }
        let w = &self.weights;
        let h = self.ln(c, layout, x, &w.ln1, &self.layernorm)?;
        let (a, k, v) = self.attention_branch_kv(c, layout, &h, cache)?;
        let x2 = Self::residual(c, x, &a, 2.0 * self.bound)?;
        let h2 = self.ln(c, layout, &x2, &w.ln2, &self.layernorm2)?;
        let f = self.ffn_branch(c, layout, &h2)?;
        Ok((Self::residual(c, &x2, &f, 2.0 * self.bound)?, k, v))
    }

    /// The twin of [`Block::prefill`] (p = None) and [`Block::decode`] (`cache` = (K, V, p)).
    #[allow(clippy::type_complexity)]
    pub fn twin_cached(
        &self,
        layout: &Layout,
        x: &[Vec<f64>],
        cache: Option<(&[Vec<f64>], &[Vec<f64>], usize)>,
    ) -> Result<(Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<Vec<f64>>), CkksError> {
        self.validate(layout)?;
        if self.kind != BlockKind::Gpt2 {
            return Err(CkksError::Invalid(
                "a KV cache is GPT-2's (a BERT block has none)".into(),
            ));
        }
        let (w, bd) = (&self.weights, &self.bounds);
        let check = super::chain::check_bound_twin;
        let lin = |x: &[Vec<f64>], l: &Linear| linear_twin(layout, x, l);
        let add = add_rows;
        let res = 2.0 * self.bound;
        check("residual stream", x, res)?;
        let h = layernorm::layernorm_twin(layout, x, &w.ln1.0, &w.ln1.1, &self.layernorm)?;
        check("Q/K/V input", &h, bd.qkv)?;
        let (q, k, v) = (lin(&h, &w.q)?, lin(&h, &w.k)?, lin(&h, &w.v)?);
        let (k, v, options) = match cache {
            None => (k, v, self.attention.clone()),
            Some((ck, cv, p)) => (
                write_row_twin(layout, ck, &k, p)?,
                write_row_twin(layout, cv, &v, p)?,
                self.decode_attention(layout, p)?,
            ),
        };
        let a = attention::attention_twin(layout, &q, &k, &v, &options)?;
        check("attention context", &a, bd.o)?;
        let a = lin(&a, &w.o)?;
        check("attention output", &a, res)?;
        let x2 = add(x, &a);
        check("residual stream", &x2, res)?;
        let h2 = layernorm::layernorm_twin(layout, &x2, &w.ln2.0, &w.ln2.1, &self.layernorm2)?;
        check("feed-forward input", &h2, bd.ff1)?;
        let f = lin(&h2, &w.ff1)?;
        let g = gelu::gelu_twin(&layout.with_features(w.ffn()), &f, &self.gelu)?;
        check("activation output", &g, bd.ff2)?;
        let f = lin(&g, &w.ff2)?;
        check("feed-forward output", &f, res)?;
        Ok((add(&x2, &f), k, v))
    }

    /// The f64 twin on slot vectors (same packing and approximations; bootstraps are identity).
    /// `OutOfRange` when an activation leaves an approximation's interval.
    pub fn twin(&self, layout: &Layout, x: &[Vec<f64>]) -> Result<Vec<Vec<f64>>, CkksError> {
        self.validate(layout)?;
        let w = &self.weights;
        let bd = &self.bounds;
        let check = super::chain::check_bound_twin;
        let lin = |x: &[Vec<f64>], l: &Linear| linear_twin(layout, x, l);
        let add = add_rows;
        let ln = |x: &[Vec<f64>], (g, b): &(Vec<f64>, Vec<f64>), o: &LayerNormOptions| {
            layernorm::layernorm_twin(layout, x, g, b, o)
        };
        let (o1, o2) = (&self.layernorm, &self.layernorm2);
        let attn = |h: &[Vec<f64>]| -> Result<Vec<Vec<f64>>, CkksError> {
            check("Q/K/V input", h, bd.qkv)?;
            let (q, k, v) = (lin(h, &w.q)?, lin(h, &w.k)?, lin(h, &w.v)?);
            let a = attention::attention_twin(layout, &q, &k, &v, &self.attention)?;
            check("attention context", &a, bd.o)?;
            lin(&a, &w.o)
        };
        let ffn = |h: &[Vec<f64>]| -> Result<Vec<Vec<f64>>, CkksError> {
            check("feed-forward input", h, bd.ff1)?;
            let f = lin(h, &w.ff1)?;
            let g = gelu::gelu_twin(&layout.with_features(w.ffn()), &f, &self.gelu)?;
            check("activation output", &g, bd.ff2)?;
            lin(&g, &w.ff2)
        };
        match self.kind {
            BlockKind::Bert => {
                let h = ln(&add(x, &attn(x)?), &w.ln1, o1)?;
                ln(&add(&h, &ffn(&h)?), &w.ln2, o2)
            }
            BlockKind::Gpt2 => Ok(self.twin_cached(layout, x, None)?.0),
        }
    }

    /// The exact block on a row-major T x D matrix (true softmax, GELU and LayerNorm); `tin`
    /// tokens per input. Errors: `BlockWeights::validate`, rows not of D values, no rows, T not a
    /// multiple of `tin`, heads not dividing D.
    pub fn exact(&self, x: &[Vec<f64>], tin: usize) -> Result<Vec<Vec<f64>>, CkksError> {
        self.weights.validate()?;
        let (d, heads) = (self.weights.hidden(), self.attention.heads);
        if x.is_empty() || tin == 0 || x.len() % tin != 0 || heads == 0 || d % heads != 0 {
            return Err(CkksError::Invalid(format!(
                "exact block: {} rows in inputs of {tin} tokens, {heads} heads of {d} features",
                x.len()
            )));
        }
        let w = &self.weights;
        let add = add_rows;
        let ln = |x: &[Vec<f64>], (g, b): &(Vec<f64>, Vec<f64>), o: &LayerNormOptions| {
            layernorm::layernorm_exact(x, g, b, o.eps)
        };
        let (o1, o2) = (&self.layernorm, &self.layernorm2);
        let causal = self.kind == BlockKind::Gpt2;
        let valid = self.attention.softmax.valid_keys.unwrap_or(tin);
        let attn = |h: &[Vec<f64>]| -> Result<Vec<Vec<f64>>, CkksError> {
            let a = attention::attention_exact_valid(
                &w.q.twin(h)?,
                &w.k.twin(h)?,
                &w.v.twin(h)?,
                heads,
                tin,
                causal,
                valid,
            );
            w.o.twin(&a)
        };
        let ffn = |h: &[Vec<f64>]| w.ff2.twin(&gelu::gelu_exact(&w.ff1.twin(h)?, &self.gelu));
        Ok(match self.kind {
            BlockKind::Bert => {
                let h = ln(&add(x, &attn(x)?), &w.ln1, o1);
                ln(&add(&h, &ffn(&h)?), &w.ln2, o2)
            }
            BlockKind::Gpt2 => {
                let x2 = add(x, &attn(&ln(x, &w.ln1, o1))?);
                add(&x2, &ffn(&ln(&x2, &w.ln2, o2))?)
            }
        })
    }

    /// Rotation keys the block needs (besides bootstrapping's).
    pub fn rotations(&self, layout: &Layout) -> Result<Vec<i64>, CkksError> {
        let (d, f) = (self.weights.hidden(), self.weights.ffn());
        let mut r = linear_rotations(layout, d, d);
        r.extend(linear_rotations(layout, d, f));
        r.extend(linear_rotations(layout, f, d));
        r.extend(attention::rotations(layout, self.attention.heads)?);
        r.extend(layernorm::rotations(layout));
        r.retain(|&x| x.rem_euclid(layout.slots() as i64) != 0);
        r.sort_unstable();
        r.dedup();
        Ok(r)
    }
}

/// The 0/1 slot mask of token row `p` (of each input) in `layout`'s ciphertexts.
fn row_mask(layout: &Layout, p: usize) -> Vec<C64> {
    let (t, tin) = (layout.tokens, layout.tokens_per_input());
    (0..layout.slots())
        .map(|s| C64::new(if (s % t) % tin == p { 1.0 } else { 0.0 }, 0.0))
        .collect()
}

/// `cache` with token row p replaced by `new`'s row p: cache (1 - m_p) + new m_p, one level
/// below the lower of the two (each refreshed with `bound` first when at level 0).
fn write_row<C: Circuit>(
    c: &C,
    layout: &Layout,
    cache: &[C::Ct],
    new: &[C::Ct],
    p: usize,
    bound: f64,
) -> Result<Vec<C::Ct>, CkksError> {
    if cache.len() != new.len() {
        return Err(CkksError::Invalid(format!(
            "a cache of {} ciphertexts for rows of {}",
            cache.len(),
            new.len()
        )));
    }
    let keep = row_mask(layout, p);
    let put: Vec<C64> = keep.iter().map(|m| C64::new(m.re, 0.0)).collect();
    let keep: Vec<C64> = keep.iter().map(|m| C64::new(1.0 - m.re, 0.0)).collect();
    cache
        .iter()
        .zip(new)
        .map(|(old, row)| {
            let old = mul_plain_down(c, &c.refresh(old, 1, bound)?, &keep)?;
            let row = mul_plain_down(c, &c.refresh(row, 1, bound)?, &put)?;
            add_aligned(c, &old, &row)
        })
        .collect()
}

/// The twin of `write_row`.
fn write_row_twin(
    layout: &Layout,
    cache: &[Vec<f64>],
    new: &[Vec<f64>],
    p: usize,
) -> Result<Vec<Vec<f64>>, CkksError> {
    super::packing::check_slots(layout, cache)?;
    super::packing::check_slots(layout, new)?;
    let m = row_mask(layout, p);
    Ok(cache
        .iter()
        .zip(new)
        .map(|(old, row)| {
            old.iter()
                .zip(row)
                .zip(&m)
                .map(|((o, r), m)| if m.re == 1.0 { *r } else { *o })
                .collect()
        })
        .collect())
}

/// Row-wise a + b (the twins' and the exact block's residual connections).
fn add_rows(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    a.iter()
        .zip(b)
        .map(|(u, v)| u.iter().zip(v).map(|(p, q)| p + q).collect())
        .collect()
}

/// A dense layer's twin on slot vectors of `layout` (unpack, X W + b, pack).
fn linear_twin(layout: &Layout, x: &[Vec<f64>], l: &Linear) -> Result<Vec<Vec<f64>>, CkksError> {
    let li = layout.with_features(l.d_in());
    let y = l.twin(&li.unpack(x)?)?;
    li.with_features(l.d_out()).pack(&y)
}
