//! GPT-2 on ciphertexts: encrypted prefill and token-by-token decoding with an encrypted KV cache
//! held by the server, `ln_f` and the LM head; its f64 twin runs the same packing and
//! approximations. Every block is an `nn::block::Block` (GPT-2 kind) sized from the model's
//! calibrated ranges ([`Gpt2Ranges`], the same [`Margins`] as BERT's encoder).
//!
//! The split (issue 14):
//! - client: tokenize the prompt, embed it (wte + wpe) in the clear ([`EncryptedGpt2::prompt_rows`]),
//!   pack T x D, encrypt;
//! - server, prefill ([`EncryptedGpt2::prefill`]): every block on the prompt, keeping each
//!   layer's K and V (the cache), then the last real row's logits;
//! - client: decrypt the logits ([`EncryptedGpt2::read_logits`]), pick the next token, embed it at
//!   its position ([`EncryptedGpt2::token_rows`]), encrypt;
//! - server, decode ([`EncryptedGpt2::decode`]): the token through every block, writing its key
//!   and value into row p of each layer's cache and attending to keys 0..=p, then its logits.
//!
//! **Packing (both phases use the prompt's layout).** The cache stays in the feature-major T x D
//! layout the prefill produced it in (no transposition, T = the window: prompt + new tokens,
//! rounded up to a power of two), and a decoded token fills *every* row of its input: its Q
//! meets each cached key in the diagonal-order attention, its K and V land in row p by a 0/1
//! mask, and the LM head reads T different logits out of each feature block's T copies
//! (`nn::lm_head`: ceil(V / slots) logit ciphertexts, 2 for GPT-2 small). The price: a decode
//! step costs what a prefill block costs (its dense layers see T rows); a one-token packing for
//! the dense layers is the next step (docs/ARCHITECTURE.md D17).
//!
//! **Padding.** The server learns the prompt length n and masks keys >= n with a plaintext mask.
//! The client pads with copies of the *last* real row: a padding query then sees exactly the keys
//! the last real token sees (causal + mask), so it computes what that token computes and stays in
//! the calibrated ranges.

use super::bert::LayerNorm;
use super::encrypted::{gelu_on, Margins, DIRECT_ABOVE, GELU_ABS, LAYERNORM_BITS};
use super::gpt2::Gpt2Model;
use super::gpt2_calibration::{Gpt2Ranges, LayerRanges, NormRange};
use super::ModelError;
use crate::ckks::{Circuit, CkksError};
use crate::nn::argmax::{self, ArgmaxOptions};
use crate::nn::attention::AttentionOptions;
use crate::nn::block::{Block, BlockKind, LinearBounds};
use crate::nn::layernorm::{self, LayerNormOptions};
use crate::nn::lm_head;
use crate::nn::matmul::Linear;
use crate::nn::softmax::SoftmaxOptions;
use crate::nn::Layout;

fn bad(m: String) -> ModelError {
    ModelError::Input(m)
}

fn nn(e: CkksError) -> ModelError {
    ModelError::Layer(e)
}

/// Names the layer in an `OutOfRange` error.
fn in_layer(i: usize) -> impl Fn(CkksError) -> ModelError {
    move |e| match e {
        CkksError::OutOfRange(m) => nn(CkksError::OutOfRange(format!("layer {i}: {m}"))),
        other => nn(other),
    }
}

/// One layer's KV cache on ciphertexts: K and V, T x D each in the model's layout.
#[derive(Clone, Debug)]
pub struct LayerKv<Ct> {
    pub k: Vec<Ct>,
    pub v: Vec<Ct>,
}

/// Called after each layer of a server step with (layers done, their output, the cache).
pub type StepHook<'a, Ct> = dyn FnMut(usize, &[Ct], &[LayerKv<Ct>]) -> Result<(), ModelError> + 'a;

/// The largest value seen, widened; an error when calibration saw nothing there.
fn widened(v: f64, margin: f64, what: &str, layer: usize) -> Result<f64, ModelError> {
    if !(v.is_finite() && v > 0.0) {
        return Err(bad(format!(
            "the ranges file has no {what} for layer {layer}: recalibrate (umbra calibrate)"
        )));
    }
    Ok(v * (1.0 + margin))
}

