//! A BERT encoder on ciphertexts: every `BertLayer` as an `nn::block::Block` whose approximation
//! intervals, softmax shift and bootstrap bounds come from the model's calibrated ranges
//! (`umbra-ranges.json`, [`Ranges`]), then mean pooling over the real tokens; its f64 twin runs
//! the same packing and approximations.
//!
//! The split (issue 13, docs/ARCHITECTURE.md D14):
//! - client: tokenize, embed in the clear ([`EncryptedEncoder::client_rows`]), pack T x D into
//!   the feature-major layout, encrypt;
//! - server: [`EncryptedEncoder::forward`] (all layers, then [`EncryptedEncoder::pool`]);
//! - client: decrypt, read the pooled vector ([`EncryptedEncoder::read_pooled`]), L2-normalize
//!   when the model says so.
//!
//! **Padding.** The server learns T (the padded count) and the real length n, which it needs to
//! mask padding keys with a plaintext mask (no level, no key). The client pads with *copies of
//! real rows* (row t >= n is row t mod n): with padding keys masked, a copied query row computes
//! exactly what its original computes in every layer, so padding rows stay inside the calibrated
//! ranges of real rows. Hiding n would take an encrypted mask (one more level per softmax and an
//! encrypted pooling weight); not done here.
//!
//! **Sizing from calibration** (observed values widened by [`Margins`]: the file's margin, more
//! where widening is cheap):
//! - softmax: shift = row mean + `above` (the largest max - mean over real rows and heads); exp
//!   covers `above` + the largest mean - min; `rounds` normalized squarings (HETAL) so that the
//!   first row sums lie in [e^(-above / 2^rounds), T] with above / 2^rounds <= [`DIRECT_ABOVE`];
//! - LayerNorms: 1/sqrt on the observed variance (+ eps) of each LayerNorm's real rows;
//! - GELU: a Chebyshev interpolant on the observed input interval, of the lowest degree in
//!   {30, 62, 126, 254} that errs by at most [`GELU_TOLERANCE`];
//! - bootstrap bounds: the largest |x| observed at each site (Q/K/V, context, LayerNorm inputs and
//!   outputs, the activation's output).

use super::bert::{BertModel, Layer, Site};
use super::calibration::{Interval, LayerStats, Ranges, ValueStats};
use super::config::Activation;
use super::sentence::{Pooling, SentenceConfig};
use super::{Encoding, ModelError};
use crate::ckks::{Circuit, CkksError};
use crate::math::fft::C64;
use crate::nn::approx::{gelu_erf_exact, gelu_tanh_exact, PolyApprox};
use crate::nn::attention::AttentionOptions;
use crate::nn::block::{Block, BlockKind, BlockWeights, LinearBounds};
use crate::nn::chain::mul_plain_down;
use crate::nn::layernorm::LayerNormOptions;
use crate::nn::softmax::SoftmaxOptions;
use crate::nn::Layout;

/// Normalized squarings are added until above / 2^rounds is at most this: the first row sums
/// then lie in [e^-8, T], the interval the default softmax's inverse handles in 6 levels.
pub const DIRECT_ABOVE: f64 = 8.0;
/// Largest |gelu - polynomial| accepted on the calibrated interval.
pub const GELU_TOLERANCE: f64 = 1e-4;
/// Relative precision of the inverse square roots (bits).
pub(crate) const LAYERNORM_BITS: f64 = 24.0;

/// How far each calibrated quantity is widened beyond what calibration saw: at least the ranges
/// file's margin, and more where widening is cheap. Measured on MiniLM (120+ real sentences
/// against a calibration on the 40-sentence built-in sample): with the file's 10% alone, 1 in 5
/// sentences left an interval (GELU inputs by 25%, score spans by 5%, LayerNorm variances by
/// 20%). Polynomial intervals cost only degree or squarings to widen, the inverse square root
/// one Newton step per factor of ~4, a softmax shift a little of exp's precision; bootstrap
/// bounds cost precision in proportion, so they get the least.
#[derive(Clone, Copy, Debug)]
pub struct Margins {
    /// GELU's input interval (each end, relative), and at least `GELU_ABS` absolute.
    pub gelu: f64,
    /// exp's range (above + below).
    pub exp_range: f64,
    /// The softmax shift `above`.
    pub above: f64,
    /// LayerNorm variance intervals: [min / (1 + v), max (1 + v)].
    pub variance: f64,
    /// Bootstrap bounds (largest |x| at each site).
    pub bound: f64,
}

