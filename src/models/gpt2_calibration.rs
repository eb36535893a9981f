//! GPT-2's calibrated activation ranges: the plaintext model run on sample prompts (the built-in
//! sample when none is given), every value an encrypted block approximates or bootstraps
//! observed per layer, stored with a margin in `umbra-ranges.json` beside the model (format
//! [`FORMAT`]; BERT's file has its own, `calibration::FORMAT`).
//!
//! Each prompt runs through all blocks with the true causal attention, then [`CONTINUATION`]
//! greedy tokens are decoded after it with the KV cache and observed too: every position sees
//! exactly the keys it sees during generation (0..=p), and the states greedy decoding produces
//! (repetitions included, which widen score rows) are in the ranges. Measured on the generated
//! GPT-2 small: calibrated on prompts alone, 2 of 24 real prompts left a softmax interval within
//! 10 decoded tokens. Outlier features (GPT-2's residual stream has a few of very large magnitude,
//! `generate::Gpt2Arch::patch`) are covered by the residual bounds, which are the largest |x| over
//! all features; `residual_top_features` records them.

use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::calibration::{Fingerprint, Interval, FILE_NAME};
use super::gpt2::{Gpt2Model, Norm, Probe};
use super::{ModelError, Tokenizer};

/// The `format` of a GPT-2 ranges file.
pub const FORMAT: &str = "umbra-gpt2-ranges/2";

/// Greedy tokens decoded (and observed) after each calibration prompt.
pub const CONTINUATION: usize = 16;

/// A LayerNorm's input: its per-row variance and largest |x|, and its output's largest |x|.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NormRange {
    pub variance: Option<Interval>,
    pub input_abs_max: f64,
    pub output_abs_max: f64,
}

impl NormRange {
    fn see_input(&mut self, x: &[Vec<f64>]) {
        for row in x {
            let d = row.len() as f64;
            let mean = row.iter().sum::<f64>() / d;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d;
            self.variance = Some(join(self.variance, Interval::point(var)));
        }
        self.input_abs_max = self.input_abs_max.max(abs_max(x));
    }

    fn merge(&mut self, o: &Self) {
        if let Some(v) = o.variance {
            self.variance = Some(join(self.variance, v));
        }
        self.input_abs_max = self.input_abs_max.max(o.input_abs_max);
        self.output_abs_max = self.output_abs_max.max(o.output_abs_max);
    }
}

fn join(a: Option<Interval>, b: Interval) -> Interval {
    a.map_or(b, |a| a.union(&b))
}

fn abs_max(x: &[Vec<f64>]) -> f64 {
    x.iter().flatten().fold(0.0f64, |a, v| a.max(v.abs()))
}

/// One block's observations (no margin).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerRanges {
    /// `ln_1` (its input is the block's input, the residual stream).
    pub ln_1: NormRange,
    /// Largest |q|, |k|, |v|.
    pub qkv_abs_max: f64,
    /// Largest max - mean and mean - min of a score row over its visible keys (all heads).
    pub above: f64,
    pub below: f64,
    /// Largest |context| (the input of `attn.c_proj`).
    pub context_abs_max: f64,
    /// `ln_2` (input: residual + attention).
    pub ln_2: NormRange,
    /// The activation's input interval and largest |output|.
    pub activation: Option<Interval>,
    pub activation_output_abs_max: f64,
    /// Largest |x| of a branch output (attention's, the MLP's) and of the block's output.
    pub branch_abs_max: f64,
    pub output_abs_max: f64,
    /// The residual features of largest |x| at the block's output, (feature, |x|), largest first.
    pub residual_top_features: Vec<(usize, f64)>,
}