fn norm_options(
    r: &NormRange,
    mg: &Margins,
    eps: f64,
    what: &str,
    layer: usize,
) -> Result<LayerNormOptions, ModelError> {
    let var = r.variance.ok_or_else(|| {
        bad(format!(
            "the ranges file saw no {what} in layer {layer}: recalibrate"
        ))
    })?;
    let w = 1.0 + mg.variance;
    let mut o =
        LayerNormOptions::with_interval(var.min / w + eps, var.max * w + eps, eps, LAYERNORM_BITS)
            .map_err(nn)?;
    o.bound = widened(r.input_abs_max, mg.bound, what, layer)?;
    Ok(o)
}

/// The block of layer `i`, sized from its ranges (module docs of `encrypted.rs` for the rules).
fn layer_block(
    model: &Gpt2Model,
    i: usize,
    r: &LayerRanges,
    mg: &Margins,
    layout: &Layout,
) -> Result<Block, ModelError> {
    let c = &model.config;
    let weights = model.h[i].block_weights();
    let mut block = Block::new(BlockKind::Gpt2, weights, c.heads, layout).map_err(nn)?;
    let m = mg.bound;
    // Softmax (causal).
    if r.above <= 0.0 && r.below <= 0.0 {
        return Err(bad(format!(
            "the ranges file saw no attention scores in layer {i}: recalibrate"
        )));
    }
    let above = r.above * (1.0 + mg.above);
    let range = ((r.above + r.below) * (1.0 + mg.exp_range))
        .max(above + r.below)
        .max(2.0 * DIRECT_ABOVE);
    let mut rounds = 0u32;
    while above / 2f64.powi(rounds as i32) > DIRECT_ABOVE {
        rounds += 1;
    }
    let qkv = widened(r.qkv_abs_max, m, "query/key/value", i)?;
    let tin = layout.tokens_per_input();
    let mut attention =
        AttentionOptions::new(layout, c.heads, DIRECT_ABOVE, qkv, true).map_err(nn)?;
    attention.softmax =
        SoftmaxOptions::attention_calibrated(tin, c.heads, above, range, rounds, true)
            .map_err(nn)?;
    attention.validate().map_err(nn)?;
    block.attention = attention;
    // LayerNorms.
    let eps = c.layer_norm_eps;
    block.layernorm = norm_options(&r.ln_1, mg, eps, "ln_1 input", i)?;
    block.layernorm2 = norm_options(&r.ln_2, mg, eps, "ln_2 input", i)?;
    // GELU.
    let seen = r.activation.ok_or_else(|| {
        bad(format!(
            "the ranges file saw no activation input in layer {i}"
        ))
    })?;
    let (a, b) = (
        seen.min - (mg.gelu * seen.min.abs()).max(GELU_ABS),
        seen.max + (mg.gelu * seen.max.abs()).max(GELU_ABS),
    );
    block.gelu = gelu_on(c.activation, a, b)?;
    let gelu_out = a.abs().max(b.abs()).max(1.0);
    block.bounds = LinearBounds {
        qkv: widened(r.ln_1.output_abs_max, m, "ln_1 output", i)?,
        o: widened(r.context_abs_max, m, "attention context", i)?,
        ff1: widened(r.ln_2.output_abs_max, m, "ln_2 output", i)?,
        ff2: gelu_out,
    };
    // The residual refreshes assume 2 bound for every operand (x, x2, the branches, y).
    let residual = r
        .ln_1
        .input_abs_max
        .max(r.ln_2.input_abs_max)
        .max(r.branch_abs_max)
        .max(r.output_abs_max);
    block.bound = widened(residual, m, "residual stream", i)? / 2.0;
    block.validate(layout).map_err(nn)?;
    Ok(block)
}