/// The floors of [`Margins`] (each is raised to the ranges file's margin when that is larger).
pub const MARGIN_FLOORS: Margins = Margins {
    gelu: 0.5,
    exp_range: 0.5,
    above: 0.25,
    variance: 1.0,
    bound: 0.25,
};
/// GELU's interval reaches at least this far beyond what calibration saw.
pub(crate) const GELU_ABS: f64 = 2.0;

impl Margins {
    /// The floors, each raised to `file_margin`.
    pub fn with_file_margin(file_margin: f64) -> Self {
        let f = MARGIN_FLOORS;
        Margins {
            gelu: f.gelu.max(file_margin),
            exp_range: f.exp_range.max(file_margin),
            above: f.above.max(file_margin),
            variance: f.variance.max(file_margin),
            bound: f.bound.max(file_margin),
        }
    }
}

/// The encoder on ciphertexts of one model at T tokens.
#[derive(Clone, Debug)]
pub struct EncryptedEncoder {
    /// T x D in the feature-major layout.
    pub layout: Layout,
    /// One block per encoder layer.
    pub blocks: Vec<Block>,
    /// Real tokens of the input being run (None until [`EncryptedEncoder::set_length`]).
    pub length: Option<usize>,
    /// L2-normalize the pooled vector (client side).
    pub normalize: bool,
    /// |x| bound of the last layer's output (the pooling's bootstrap).
    pub output_bound: f64,
}

fn bad(m: String) -> ModelError {
    ModelError::Input(m)
}

fn nn(e: CkksError) -> ModelError {
    ModelError::Layer(e)
}

/// The largest |x| a site saw, widened by the margin; an error when calibration saw nothing.
fn abs_bound(v: &ValueStats, margin: f64, what: &str, layer: usize) -> Result<f64, ModelError> {
    let m = v.feature_abs_max.iter().fold(0.0f64, |a, &b| a.max(b));
    if m <= 0.0 || !m.is_finite() {
        return Err(bad(format!(
            "the ranges file has no {what} for layer {layer}: recalibrate (umbra calibrate)"
        )));
    }
    Ok(m * (1.0 + margin))
}

fn real<'a>(i: &'a Option<Interval>, what: &str, layer: usize) -> Result<&'a Interval, ModelError> {
    i.as_ref().ok_or_else(|| {
        bad(format!(
            "the ranges file saw no real rows for layer {layer}'s {what}: recalibrate"
        ))
    })
}

/// The lowest degree in {30, 62, 126, 254} within [`GELU_TOLERANCE`] on [a, b].
pub(crate) fn gelu_on(act: Activation, a: f64, b: f64) -> Result<PolyApprox, ModelError> {
    let (name, f): (&'static str, fn(f64) -> f64) = match act {
        Activation::GeluErf => ("gelu_erf", gelu_erf_exact),
        Activation::GeluTanh => ("gelu_tanh", gelu_tanh_exact),
    };
    let mut last = None;
    for d in [30, 62, 126, 254] {
        let p = PolyApprox::new(name, f, a, b, d).map_err(nn)?;
        if p.max_error() <= GELU_TOLERANCE {
            return Ok(p);
        }
        last = Some(p);
    }
    Ok(last.expect("four degrees tried"))
}