impl LayerRanges {
    fn see(&mut self, p: Probe) {
        match p {
            Probe::NormInput(Norm::Ln1, x) => self.ln_1.see_input(x),
            Probe::NormInput(Norm::Ln2, x) => self.ln_2.see_input(x),
            Probe::NormOutput(Norm::Ln1, x) => {
                self.ln_1.output_abs_max = self.ln_1.output_abs_max.max(abs_max(x))
            }
            Probe::NormOutput(Norm::Ln2, x) => {
                self.ln_2.output_abs_max = self.ln_2.output_abs_max.max(abs_max(x))
            }
            Probe::QueryKeyValue(x) => self.qkv_abs_max = self.qkv_abs_max.max(abs_max(x)),
            Probe::Scores { scores, .. } => {
                let n = scores.len() as f64;
                let mean = scores.iter().sum::<f64>() / n;
                let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let mn = scores.iter().cloned().fold(f64::INFINITY, f64::min);
                self.above = self.above.max(mx - mean);
                self.below = self.below.max(mean - mn);
            }
            Probe::Context(x) => self.context_abs_max = self.context_abs_max.max(abs_max(x)),
            Probe::BranchOutput(x) => self.branch_abs_max = self.branch_abs_max.max(abs_max(x)),
            Probe::ActivationInput(x) => {
                for v in x.iter().flatten() {
                    self.activation = Some(join(self.activation, Interval::point(*v)));
                }
            }
            Probe::ActivationOutput(x) => {
                self.activation_output_abs_max = self.activation_output_abs_max.max(abs_max(x))
            }
            Probe::Output(x) => {
                self.output_abs_max = self.output_abs_max.max(abs_max(x));
                let d = x.first().map_or(0, Vec::len);
                let per: Vec<(usize, f64)> = (0..d)
                    .map(|j| (j, x.iter().fold(0.0f64, |a, r| a.max(r[j].abs()))))
                    .collect();
                self.residual_top_features = top(merge_features(&self.residual_top_features, &per));
            }
        }
    }

    fn merge(&mut self, o: &Self) {
        self.ln_1.merge(&o.ln_1);
        self.ln_2.merge(&o.ln_2);
        self.qkv_abs_max = self.qkv_abs_max.max(o.qkv_abs_max);
        self.above = self.above.max(o.above);
        self.below = self.below.max(o.below);
        self.context_abs_max = self.context_abs_max.max(o.context_abs_max);
        if let Some(a) = o.activation {
            self.activation = Some(join(self.activation, a));
        }
        self.activation_output_abs_max = self
            .activation_output_abs_max
            .max(o.activation_output_abs_max);
        self.branch_abs_max = self.branch_abs_max.max(o.branch_abs_max);
        self.output_abs_max = self.output_abs_max.max(o.output_abs_max);
        self.residual_top_features = top(merge_features(
            &self.residual_top_features,
            &o.residual_top_features,
        ));
    }
}

/// Features kept in `residual_top_features`.
const TOP_FEATURES: usize = 8;

fn merge_features(a: &[(usize, f64)], b: &[(usize, f64)]) -> Vec<(usize, f64)> {
    let mut m: std::collections::BTreeMap<usize, f64> = a.iter().cloned().collect();
    for &(j, v) in b {
        let e = m.entry(j).or_insert(0.0);
        *e = e.max(v);
    }
    m.into_iter().collect()
}

fn top(mut v: Vec<(usize, f64)>) -> Vec<(usize, f64)> {
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(TOP_FEATURES);
    v
}

/// A GPT-2 model's calibrated ranges: the file `umbra-ranges.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Ranges {
    /// [`FORMAT`].
    pub format: String,
    pub model: Fingerprint,
    /// Where the prompts came from ("built-in sample" or the file given).
    pub source: String,
    /// Prompts run, and the longest sequence observed (prompt + continuation, tokens).
    pub prompts: usize,
    pub max_tokens: usize,
    /// Relative margin: maxima are multiplied by 1 + margin, intervals widened by it.
    pub margin: f64,
    pub layers: Vec<LayerRanges>,
    /// `ln_f` (input: the last block's output).
    pub ln_f: NormRange,
    /// The logits' interval (what an encrypted argmax normalizes by).
    pub logits: Option<Interval>,
}

/// The fingerprint of a GPT-2 directory: its shape and the SHA-256 of its `config.json` and of
/// its weights.
pub fn fingerprint(dir: &Path, model: &Gpt2Model) -> Result<Fingerprint, ModelError> {
    let path = dir.join("config.json");
    let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
    let c = &model.config;
    Ok(Fingerprint {
        hidden: c.hidden,
        layers: c.layers,
        heads: c.heads,
        intermediate: c.inner,
        config_sha256: Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        weights_sha256: super::calibration::weights_sha256(dir)?,
    })
}

