//! Activation ranges of one model, measured on sample text in plaintext: what the encrypted
//! layers' approximation intervals, shifts and bootstrap bounds are sized from (issue 13), and the
//! check that tells when an input leaves them.
//!
//! [`calibrate`] runs [`BertModel::forward_observed`] on every sample sentence padded to T tokens
//! and accumulates, per encoder layer ([`LayerStats`]):
//! - per head, over the *visible* keys of each query row (mask 1), the row's max - mean and mean -
//!   min of the scaled scores q.k/sqrt(d_h), and the softmax row sum after a row-mean shift,
//!   sum_u exp(s_u - mean) (>= the number of visible keys, by Jensen; a shift of mean + a divides
//!   it by e^a), real and padding query rows apart;
//! - for both LayerNorms, the variance of their input rows (real and padding rows apart) and, per
//!   feature, the largest |x| of that input (the residual stream, whose few outlier features set
//!   the bootstrap bound);
//! - the activation's (GELU's) input range and its largest |x| per feature;
//!
//! and, before the encoder, the embeddings LayerNorm's output range and per-feature |x|.
//!
//! [`Ranges`] holds those raw observations ([`Observations`]) and, separately, the relative
//! margin that widens them into the calibrated intervals ([`Interval::widened`]), so both stay
//! visible. It is versioned JSON (`"format": "umbra-ranges/2"`) in the model directory
//! (`umbra-ranges.json`), tied to the model by a [`Fingerprint`] of its `config.json`: a file of
//! another model is refused. [`Ranges::check`] compares the observations of one input with the
//! calibrated intervals and lists every [`Violation`].

use super::bert::{LayerProbe, Norm, Probe, Site};
use super::{BertConfig, Embedder, ModelError};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};

/// The `format` field of a ranges file this version reads and writes.
pub const FORMAT: &str = "umbra-ranges/2";
/// The ranges file's name in a model directory.
pub const FILE_NAME: &str = "umbra-ranges.json";
/// The default relative margin (10%).
pub const DEFAULT_MARGIN: f64 = 0.10;

/// What ties a ranges file, a key or a ciphertext file to its model: the shape of `config.json`,
/// the SHA-256 of its bytes and the SHA-256 of the weights (two checkpoints of one architecture,
/// e.g. two fine-tunes, share a config byte for byte but not their weights).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    /// Lower-case hex SHA-256 of `config.json` as stored.
    pub config_sha256: String,
    /// Lower-case hex SHA-256 of the `*.safetensors` files in name order ([`weights_sha256`]);
    /// empty in files written before it was recorded (then only the rest is compared).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub weights_sha256: String,
}