/// GPT-2 on ciphertexts at a window of T tokens.
#[derive(Clone, Debug)]
pub struct EncryptedGpt2 {
    /// T x D in the feature-major layout.
    pub layout: Layout,
    pub blocks: Vec<Block>,
    /// `ln_f`'s weights and options (interval and input bound from calibration).
    pub ln_f: LayerNorm,
    pub ln_f_options: LayerNormOptions,
    /// The LM head, D x V (`wte` transposed when tied).
    pub head: Linear,
    /// |x| bound of `ln_f`'s output (the head's input bootstrap).
    pub head_bound: f64,
    /// |x| bound of the last block's output (the replication's bootstrap at prefill).
    pub output_bound: f64,
    /// The encrypted argmax over the vocabulary (`--argmax`): logits within the calibrated
    /// bound, decided when the top one leads by [`ARGMAX_GAP`].
    pub argmax: ArgmaxOptions,
}

/// GPT-2's softmax shift margin (BERT's is 0.25): decoding after real prompts meets score rows
/// wider than calibration saw (the generated GPT-2 small, 24 pyjokes prompts x 10 tokens, the
/// ranges with continuations: one row 0.5 past max - mean x 1.25 in layer 2, i.e. x 1.4). A wider
/// shift costs precision: at x 2 the twin's logit error grew from 0.0034 to 0.17 of the logits'
/// standard deviation (top-1 agreement 0.9875).
pub const ABOVE_MARGIN: f64 = 0.5;

/// The lead (logit units) the encrypted argmax resolves; closer logits are ties (all marked,
/// the lowest id taken: `nn::argmax` module docs).
pub const ARGMAX_GAP: f64 = 0.25;

impl EncryptedGpt2 {
    /// The model at a window of `tokens` positions (prompt + new tokens; a power of two at most
    /// n_positions) in ciphertexts of `max_slots` slots, sized from `ranges` (this model's:
    /// checked by the caller). Errors: a window past n_positions, a shape the ring cannot hold,
    /// ranges of another shape or without the statistics needed.
    pub fn new(
        model: &Gpt2Model,
        ranges: &Gpt2Ranges,
        tokens: usize,
        max_slots: usize,
    ) -> Result<Self, ModelError> {
        let c = &model.config;
        if tokens > c.max_positions {
            return Err(bad(format!(
                "a window of {tokens} tokens is past the model's n_positions = {}",
                c.max_positions
            )));
        }
        if ranges.layers.len() != c.layers {
            return Err(bad(format!(
                "the ranges file has {} layers, the model {}",
                ranges.layers.len(),
                c.layers
            )));
        }
        let layout = Layout::new(tokens, c.hidden, max_slots).map_err(nn)?;
        crate::nn::attention::head_dim(&layout, c.heads).map_err(nn)?;
        let mut mg = Margins::with_file_margin(ranges.margin);
        mg.above = mg.above.max(ABOVE_MARGIN);
        let blocks = ranges
            .layers
            .iter()
            .enumerate()
            .map(|(i, r)| layer_block(model, i, r, &mg, &layout))
            .collect::<Result<Vec<_>, _>>()?;
        let last = c.layers;
        let ln_f_options = norm_options(&ranges.ln_f, &mg, c.layer_norm_eps, "ln_f input", last)?;
        let head_bound = widened(ranges.ln_f.output_abs_max, mg.bound, "ln_f output", last)?;
        let output_bound = ln_f_options.bound;
        let d = c.hidden;
        let table = model.lm_head.as_deref().unwrap_or(&model.wte);
        let weight = (0..d)
            .map(|k| (0..c.vocab).map(|v| table[v * d + k]).collect())
            .collect();
        let head = Linear::new(weight, vec![0.0; c.vocab]).map_err(nn)?;
        let logits = ranges
            .logits
            .ok_or_else(|| bad("the ranges file has no logits: recalibrate".into()))?;
        let bound = widened(
            logits.min.abs().max(logits.max.abs()),
            mg.bound,
            "logits",
            last,
        )?;
        let argmax = ArgmaxOptions::new(bound, ARGMAX_GAP.min(bound), 12.0).map_err(nn)?;
        Ok(EncryptedGpt2 {
            layout,
            blocks,
            ln_f: model.ln_f.clone(),
            ln_f_options,
            head,
            head_bound,
            output_bound,
            argmax,
        })
    }

    /// T, the window.
    pub fn tokens(&self) -> usize {
        self.layout.tokens
    }