impl Gpt2Ranges {
    /// Reads `dir/umbra-ranges.json` if it is this model's GPT-2 ranges file: Ok(None) when
    /// there is none or it is of another format (to recalibrate); an error when it is unreadable
    /// or belongs to another model.
    pub fn for_model(dir: &Path, model: &Fingerprint) -> Result<Option<Self>, ModelError> {
        let path = dir.join(FILE_NAME);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        let err = |reason: String| ModelError::Ranges {
            path: path.clone(),
            reason,
        };
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| err(format!("not JSON: {e}")))?;
        if v.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Ok(None);
        }
        let r: Gpt2Ranges =
            serde_json::from_value(v).map_err(|e| err(format!("not a valid ranges file: {e}")))?;
        if !r.model.same_model(model) {
            return Err(err(format!(
                "calibrated for another model (config.json sha256 {}, this one {}): run \
                 `umbra calibrate` for it",
                &r.model.config_sha256[..12.min(r.model.config_sha256.len())],
                &model.config_sha256[..12.min(model.config_sha256.len())]
            )));
        }
        Ok(Some(r))
    }

    /// Writes `dir/umbra-ranges.json`; returns its path.
    pub fn write(&self, dir: &Path) -> Result<std::path::PathBuf, ModelError> {
        let path = dir.join(FILE_NAME);
        let text = serde_json::to_string(self).expect("ranges hold only finite numbers");
        std::fs::write(&path, text + "\n").map_err(|e| ModelError::io(&path, e))?;
        Ok(path)
    }
}

/// Calibrates `model` on `prompts` (each tokenized, cut to leave room for [`CONTINUATION`]
/// tokens, run through the blocks with the true causal attention, then continued greedily with
/// the KV cache; prompts in parallel). Errors: no prompt, a
/// margin not finite >= 0, a prompt that tokenizes to nothing, the model's errors.
pub fn calibrate(
    model: &Gpt2Model,
    tokenizer: &Tokenizer,
    prompts: &[String],
    margin: f64,
    source: &str,
    fingerprint: Fingerprint,
) -> Result<Gpt2Ranges, ModelError> {
    if prompts.is_empty() {
        return Err(ModelError::Input(format!(
            "calibration needs at least one prompt ({source} has none)"
        )));
    }
    if !(margin.is_finite() && margin >= 0.0) {
        return Err(ModelError::Input(format!(
            "margin {margin}: need a finite number >= 0 (0.1 is 10%)"
        )));
    }
    let c = &model.config;
    type Run = (Vec<LayerRanges>, NormRange, Interval, usize);
    let one = |text: &String| -> Result<Run, ModelError> {
        let mut ids = tokenizer.encode(text)?.ids;
        ids.truncate(c.max_positions.saturating_sub(CONTINUATION).max(1));
        if ids.is_empty() {
            return Err(ModelError::Input(format!(
                "the prompt {text:?} has no tokens"
            )));
        }
        let mut layers = vec![LayerRanges::default(); c.layers];
        let mut ln_f = NormRange::default();
        let mut logits_seen: Option<Interval> = None;
        let mut cache = model.new_cache();
        let mut x = model.embed(&ids, 0)?;
        let mut n = ids.len();
        for step in 0..=CONTINUATION {
            let y = model.blocks_observed(x, &mut cache, &mut |i, p| layers[i].see(p))?;
            ln_f.see_input(&y);
            ln_f.output_abs_max = ln_f.output_abs_max.max(abs_max(&model.ln_f.forward(&y)));
            let logits = model.logits(&y);
            for v in logits.iter().flatten() {
                logits_seen = Some(join(logits_seen, Interval::point(*v)));
            }
            if step == CONTINUATION || n >= c.max_positions {
                break;
            }
            let next = super::gpt2::argmax(logits.last().expect("one row per token"));
            x = model.embed(&[next], n)?;
            n += 1;
        }
        Ok((layers, ln_f, logits_seen.expect("at least one row"), n))
    };
    let runs = prompts.par_iter().map(one).collect::<Result<Vec<_>, _>>()?;
    let mut layers = vec![LayerRanges::default(); c.layers];
    let mut ln_f = NormRange::default();
    let mut logits: Option<Interval> = None;
    let mut max_tokens = 0;
    for (l, f, g, n) in &runs {
        for (a, b) in layers.iter_mut().zip(l) {
            a.merge(b);
        }
        ln_f.merge(f);
        logits = Some(join(logits, *g));
        max_tokens = max_tokens.max(*n);
    }
    Ok(Gpt2Ranges {
        format: FORMAT.into(),
        model: fingerprint,
        source: source.into(),
        prompts: prompts.len(),
        max_tokens,
        margin,
        layers,
        ln_f,
        logits,
    })
}