/// The SHA-256 of a model directory's weights: every `*.safetensors` file, in name order, read
/// in 1 MiB pieces (about a second for GPT-2 small's 498 MB). Errors: an unreadable directory
/// or file.
pub fn weights_sha256(dir: &Path) -> Result<String, ModelError> {
    use std::io::Read;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for f in &files {
        let mut r = std::fs::File::open(f).map_err(|e| ModelError::io(f, e))?;
        loop {
            let n = r.read(&mut buf).map_err(|e| ModelError::io(f, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

impl Fingerprint {
    /// Whether `self` and `other` name one model: the same shape, config and (where both
    /// recorded them) weights.
    pub fn same_model(&self, other: &Fingerprint) -> bool {
        let weights = self.weights_sha256.is_empty()
            || other.weights_sha256.is_empty()
            || self.weights_sha256 == other.weights_sha256;
        weights
            && (self.hidden, self.layers, self.heads, self.intermediate)
                == (other.hidden, other.layers, other.heads, other.intermediate)
            && self.config_sha256 == other.config_sha256
    }

    /// The fingerprint of the model directory `dir` (reads and validates `dir/config.json`).
    pub fn of_dir(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join("config.json");
        let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
        let text = String::from_utf8_lossy(&bytes);
        let c = BertConfig::from_json(&text, &path.display().to_string())?;
        let mut f = Self::of_config(&c, &bytes);
        f.weights_sha256 = weights_sha256(dir)?;
        Ok(f)
    }

    /// The fingerprint of `config`, parsed from `config_json`.
    pub fn of_config(config: &BertConfig, config_json: &[u8]) -> Self {
        let hash = Sha256::digest(config_json);
        Fingerprint {
            hidden: config.hidden,
            layers: config.layers,
            heads: config.heads,
            intermediate: config.intermediate,
            config_sha256: hash.iter().map(|b| format!("{b:02x}")).collect(),
            weights_sha256: String::new(),
        }
    }
}

/// A closed interval [min, max] of observed values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub min: f64,
    pub max: f64,
}

impl Interval {
    /// [v, v].
    pub fn point(v: f64) -> Self {
        Interval { min: v, max: v }
    }

    /// The smallest interval holding `values` (None when empty).
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut it = values.iter();
        let first = Self::point(*it.next()?);
        Some(it.fold(first, |i, &v| i.union(&Self::point(v))))
    }

    pub fn union(&self, o: &Self) -> Self {
        Interval {
            min: self.min.min(o.min),
            max: self.max.max(o.max),
        }
    }

    /// [min - margin |min|, max + margin |max|]: the calibrated interval of the observed one.
    pub fn widened(&self, margin: f64) -> Self {
        Interval {
            min: self.min - margin * self.min.abs(),
            max: self.max + margin * self.max.abs(),
        }
    }

    /// min <= v <= max (false for NaN).
    pub fn contains(&self, v: f64) -> bool {
        self.min <= v && v <= self.max
    }

    /// Whether `o` lies inside.
    pub fn covers(&self, o: &Self) -> bool {
        self.contains(o.min) && self.contains(o.max)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "[{}, {}]", sig(self.min), sig(self.max))
    }
}

/// Four significant digits, for messages and summaries.
fn sig(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else {
        format!("{}", (v * 1e4).round() / 1e4)
    }
}

/// Which query or token rows: real ones (mask 1) or padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rows {
    Real,
    Padding,
}

impl fmt::Display for Rows {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Rows::Real => "real rows",
            Rows::Padding => "padding rows",
        })
    }
}

/// A statistic kept apart for real and padding rows; None where no such row was seen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Split<T> {
    pub real: Option<T>,
    pub padding: Option<T>,
}

impl<T> Default for Split<T> {
    fn default() -> Self {
        Split {
            real: None,
            padding: None,
        }
    }
}

impl<T> Split<T> {
    fn get(&self, rows: Rows) -> Option<&T> {
        match rows {
            Rows::Real => self.real.as_ref(),
            Rows::Padding => self.padding.as_ref(),
        }
    }

    fn slot(&mut self, rows: Rows) -> &mut Option<T> {
        match rows {
            Rows::Real => &mut self.real,
            Rows::Padding => &mut self.padding,
        }
    }
}

/// Statistics that combine (observations of two inputs into those of both).
trait Merge {
    fn merge(&mut self, o: &Self);
}

impl Merge for Interval {
    fn merge(&mut self, o: &Self) {
        *self = self.union(o);
    }
}

impl<T: Merge + Clone> Merge for Option<T> {
    fn merge(&mut self, o: &Self) {
        match (self.as_mut(), o) {
            (_, None) => {}
            (None, Some(v)) => *self = Some(v.clone()),
            (Some(s), Some(v)) => s.merge(v),
        }
    }
}

impl<T: Merge + Clone> Merge for Split<T> {
    fn merge(&mut self, o: &Self) {
        self.real.merge(&o.real);
        self.padding.merge(&o.padding);
    }
}

/// Per-feature maxima: elementwise max.
impl Merge for Vec<f64> {
    fn merge(&mut self, o: &Self) {
        for (a, b) in self.iter_mut().zip(o) {
            *a = a.max(*b);
        }
    }
}

impl<T: Merge> Merge for Vec<T> {
    fn merge(&mut self, o: &Self) {
        for (a, b) in self.iter_mut().zip(o) {
            a.merge(b);
        }
    }
}