    /// Logit ciphertexts per step.
    pub fn logit_cts(&self) -> usize {
        lm_head::head_cts(&self.layout, self.head.d_out())
    }

    /// The client's T x D rows for a prompt of n ids (1..=T): wte + wpe of each, then copies of
    /// the last (module docs). Errors: an empty prompt or longer than T, the model's errors.
    pub fn prompt_rows(&self, model: &Gpt2Model, ids: &[u32]) -> Result<Vec<Vec<f64>>, ModelError> {
        let t = self.tokens();
        if ids.is_empty() || ids.len() > t {
            return Err(bad(format!(
                "a prompt of {} tokens in a window of {t}",
                ids.len()
            )));
        }
        let e = model.embed(ids, 0)?;
        let last = e[e.len() - 1].clone();
        Ok((0..t).map(|i| e.get(i).unwrap_or(&last).clone()).collect())
    }

    /// The client's rows for one new token at position p: its wte + wpe in every row. Errors: p
    /// outside the window, the model's errors.
    pub fn token_rows(
        &self,
        model: &Gpt2Model,
        id: u32,
        p: usize,
    ) -> Result<Vec<Vec<f64>>, ModelError> {
        if p >= self.tokens() {
            return Err(bad(format!(
                "position {p} is outside the window of {} tokens",
                self.tokens()
            )));
        }
        let row = model.embed(&[id], p)?.remove(0);
        Ok(vec![row; self.tokens()])
    }

    /// Slot vectors of T x D rows (what the client encrypts).
    pub fn pack(&self, rows: &[Vec<f64>]) -> Result<Vec<Vec<f64>>, ModelError> {
        self.layout.pack(rows).map_err(nn)
    }

    /// V logits from the decrypted logit slot vectors.
    pub fn read_logits(&self, slots: &[Vec<f64>]) -> Result<Vec<f64>, ModelError> {
        lm_head::read_logits(&self.layout, self.head.d_out(), slots).map_err(nn)
    }

    fn prefill_blocks(&self, n: usize) -> Result<Vec<Block>, ModelError> {
        if n == 0 || n > self.tokens() {
            return Err(bad(format!(
                "a prompt of {n} tokens in a window of {}",
                self.tokens()
            )));
        }
        let valid = (n < self.tokens()).then_some(n);
        Ok(self
            .blocks
            .iter()
            .map(|b| {
                let mut b = b.clone();
                b.set_valid_tokens(valid);
                b
            })
            .collect())
    }

    fn check_step(&self, p: usize, cache_layers: usize) -> Result<(), ModelError> {
        if cache_layers != self.blocks.len() {
            return Err(bad(format!(
                "a cache of {cache_layers} layers for a model of {}",
                self.blocks.len()
            )));
        }
        if p == 0 || p >= self.tokens() {
            return Err(bad(format!(
                "decoding position {p}: positions 1..{} follow a prompt in a window of {}",
                self.tokens(),
                self.tokens()
            )));
        }
        Ok(())
    }

    /// `ln_f` and the LM head on rows that all hold one token.
    fn head<C: Circuit>(&self, c: &C, x: &[C::Ct]) -> Result<Vec<C::Ct>, CkksError> {
        let (g, b) = (&self.ln_f.gamma, &self.ln_f.beta);
        let h = layernorm::layernorm_in(c, &self.layout, x, g, b, &self.ln_f_options)?;
        let h = c.refresh_all(&h, 1, self.head_bound)?;
        lm_head::lm_head(c, &self.layout, &h, &self.head)
    }

    fn head_twin(&self, x: &[Vec<f64>]) -> Result<Vec<Vec<f64>>, CkksError> {
        let (g, b) = (&self.ln_f.gamma, &self.ln_f.beta);
        let h = layernorm::layernorm_twin(&self.layout, x, g, b, &self.ln_f_options)?;
        crate::nn::chain::check_bound_twin("ln_f output", &h, self.head_bound)?;
        lm_head::lm_head_twin(&self.layout, &h, &self.head)
    }