/// The block of one layer, sized from its statistics (module docs). `input_bound`: |x| of the
/// layer's input.
fn layer_block(
    layer: &Layer,
    stats: &LayerStats,
    mg: &Margins,
    layout: &Layout,
    model: &BertModel,
    index: usize,
    input_bound: f64,
) -> Result<Block, ModelError> {
    let c = &model.config;
    let sa = &layer.attention.self_attention;
    let ln = |l: &super::bert::LayerNorm| (l.gamma.clone(), l.beta.clone());
    let weights = BlockWeights {
        q: sa.query.clone(),
        k: sa.key.clone(),
        v: sa.value.clone(),
        o: layer.attention.output.dense.clone(),
        ln1: ln(&layer.attention.output.layer_norm),
        ff1: layer.intermediate.dense.clone(),
        ff2: layer.output.dense.clone(),
        ln2: ln(&layer.output.layer_norm),
    };
    let mut block = Block::new(BlockKind::Bert, weights, c.heads, layout).map_err(nn)?;
    let margin = mg.bound;
    // Softmax.
    let spans: Vec<(f64, f64)> = stats
        .scores
        .iter()
        .filter_map(|h| h.real.as_ref().map(|s| (s.above, s.below)))
        .collect();
    if spans.is_empty() {
        return Err(bad(format!(
            "the ranges file saw no attention scores in layer {index}: recalibrate"
        )));
    }
    let above_seen = spans.iter().fold(0.0f64, |a, s| a.max(s.0));
    let below_seen = spans.iter().fold(0.0f64, |a, s| a.max(s.1));
    let above = above_seen * (1.0 + mg.above);
    let range = ((above_seen + below_seen) * (1.0 + mg.exp_range)).max(above + below_seen);
    let range = range.max(2.0 * DIRECT_ABOVE);
    let mut rounds = 0u32;
    while above / 2f64.powi(rounds as i32) > DIRECT_ABOVE {
        rounds += 1;
    }
    let tin = layout.tokens_per_input();
    let qkv = abs_bound(&stats.query_key_value, margin, "query/key/value", index)?;
    let softmax = SoftmaxOptions::attention_calibrated(tin, c.heads, above, range, rounds, false)
        .map_err(nn)?;
    let mut attention =
        AttentionOptions::new(layout, c.heads, DIRECT_ABOVE, qkv, false).map_err(nn)?;
    attention.softmax = softmax;
    attention.validate().map_err(nn)?;
    block.attention = attention;
    // LayerNorms.
    let eps = c.layer_norm_eps;
    let norm = |v: &Option<Interval>, input: &ValueStats, what: &str| {
        let var = real(v, what, index)?;
        let w = 1.0 + mg.variance;
        let (a, b) = (var.min / w + eps, var.max * w + eps);
        let mut o = LayerNormOptions::with_interval(a, b, eps, LAYERNORM_BITS).map_err(nn)?;
        o.bound = abs_bound(input, margin, what, index)?;
        Ok::<_, ModelError>(o)
    };
    let an = &stats.attention_norm;
    let on = &stats.output_norm;
    block.layernorm = norm(&an.variance.real, &an.input, "attention LayerNorm input")?;
    block.layernorm2 = norm(&on.variance.real, &on.input, "output LayerNorm input")?;
    // GELU on the observed input interval.
    let seen = real(&stats.activation.range.real, "activation input", index)?;
    let act = Interval {
        min: seen.min - (mg.gelu * seen.min.abs()).max(GELU_ABS),
        max: seen.max + (mg.gelu * seen.max.abs()).max(GELU_ABS),
    };
    block.gelu = gelu_on(c.activation, act.min, act.max)?;
    let gelu_out = act.max.abs().max(act.min.abs()).max(1.0);
    block.bounds = LinearBounds {
        qkv: input_bound,
        o: abs_bound(&stats.context, margin, "attention context", index)?,
        ff1: abs_bound(&stats.attention_output, margin, "attention output", index)?,
        ff2: gelu_out,
    };
    block.bound = block.bounds.qkv.max(block.bounds.ff1);
    block.validate(layout).map_err(nn)?;
    Ok(block)
}