/// One head's scores over the query rows of one kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadScores {
    /// The largest max - mean of a row (over its visible keys): what `Shift::RowMean { above }`
    /// must be at least.
    pub above: f64,
    /// The largest mean - min of a row: with `above`, the span exp's interval must cover.
    pub below: f64,
    /// sum_u exp(s_u - mean) over the visible keys u of a row: the softmax row sum after a
    /// row-mean shift (>= the visible key count; divided by e^a under a shift of mean + a).
    pub row_sum: Interval,
}

impl HeadScores {
    /// One row's statistics (None for a row without visible keys).
    fn row(s: &[f64]) -> Option<Self> {
        let range = Interval::of(s)?;
        let mean = s.iter().sum::<f64>() / s.len() as f64;
        let sum = s.iter().map(|x| (x - mean).exp()).sum::<f64>();
        Some(HeadScores {
            above: range.max - mean,
            below: mean - range.min,
            row_sum: Interval::point(sum),
        })
    }
}

impl Merge for HeadScores {
    fn merge(&mut self, o: &Self) {
        self.above = self.above.max(o.above);
        self.below = self.below.max(o.below);
        self.row_sum.merge(&o.row_sum);
    }
}

/// Values of a T x W matrix: their range (real and padding rows apart) and the largest |x| of
/// each of the W features over all rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValueStats {
    pub range: Split<Interval>,
    /// W values, >= 0.
    pub feature_abs_max: Vec<f64>,
}

impl ValueStats {
    fn new(width: usize) -> Self {
        ValueStats {
            range: Split::default(),
            feature_abs_max: vec![0.0; width],
        }
    }

    fn observe(&mut self, x: &[Vec<f64>], mask: &[u32]) {
        for (row, rows) in x.iter().zip(kinds(mask)) {
            self.range.slot(rows).merge(&Interval::of(row));
            for (m, v) in self.feature_abs_max.iter_mut().zip(row) {
                *m = m.max(v.abs());
            }
        }
    }

    /// The feature with the largest |x| and that value (None for 0 features).
    pub fn top_feature(&self) -> Option<(usize, f64)> {
        self.top_features(1).first().copied()
    }

    /// The `n` features with the largest |x|, largest first.
    pub fn top_features(&self, n: usize) -> Vec<(usize, f64)> {
        let mut f: Vec<(usize, f64)> = self.feature_abs_max.iter().copied().enumerate().collect();
        f.sort_by(|a, b| b.1.total_cmp(&a.1));
        f.truncate(n);
        f
    }
}

impl Merge for ValueStats {
    fn merge(&mut self, o: &Self) {
        self.range.merge(&o.range);
        self.feature_abs_max.merge(&o.feature_abs_max);
    }
}

/// A LayerNorm's input rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NormStats {
    /// Population variance of a row over its D features (what var + eps of the inverse square
    /// root sees, eps aside).
    pub variance: Split<Interval>,
    pub input: ValueStats,
}

impl NormStats {
    fn new(width: usize) -> Self {
        NormStats {
            variance: Split::default(),
            input: ValueStats::new(width),
        }
    }

    fn observe(&mut self, x: &[Vec<f64>], mask: &[u32]) {
        for (row, rows) in x.iter().zip(kinds(mask)) {
            let d = row.len() as f64;
            let m = row.iter().sum::<f64>() / d;
            let var = row.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / d;
            self.variance.slot(rows).merge(&Some(Interval::point(var)));
        }
        self.input.observe(x, mask);
    }
}

impl Merge for NormStats {
    fn merge(&mut self, o: &Self) {
        self.variance.merge(&o.variance);
        self.input.merge(&o.input);
    }
}