    /// Server: the prompt's n real tokens (packed by [`EncryptedGpt2::prompt_rows`]) through every
    /// block; returns the last real token's logit ciphertexts and the KV cache. `progress` is
    /// called after each layer. Errors: n outside 1..=T, the circuit's.
    #[allow(clippy::type_complexity)]
    pub fn prefill<C: Circuit>(
        &self,
        c: &C,
        x: &[C::Ct],
        n: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(Vec<C::Ct>, Vec<LayerKv<C::Ct>>), ModelError> {
        self.prefill_from(c, x.to_vec(), Vec::new(), n, &mut |i, _, _| {
            progress(i - 1);
            Ok(())
        })
    }

    /// [`EncryptedGpt2::prefill`] resumed after `cache.len()` layers, `h` their output;
    /// `after(layers_done, h, cache)` sees the state after each layer (a checkpoint can be written
    /// there; its error stops the step). Errors: as `prefill`, a cache deeper than the model.
    #[allow(clippy::type_complexity)]
    pub fn prefill_from<C: Circuit>(
        &self,
        c: &C,
        mut h: Vec<C::Ct>,
        mut cache: Vec<LayerKv<C::Ct>>,
        n: usize,
        after: &mut StepHook<'_, C::Ct>,
    ) -> Result<(Vec<C::Ct>, Vec<LayerKv<C::Ct>>), ModelError> {
        let blocks = self.prefill_blocks(n)?;
        if cache.len() > blocks.len() {
            return Err(bad(format!(
                "resuming a prefill after {} layers of a model of {}",
                cache.len(),
                blocks.len()
            )));
        }
        for b in &blocks[cache.len()..] {
            let (y, k, v) = b.prefill(c, &self.layout, &h).map_err(nn)?;
            cache.push(LayerKv { k, v });
            h = y;
            after(cache.len(), &h, &cache)?;
        }
        let h = c.refresh_all(&h, 1, self.output_bound).map_err(nn)?;
        let h = lm_head::replicate_row(c, &self.layout, &h, n - 1).map_err(nn)?;
        Ok((self.head(c, &h).map_err(nn)?, cache))
    }

    /// Server: one token at position p (packed by [`EncryptedGpt2::token_rows`]) through every
    /// block with the cache (row p of each layer written); returns its logit ciphertexts.
    /// Errors: p outside 1..T, a cache of another depth, the circuit's.
    pub fn decode<C: Circuit>(
        &self,
        c: &C,
        x: &[C::Ct],
        cache: &mut [LayerKv<C::Ct>],
        p: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<C::Ct>, ModelError> {
        self.decode_from(c, x.to_vec(), 0, cache, p, &mut |i, _, _| {
            progress(i - 1);
            Ok(())
        })
    }

    /// [`EncryptedGpt2::decode`] resumed after `start` layers (`cache`'s first `start` layers
    /// already hold row p, `h` their output); `after` as in [`EncryptedGpt2::prefill_from`].
    /// Errors: as `decode`, `start` past the model's depth.
    pub fn decode_from<C: Circuit>(
        &self,
        c: &C,
        mut h: Vec<C::Ct>,
        start: usize,
        cache: &mut [LayerKv<C::Ct>],
        p: usize,
        after: &mut StepHook<'_, C::Ct>,
    ) -> Result<Vec<C::Ct>, ModelError> {
        self.check_step(p, cache.len())?;
        if start > self.blocks.len() {
            return Err(bad(format!(
                "resuming a decode step after {start} layers of a model of {}",
                self.blocks.len()
            )));
        }
        for i in start..self.blocks.len() {
            let kv = &cache[i];
            let (y, k, v) = self.blocks[i]
                .decode(c, &self.layout, &h, &kv.k, &kv.v, p)
                .map_err(nn)?;
            cache[i] = LayerKv { k, v };
            h = y;
            after(i + 1, &h, cache)?;
        }
        self.head(c, &h).map_err(nn)
    }

    /// The twin of [`EncryptedGpt2::prefill`] on the client's rows: the logits (V values) and
    /// the cache as slot vectors. `OutOfRange` names the layer.
    #[allow(clippy::type_complexity)]
    pub fn prefill_twin(
        &self,
        rows: &[Vec<f64>],
        n: usize,
    ) -> Result<(Vec<f64>, Vec<LayerKv<Vec<f64>>>), ModelError> {
        let blocks = self.prefill_blocks(n)?;
        let mut x = self.pack(rows)?;
        let mut cache = Vec::with_capacity(blocks.len());
        for (i, b) in blocks.iter().enumerate() {
            let (y, k, v) = b.twin_cached(&self.layout, &x, None).map_err(in_layer(i))?;
            cache.push(LayerKv { k, v });
            x = y;
        }
        crate::nn::chain::check_bound_twin("last block output", &x, self.output_bound)
            .map_err(nn)?;
        let x = lm_head::replicate_row_twin(&self.layout, &x, n - 1).map_err(nn)?;
        let slots = self.head_twin(&x).map_err(nn)?;
        Ok((self.read_logits(&slots)?, cache))
    }

    /// The twin of [`EncryptedGpt2::decode`]: the token's logits; the cache updated.
    pub fn decode_twin(
        &self,
        rows: &[Vec<f64>],
        cache: &mut [LayerKv<Vec<f64>>],
        p: usize,
    ) -> Result<Vec<f64>, ModelError> {
        self.check_step(p, cache.len())?;
        let mut x = self.pack(rows)?;
        for (i, (b, kv)) in self.blocks.iter().zip(cache.iter_mut()).enumerate() {
            let (y, k, v) = b
                .twin_cached(&self.layout, &x, Some((&kv.k, &kv.v, p)))
                .map_err(in_layer(i))?;
            *kv = LayerKv { k, v };
            x = y;
        }
        let slots = self.head_twin(&x).map_err(nn)?;
        self.read_logits(&slots)
    }

    /// Server: the encrypted argmax of logit ciphertexts (one 0/1 vector per ciphertext, 1 at the
    /// chosen token). Errors: the circuit's.
    pub fn argmax<C: Circuit>(&self, c: &C, logits: &[C::Ct]) -> Result<Vec<C::Ct>, ModelError> {
        argmax::argmax_multi(c, logits, self.head.d_out(), &self.argmax).map_err(nn)
    }

    /// The twin of [`EncryptedGpt2::argmax`] on V logits: the 0/1 values of the first V slots.
    /// `OutOfRange` when a logit is past the calibrated bound.
    pub fn argmax_twin(&self, logits: &[f64]) -> Result<Vec<f64>, ModelError> {
        let s = self.layout.slots();
        let mut flat = logits.to_vec();
        flat.resize(self.logit_cts() * s, 0.0);
        let slots: Vec<Vec<f64>> = flat.chunks(s).map(<[f64]>::to_vec).collect();
        let out = argmax::argmax_multi_twin(&slots, logits.len(), &self.argmax).map_err(nn)?;
        Ok(out.concat()[..logits.len()].to_vec())
    }

    /// The client's reading of the decrypted argmax: the lowest id marked (> 1/2). Errors: no id
    /// marked (logits past the calibrated bound).
    pub fn read_choice(&self, slots: &[Vec<f64>]) -> Result<u32, ModelError> {
        let v = self.read_logits(slots)?;
        v.iter()
            .position(|&x| x > 0.5)
            .map(|i| i as u32)
            .ok_or_else(|| {
                bad(
                    "the encrypted argmax marked no token (logits past the calibrated bound?)"
                        .into(),
                )
            })
    }

    /// Rotation keys the server needs besides bootstrapping's: a block's (decode needs no
    /// others: masks cost levels, not rotations), the row replication's, the LM head's and the
    /// argmax's.
    pub fn rotations(&self) -> Result<Vec<i64>, ModelError> {
        let mut r = Vec::new();
        if let Some(b) = self.blocks.first() {
            r.extend(b.rotations(&self.layout).map_err(nn)?);
        }
        r.extend(lm_head::replicate_rotations(&self.layout));
        r.extend(lm_head::lm_head_rotations(&self.layout));
        r.extend(argmax::rotations(self.layout.slots()));
        r.extend(layernorm::rotations(&self.layout));
        let s = self.layout.slots() as i64;
        r.retain(|&x| x.rem_euclid(s) != 0);
        r.sort_unstable();
        r.dedup();
        Ok(r)
    }
}