impl EncryptedEncoder {
    /// The encoder of `model` at `tokens` tokens in ciphertexts of `max_slots` slots, sized from
    /// `ranges` (which must be this model's: checked by the caller with
    /// `Ranges::ensure_model`). Errors: pooling other than mean, an activation other than GELU,
    /// a ranges file without the statistics needed (an older calibration), a shape the ring
    /// cannot hold (too many tokens), a classification head (not supported encrypted yet).
    pub fn new(
        model: &BertModel,
        sentence: &SentenceConfig,
        ranges: &Ranges,
        tokens: usize,
        max_slots: usize,
    ) -> Result<Self, ModelError> {
        if sentence.pooling != Pooling::Mean {
            return Err(bad(format!(
                "pooling {:?}: the encrypted encoder pools by the mean",
                sentence.pooling
            )));
        }
        if model.classifier.is_some() {
            return Err(bad(
                "a classification head: the encrypted encoder runs the encoder and mean pooling \
                 only (BertModel or a sentence-transformers model)"
                    .into(),
            ));
        }
        let c = &model.config;
        if ranges.observed.layers.len() != c.layers {
            return Err(bad(format!(
                "the ranges file has {} layers, the model {}",
                ranges.observed.layers.len(),
                c.layers
            )));
        }
        let layout = Layout::new(tokens, c.hidden, max_slots).map_err(nn)?;
        crate::nn::attention::head_dim(&layout, c.heads).map_err(nn)?;
        let mg = Margins::with_file_margin(ranges.margin);
        let margin = mg.bound;
        let mut input_bound = abs_bound(&ranges.observed.embeddings, margin, "embeddings", 0)?;
        let mut blocks = Vec::with_capacity(c.layers);
        for (i, (layer, stats)) in model
            .encoder
            .layers
            .iter()
            .zip(&ranges.observed.layers)
            .enumerate()
        {
            blocks.push(layer_block(
                layer,
                stats,
                &mg,
                &layout,
                model,
                i,
                input_bound,
            )?);
            input_bound = abs_bound(stats.site(Site::Output), margin, "layer output", i)?;
        }
        Ok(EncryptedEncoder {
            layout,
            blocks,
            length: None,
            normalize: sentence.normalize,
            output_bound: input_bound,
        })
    }

    /// Tokens per input (T).
    pub fn tokens(&self) -> usize {
        self.layout.tokens
    }

    /// Sets the real length n of the input to run (1..=T): padding keys are masked and the
    /// pooling averages the first n rows. Errors: n = 0 or n > T.
    pub fn set_length(&mut self, n: usize) -> Result<(), ModelError> {
        if n == 0 || n > self.tokens() {
            return Err(bad(format!(
                "a sequence of {n} real tokens in {} positions",
                self.tokens()
            )));
        }
        self.length = Some(n);
        // No padding: no key mask (it costs a level in each softmax's row mean).
        let valid = (n < self.tokens()).then_some(n);
        for b in &mut self.blocks {
            b.set_valid_tokens(valid);
        }
        Ok(())
    }

    fn length(&self) -> Result<usize, ModelError> {
        self.length
            .ok_or_else(|| bad("the input's length is not set (set_length)".into()))
    }

    /// The client's T x D rows for an encoding of exactly T tokens: the embeddings (word +
    /// position + token type, LayerNorm) of the real tokens, each padding row a copy of a real
    /// row (module docs), and the real length n. Errors: an encoding of another length, no real
    /// token, real tokens after padding.
    pub fn client_rows(
        &self,
        model: &BertModel,
        encoding: &Encoding,
    ) -> Result<(Vec<Vec<f64>>, usize), ModelError> {
        let t = self.tokens();
        if encoding.len() != t {
            return Err(bad(format!(
                "an encoding of {} tokens for an encoder of {t}",
                encoding.len()
            )));
        }
        let n = encoding.real_tokens();
        if n == 0 || encoding.attention_mask[..n].iter().any(|&m| m == 0) {
            return Err(bad(
                "the attention mask must be n ones then zeros (right padding)".into(),
            ));
        }
        let e = model
            .embeddings
            .forward(&encoding.ids[..n], &encoding.type_ids[..n])?;
        let rows = (0..t).map(|i| e[i % n].clone()).collect();
        Ok((rows, n))
    }

    /// Slot vectors of the client's rows (what it encrypts). Errors: rows not T x D.
    pub fn pack(&self, rows: &[Vec<f64>]) -> Result<Vec<Vec<f64>>, ModelError> {
        self.layout.pack(rows).map_err(nn)
    }