/// One encoder layer's observations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerStats {
    /// Per head (H entries).
    pub scores: Vec<Split<HeadScores>>,
    /// `attention.output.LayerNorm`'s input (D features).
    pub attention_norm: NormStats,
    /// `output.LayerNorm`'s input (D features).
    pub output_norm: NormStats,
    /// The activation's input (F features).
    pub activation: ValueStats,
    /// The query, key and value projections together (D features).
    pub query_key_value: ValueStats,
    /// The attention context before `attention.output.dense` (D features).
    pub context: ValueStats,
    /// `attention.output.LayerNorm`'s output (D features).
    pub attention_output: ValueStats,
    /// `output.LayerNorm`'s output, the layer's output (D features).
    pub output: ValueStats,
}

impl Merge for LayerStats {
    fn merge(&mut self, o: &Self) {
        self.scores.merge(&o.scores);
        self.attention_norm.merge(&o.attention_norm);
        self.output_norm.merge(&o.output_norm);
        self.activation.merge(&o.activation);
        self.query_key_value.merge(&o.query_key_value);
        self.context.merge(&o.context);
        self.attention_output.merge(&o.attention_output);
        self.output.merge(&o.output);
    }
}

impl LayerStats {
    /// The statistics of a [`Site`].
    pub fn site(&self, site: Site) -> &ValueStats {
        match site {
            Site::QueryKeyValue => &self.query_key_value,
            Site::Context => &self.context,
            Site::AttentionOutput => &self.attention_output,
            Site::Output => &self.output,
        }
    }

    fn site_mut(&mut self, site: Site) -> &mut ValueStats {
        match site {
            Site::QueryKeyValue => &mut self.query_key_value,
            Site::Context => &mut self.context,
            Site::AttentionOutput => &mut self.attention_output,
            Site::Output => &mut self.output,
        }
    }

    fn norm(&self, n: Norm) -> &NormStats {
        match n {
            Norm::Attention => &self.attention_norm,
            Norm::Output => &self.output_norm,
        }
    }

    /// The largest `above` and `below` over heads, for `rows` (None when no such row was seen).
    pub fn score_span(&self, rows: Rows) -> Option<(f64, f64)> {
        self.scores
            .iter()
            .filter_map(|h| h.get(rows))
            .map(|h| (h.above, h.below))
            .reduce(|a, b| (a.0.max(b.0), a.1.max(b.1)))
    }

    /// The union of the heads' softmax row sums for `rows`.
    pub fn row_sum(&self, rows: Rows) -> Option<Interval> {
        self.scores
            .iter()
            .filter_map(|h| h.get(rows))
            .map(|h| h.row_sum)
            .reduce(|a, b| a.union(&b))
    }
}

/// The raw observations of one or more inputs (no margin).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observations {
    /// Inputs observed.
    pub inputs: usize,
    /// Real (mask 1) token rows observed, over all inputs.
    pub real_tokens: usize,
    /// Padding rows observed, over all inputs.
    pub padding_tokens: usize,
    /// The embeddings LayerNorm's output (D features): the encoder's input.
    pub embeddings: ValueStats,
    pub layers: Vec<LayerStats>,
}

impl Observations {
    /// Nothing observed yet, shaped for `config`.
    pub fn new(config: &BertConfig) -> Self {
        let layer = LayerStats {
            scores: vec![Split::default(); config.heads],
            attention_norm: NormStats::new(config.hidden),
            output_norm: NormStats::new(config.hidden),
            activation: ValueStats::new(config.intermediate),
            query_key_value: ValueStats::new(config.hidden),
            context: ValueStats::new(config.hidden),
            attention_output: ValueStats::new(config.hidden),
            output: ValueStats::new(config.hidden),
        };
        Observations {
            inputs: 0,
            real_tokens: 0,
            padding_tokens: 0,
            embeddings: ValueStats::new(config.hidden),
            layers: vec![layer; config.layers],
        }
    }

    /// Takes one probe of an input whose attention mask is `mask` (length T). Probes of layers
    /// or heads outside the shape are ignored. Call [`Observations::count`] once per input.
    pub fn observe(&mut self, mask: &[u32], probe: Probe) {
        match probe {
            Probe::Embeddings(x) => self.embeddings.observe(x, mask),
            Probe::Layer { layer, probe } => {
                let Some(l) = self.layers.get_mut(layer) else {
                    return;
                };
                match probe {
                    LayerProbe::Scores {
                        head,
                        query,
                        scores,
                    } => {
                        if let Some(h) = l.scores.get_mut(head) {
                            h.slot(kind(mask, query)).merge(&HeadScores::row(scores));
                        }
                    }
                    LayerProbe::NormInput { norm, x } => match norm {
                        Norm::Attention => l.attention_norm.observe(x, mask),
                        Norm::Output => l.output_norm.observe(x, mask),
                    },
                    LayerProbe::ActivationInput(x) => l.activation.observe(x, mask),
                    LayerProbe::Values { site, x } => l.site_mut(site).observe(x, mask),
                }
            }
        }
    }

    /// Counts one input of attention mask `mask`.
    pub fn count(&mut self, mask: &[u32]) {
        self.inputs += 1;
        let real = mask.iter().filter(|&&m| m != 0).count();
        self.real_tokens += real;
        self.padding_tokens += mask.len() - real;
    }

    /// Observations of both.
    pub fn merged(mut self, o: &Self) -> Self {
        self.inputs += o.inputs;
        self.real_tokens += o.real_tokens;
        self.padding_tokens += o.padding_tokens;
        self.embeddings.merge(&o.embeddings);
        self.layers.merge(&o.layers);
        self
    }

    /// Runs `e`'s model on `text` padded (or truncated) to `tokens` tokens and observes it.
    pub fn of_text(e: &Embedder, text: &str, tokens: usize) -> Result<Self, ModelError> {
        let enc = e.encode(text, Some(tokens))?;
        let mut obs = Observations::new(&e.model.config);
        let mask = &enc.attention_mask;
        e.model
            .forward_observed(&enc.ids, &enc.type_ids, mask, &mut |p| obs.observe(mask, p))?;
        obs.count(mask);
        Ok(obs)
    }
}

fn kind(mask: &[u32], t: usize) -> Rows {
    if mask.get(t).is_some_and(|&m| m != 0) {
        Rows::Real
    } else {
        Rows::Padding
    }
}

/// Row kinds of a T-token mask, in order.
fn kinds(mask: &[u32]) -> impl Iterator<Item = Rows> + '_ {
    (0..mask.len()).map(|t| kind(mask, t))
}

/// A model's calibrated activation ranges: the file `umbra-ranges.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ranges {
    /// [`FORMAT`].
    pub format: String,
    pub model: Fingerprint,
    /// T: the token count every sample was padded (or truncated) to.
    pub tokens: usize,
    /// Where the sample text came from ("built-in sample" or the file given).
    pub source: String,
    /// Relative margin: a calibrated interval is the observed one widened by it
    /// ([`Interval::widened`]; maxima of |x| and of score spans are multiplied by 1 + margin).
    pub margin: f64,
    /// What the sample text produced, without the margin.
    pub observed: Observations,
}

/// One calibrated interval an input left.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    /// The encoder layer (None: the embeddings).
    pub layer: Option<usize>,
    /// Where: "attention scores", "attention LayerNorm input", "output LayerNorm input", "GELU
    /// input", "embeddings output".
    pub site: String,
    /// The attention head, for scores.
    pub head: Option<usize>,
    /// Which statistic: "max - mean", "row sum", "variance", "value", "|x| of feature 99".
    pub quantity: String,
    /// The rows it was seen in (None: all rows).
    pub rows: Option<Rows>,
    /// The input's value.
    pub value: f64,
    /// The calibrated interval, margin included; None where calibration saw no such rows.
    pub allowed: Option<Interval>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if let Some(l) = self.layer {
            write!(f, "layer {l} ")?;
        }
        write!(f, "{}", self.site)?;
        if let Some(h) = self.head {
            write!(f, " head {h}")?;
        }
        write!(f, " {}", self.quantity)?;
        if let Some(r) = self.rows {
            write!(f, " ({r})")?;
        }
        write!(f, " = {}", sig(self.value))?;
        match &self.allowed {
            Some(i) => write!(f, ", calibrated {i}"),
            None => write!(f, ", never seen in calibration"),
        }
    }
}