    /// The server's work on the packed input: every layer, then [`EncryptedEncoder::pool`].
    /// `progress` is called after each layer with its index. Errors: the length not set, the
    /// circuit's (levels, keys, backend faults).
    pub fn forward<C: Circuit>(
        &self,
        c: &C,
        x: &[C::Ct],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<C::Ct>, ModelError> {
        self.length()?;
        let mut h = x.to_vec();
        for (i, b) in self.blocks.iter().enumerate() {
            h = b.forward(c, &self.layout, &h).map_err(nn)?;
            progress(i);
        }
        self.pool(c, &h)
    }

    /// Mean pooling over the first n tokens: each ciphertext times 1/n on the real token slots
    /// (one level), then rotations by 1, 2, ..., T/2 add up each feature's T slots into its first
    /// slot (slot j T of ciphertext c holds feature c F + j's mean).
    pub fn pool<C: Circuit>(&self, c: &C, h: &[C::Ct]) -> Result<Vec<C::Ct>, ModelError> {
        let n = self.length()?;
        let (t, f) = (self.layout.tokens, self.layout.per_ct);
        let w: Vec<C64> = (0..t * f)
            .map(|s| C64::new(if s % t < n { 1.0 / n as f64 } else { 0.0 }, 0.0))
            .collect();
        h.iter()
            .map(|ct| {
                let ct = c.refresh(ct, 1, self.output_bound)?;
                let mut acc = mul_plain_down(c, &ct, &w)?;
                let mut step = 1;
                while step < t {
                    acc = c.add(&acc, &c.rotate(&acc, step as i64)?)?;
                    step *= 2;
                }
                Ok(acc)
            })
            .collect::<Result<Vec<_>, CkksError>>()
            .map_err(nn)
    }

    /// The client's reading of the decrypted pooled slot vectors: D values (feature c F + j at
    /// slot j T of vector c). Errors: the wrong number or length of vectors.
    pub fn read_pooled(&self, slots: &[Vec<f64>]) -> Result<Vec<f64>, ModelError> {
        let l = &self.layout;
        if slots.len() != l.cts() || slots.iter().any(|v| v.len() < l.slots()) {
            return Err(bad(format!(
                "{} decrypted vectors, expected {} of {} slots",
                slots.len(),
                l.cts(),
                l.slots()
            )));
        }
        Ok((0..l.features)
            .map(|j| slots[j / l.per_ct][(j % l.per_ct) * l.tokens])
            .collect())
    }

    /// The f64 twin of [`EncryptedEncoder::forward`] and the pooling on the client's rows: the
    /// pooled vector (D values). `ModelError::Layer(CkksError::OutOfRange)`, naming the layer,
    /// when an activation leaves its calibrated interval.
    pub fn twin(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, ModelError> {
        let n = self.length()?;
        let mut x = self.pack(rows)?;
        for (i, b) in self.blocks.iter().enumerate() {
            x = b.twin(&self.layout, &x).map_err(|e| match e {
                CkksError::OutOfRange(m) => nn(CkksError::OutOfRange(format!("layer {i}: {m}"))),
                other => nn(other),
            })?;
        }
        let y = self.layout.unpack(&x).map_err(nn)?;
        let d = self.layout.features;
        let mut pooled = vec![0.0; d];
        for row in &y[..n] {
            for (p, v) in pooled.iter_mut().zip(row) {
                *p += v / n as f64;
            }
        }
        Ok(pooled)
    }

    /// Rotation keys the server needs besides bootstrapping's: the blocks' and the pooling's.
    pub fn rotations(&self) -> Result<Vec<i64>, ModelError> {
        let mut r = Vec::new();
        for b in self.blocks.iter().take(1) {
            r.extend(b.rotations(&self.layout).map_err(nn)?);
        }
        let mut step = 1;
        while step < self.layout.tokens {
            r.push(step as i64);
            step *= 2;
        }
        r.retain(|&x| x.rem_euclid(self.layout.slots() as i64) != 0);
        r.sort_unstable();
        r.dedup();
        Ok(r)
    }
}