impl Ranges {
    /// The path of the ranges file of model directory `dir`.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// Reads a ranges file: JSON of this [`FORMAT`], else an error naming the file.
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_json(&text, path)
    }

    /// Parses the text of a ranges file (errors name `path`).
    pub fn from_json(text: &str, path: &Path) -> Result<Self, ModelError> {
        let err = |reason: String| ModelError::Ranges {
            path: path.to_path_buf(),
            reason,
        };
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| err(format!("not JSON: {e}")))?;
        match v.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            other => {
                let got = other.map_or("absent".to_string(), |f| format!("{f:?}"));
                return Err(err(format!(
                    "format {got}, expected {FORMAT:?} (recalibrate with `umbra calibrate`)"
                )));
            }
        }
        serde_json::from_value(v).map_err(|e| err(format!("not a valid ranges file: {e}")))
    }

    /// Whether `dir` holds a ranges file of an older format of this program (`umbra-ranges/N`
    /// other than [`FORMAT`]): one to recalibrate rather than refuse.
    pub fn is_stale(dir: &Path) -> bool {
        let Ok(text) = std::fs::read_to_string(Self::path_in(dir)) else {
            return false;
        };
        let v: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        matches!(
            v.as_ref().and_then(|v| v.get("format")).and_then(|f| f.as_str()),
            Some(f) if f.starts_with("umbra-ranges/") && f != FORMAT
        )
    }

    /// The ranges file of model directory `dir` for the model of fingerprint `model`: Ok(None)
    /// when there is none; an error when it is unreadable or belongs to another model.
    pub fn for_model(dir: &Path, model: &Fingerprint) -> Result<Option<Self>, ModelError> {
        let path = Self::path_in(dir);
        if !path.exists() {
            return Ok(None);
        }
        let r = Self::read(&path)?;
        r.ensure_model(model, &path)?;
        Ok(Some(r))
    }

    /// Errors unless the file was calibrated for `model`.
    pub fn ensure_model(&self, model: &Fingerprint, path: &Path) -> Result<(), ModelError> {
        if self.model.same_model(model) {
            return Ok(());
        }
        let (a, b) = (&self.model, model);
        Err(ModelError::Ranges {
            path: path.to_path_buf(),
            reason: format!(
                "calibrated for another model (hidden {}, {} layers, {} heads, intermediate {}, \
                 config.json sha256 {}); this model has hidden {}, {} layers, {} heads, \
                 intermediate {}, config.json sha256 {} (run `umbra calibrate` for it)",
                a.hidden,
                a.layers,
                a.heads,
                a.intermediate,
                short(&a.config_sha256),
                b.hidden,
                b.layers,
                b.heads,
                b.intermediate,
                short(&b.config_sha256)
            ),
        })
    }

    /// The file's JSON text: compact (the per-feature maxima are ~14k numbers for MiniLM, ~300
    /// kB), numbers written so that they read back bit for bit.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("ranges hold only finite numbers")
    }

    /// Writes `dir/umbra-ranges.json`; returns its path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, ModelError> {
        let path = Self::path_in(dir);
        std::fs::write(&path, self.to_json() + "\n").map_err(|e| ModelError::io(&path, e))?;
        Ok(path)
    }

    /// Every calibrated interval (observed, widened by the margin) that `o` leaves. Layers,
    /// heads and features beyond the shorter of the two shapes are not compared (the model
    /// fingerprint keeps the shapes equal).
    pub fn check(&self, o: &Observations) -> Vec<Violation> {
        let mut c = Checker {
            margin: self.margin,
            layer: None,
            head: None,
            out: Vec::new(),
        };
        c.values(
            "embeddings output",
            &self.observed.embeddings,
            &o.embeddings,
        );
        for (i, (cal, got)) in self.observed.layers.iter().zip(&o.layers).enumerate() {
            c.layer = Some(i);
            for (h, (cs, gs)) in cal.scores.iter().zip(&got.scores).enumerate() {
                let site = "attention scores";
                c.head = Some(h);
                for rows in [Rows::Real, Rows::Padding] {
                    let Some(g) = gs.get(rows) else { continue };
                    let cal = cs.get(rows);
                    c.at_most(site, "max - mean", rows, g.above, cal.map(|x| x.above));
                    c.at_most(site, "mean - min", rows, g.below, cal.map(|x| x.below));
                    let allowed = cal.map(|x| x.row_sum);
                    c.interval(site, "row sum", Some(rows), &g.row_sum, allowed);
                }
            }
            c.head = None;
            for norm in [Norm::Attention, Norm::Output] {
                let site = match norm {
                    Norm::Attention => "attention LayerNorm input",
                    Norm::Output => "output LayerNorm input",
                };
                let (cn, gn) = (cal.norm(norm), got.norm(norm));
                for rows in [Rows::Real, Rows::Padding] {
                    if let Some(g) = gn.variance.get(rows) {
                        let allowed = cn.variance.get(rows).copied();
                        c.interval(site, "variance", Some(rows), g, allowed);
                    }
                }
                c.values(site, &cn.input, &gn.input);
            }
            c.values("GELU input", &cal.activation, &got.activation);
            for (site, name) in [
                (Site::QueryKeyValue, "query/key/value"),
                (Site::Context, "attention context"),
                (Site::AttentionOutput, "attention LayerNorm output"),
                (Site::Output, "output LayerNorm output"),
            ] {
                c.values(name, cal.site(site), got.site(site));
            }
        }
        c.out
    }
}

/// One layer's calibrated ranges at a glance (raw observations, no margin), for `umbra
/// calibrate`'s summary and the README's table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerSummary {
    pub layer: usize,
    /// Largest max - mean of a score row over all heads: real query rows, padding query rows.
    pub above: (Option<f64>, Option<f64>),
    /// Largest mean - min: real, padding.
    pub below: (Option<f64>, Option<f64>),
    /// Softmax row sums after the row-mean shift, all heads and rows.
    pub row_sum: Option<Interval>,
    /// Input variance of the attention and output LayerNorms, all rows.
    pub variance: (Option<Interval>, Option<Interval>),
    /// GELU input, all rows.
    pub gelu: Option<Interval>,
    /// The 3 residual-stream features (both LayerNorm inputs) of largest |x|: (feature, |x|).
    pub residual_top: Vec<(usize, f64)>,
}

fn both(s: &Split<Interval>) -> Option<Interval> {
    let mut u = s.real;
    u.merge(&s.padding);
    u
}

impl Ranges {
    /// Per layer, the ranges that size the approximations ([`LayerSummary`]).
    pub fn summary(&self) -> Vec<LayerSummary> {
        self.observed
            .layers
            .iter()
            .enumerate()
            .map(|(layer, l)| {
                let (real, pad) = (l.score_span(Rows::Real), l.score_span(Rows::Padding));
                let mut row_sum = l.row_sum(Rows::Real);
                row_sum.merge(&l.row_sum(Rows::Padding));
                let mut residual = l.attention_norm.input.clone();
                residual.merge(&l.output_norm.input);
                LayerSummary {
                    layer,
                    above: (real.map(|s| s.0), pad.map(|s| s.0)),
                    below: (real.map(|s| s.1), pad.map(|s| s.1)),
                    row_sum,
                    variance: (
                        both(&l.attention_norm.variance),
                        both(&l.output_norm.variance),
                    ),
                    gelu: both(&l.activation.range),
                    residual_top: residual.top_features(3),
                }
            })
            .collect()
    }
}

/// The first 12 hex digits of a hash, for messages.
fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

/// Collects violations for [`Ranges::check`].
struct Checker {
    margin: f64,
    layer: Option<usize>,
    head: Option<usize>,
    out: Vec<Violation>,
}

impl Checker {
    fn push(
        &mut self,
        site: &str,
        quantity: String,
        rows: Option<Rows>,
        value: f64,
        allowed: Option<Interval>,
    ) {
        self.out.push(Violation {
            layer: self.layer,
            site: site.into(),
            head: self.head,
            quantity,
            rows,
            value,
            allowed,
        });
    }

    /// `got` inside `cal` widened (each end that leaves it is one violation).
    fn interval(
        &mut self,
        site: &str,
        quantity: &str,
        rows: Option<Rows>,
        got: &Interval,
        cal: Option<Interval>,
    ) {
        let allowed = cal.map(|i| i.widened(self.margin));
        match allowed {
            Some(a) if a.covers(got) => {}
            Some(a) => {
                let ends = if got.min == got.max {
                    &[got.min][..]
                } else {
                    &[got.min, got.max][..]
                };
                for &v in ends {
                    if !a.contains(v) {
                        self.push(site, quantity.into(), rows, v, Some(a));
                    }
                }
            }
            None => self.push(site, quantity.into(), rows, got.max, None),
        }
    }

    /// A non-negative magnitude at most `cal` (1 + margin).
    fn at_most(&mut self, site: &str, quantity: &str, rows: Rows, got: f64, cal: Option<f64>) {
        let cal = cal.map(|m| Interval { min: 0.0, max: m });
        self.interval(site, quantity, Some(rows), &Interval::point(got), cal);
    }

    /// A matrix's value ranges (per row kind) and its per-feature |x| maxima.
    fn values(&mut self, site: &str, cal: &ValueStats, got: &ValueStats) {
        for rows in [Rows::Real, Rows::Padding] {
            if let Some(g) = got.range.get(rows) {
                self.interval(site, "value", Some(rows), g, cal.range.get(rows).copied());
            }
        }
        for (j, (&c, &g)) in cal
            .feature_abs_max
            .iter()
            .zip(&got.feature_abs_max)
            .enumerate()
        {
            let allowed = Interval { min: 0.0, max: c }.widened(self.margin);
            if !allowed.contains(g) {
                self.push(site, format!("|x| of feature {j}"), None, g, Some(allowed));
            }
        }
    }
}

/// Calibrates `e`'s model: runs it on every sentence padded (or truncated) to `tokens` tokens
/// and keeps what it observed, with `margin`, as [`Ranges`] (not yet written). `source` says
/// where the sentences came from. Sentences run in parallel (rayon). Errors: no sentence, a
/// negative or non-finite margin, 0 tokens, a sentence the tokenizer or the model refuses, a
/// directory without config.json.
pub fn calibrate(
    e: &Embedder,
    sentences: &[String],
    tokens: usize,
    margin: f64,
    source: &str,
) -> Result<Ranges, ModelError> {
    if sentences.is_empty() {
        return Err(ModelError::Input(format!(
            "calibration needs at least one sentence ({source} has none)"
        )));
    }
    if !(margin.is_finite() && margin >= 0.0) {
        return Err(ModelError::Input(format!(
            "margin {margin}: need a finite number >= 0 (0.1 is 10%)"
        )));
    }
    if tokens == 0 {
        return Err(ModelError::Input("calibration at 0 tokens".into()));
    }
    let model = Fingerprint::of_dir(&e.dir)?;
    let observed = sentences
        .par_iter()
        .map(|s| Observations::of_text(e, s, tokens))
        .try_reduce(
            || Observations::new(&e.model.config),
            |a, b| Ok(a.merged(&b)),
        )?;
    Ok(Ranges {
        format: FORMAT.into(),
        model,
        tokens,
        source: source.into(),
        margin,
        observed,
    })
}

/// The sentences of a file, one per line (blank lines skipped). Errors: unreadable, or no
/// sentence at all.
pub fn read_sentences(path: &Path) -> Result<Vec<String>, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    let s: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if s.is_empty() {
        return Err(ModelError::Input(format!(
            "{}: no sentences (one per line expected)",
            path.display()
        )));
    }
    Ok(s)
}
