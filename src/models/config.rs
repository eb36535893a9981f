//! A model's `config.json` as Hugging Face `transformers` writes it (`BertConfig`, `GPT2Config`;
//! transformers/models/{bert,gpt2}/configuration_*.py), validated: what Umbra does not implement is a
//! [`ModelError::Unsupported`] naming the field, never a silent default.

use super::{read_json, ModelError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The feed-forward activation (`hidden_act`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `"gelu"`: x Phi(x) with the exact erf (BERT's).
    GeluErf,
    /// `"gelu_new"`, `"gelu_pytorch_tanh"`: the tanh approximation (GPT-2's).
    GeluTanh,
}

impl Activation {
    /// The activation at `x` in f64 (`nn::approx`'s exact forms).
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Activation::GeluErf => crate::nn::approx::gelu_erf_exact(x),
            Activation::GeluTanh => crate::nn::approx::gelu_tanh_exact(x),
        }
    }
}

/// The head above the encoder, from `architectures`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Head {
    /// `BertModel` (and checkpoints whose head Umbra ignores: `BertForMaskedLM`,
    /// `BertForPreTraining`): the encoder and, when present, the pooler.
    None,
    /// `BertForSequenceClassification`: pooler, then `classifier` (hidden -> labels).
    SequenceClassification { labels: usize },
}

/// `config.json` as written, HF's defaults for the fields it may omit.
#[derive(Deserialize)]
struct Raw {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_positions")]
    max_position_embeddings: usize,
    #[serde(default = "default_types")]
    type_vocab_size: usize,
    #[serde(default = "default_position_type")]
    position_embedding_type: String,
    num_labels: Option<usize>,
    id2label: Option<BTreeMap<String, String>>,
}

fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_positions() -> usize {
    512
}
fn default_types() -> usize {
    2
}
fn default_position_type() -> String {
    "absolute".into()
}

/// A validated BERT configuration. Shapes: hidden D = `hidden`, heads H with D = H * d_h,
/// feed-forward F = `intermediate`, at most `max_positions` tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    pub hidden: usize,
    pub heads: usize,
    pub layers: usize,
    pub intermediate: usize,
    pub vocab: usize,
    /// LayerNorm's epsilon (added to the variance), from the model (MiniLM: 1e-12).
    pub layer_norm_eps: f64,
    pub activation: Activation,
    pub max_positions: usize,
    pub type_vocab: usize,
    pub head: Head,
    /// `architectures[0]`, or `BertModel` when the file names none.
    pub architecture: String,
}

/// Encoder-only architectures: their extra heads (if any) are not used.
const ENCODER_ARCHS: [&str; 3] = ["BertModel", "BertForMaskedLM", "BertForPreTraining"];

impl BertConfig {
    /// Reads and validates `path` (a `config.json`).
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let raw: Raw = read_json(path)?;
        Self::validate(raw, &path.display().to_string())
    }

    /// Parses and validates the text of a `config.json`; errors name `file`.
    pub fn from_json(text: &str, file: &str) -> Result<Self, ModelError> {
        let raw: Raw = serde_json::from_str(text).map_err(|source| ModelError::Json {
            path: file.into(),
            source,
        })?;
        Self::validate(raw, file)
    }

    /// Per-head width d_h = D / H.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    fn validate(raw: Raw, file: &str) -> Result<Self, ModelError> {
        let unsupported = |field: &str, value: String, supported: &str| ModelError::Unsupported {
            file: file.to_string(),
            field: field.to_string(),
            value,
            supported: supported.to_string(),
        };
        match raw.model_type.as_deref() {
            Some("bert") => {}
            Some(other) => return Err(unsupported("model_type", format!("{other:?}"), "\"bert\"")),
            None if raw.architectures.iter().all(|a| a.starts_with("Bert")) => {}
            None => {
                return Err(unsupported(
                    "model_type",
                    "absent".into(),
                    "\"bert\", or absent with Bert* architectures",
                ))
            }
        }
        let architecture = raw
            .architectures
            .first()
            .cloned()
            .unwrap_or_else(|| "BertModel".into());
        if raw.architectures.len() > 1 {
            return Err(unsupported(
                "architectures",
                format!("{:?}", raw.architectures),
                "exactly one architecture",
            ));
        }
        let head = if ENCODER_ARCHS.contains(&architecture.as_str()) {
            Head::None
        } else if architecture == "BertForSequenceClassification" {
            let labels = raw
                .id2label
                .as_ref()
                .map(|m| m.len())
                .or(raw.num_labels)
                .unwrap_or(2);
            if labels == 0 {
                return Err(unsupported("id2label", "{}".into(), "at least one label"));
            }
            Head::SequenceClassification { labels }
        } else {
            return Err(unsupported(
                "architectures",
                format!("[{architecture:?}]"),
                "BertModel, BertForSequenceClassification, BertForMaskedLM, BertForPreTraining",
            ));
        };
        let activation = match raw.hidden_act.as_str() {
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            other => {
                return Err(unsupported(
                    "hidden_act",
                    format!("{other:?}"),
                    "\"gelu\" (erf), \"gelu_new\" or \"gelu_pytorch_tanh\" (tanh)",
                ))
            }
        };
        if raw.position_embedding_type != "absolute" {
            return Err(unsupported(
                "position_embedding_type",
                format!("{:?}", raw.position_embedding_type),
                "\"absolute\"",
            ));
        }
        for (field, v) in [
            ("hidden_size", raw.hidden_size),
            ("num_attention_heads", raw.num_attention_heads),
            ("num_hidden_layers", raw.num_hidden_layers),
            ("intermediate_size", raw.intermediate_size),
            ("vocab_size", raw.vocab_size),
            ("max_position_embeddings", raw.max_position_embeddings),
            ("type_vocab_size", raw.type_vocab_size),
        ] {
            if v == 0 {
                return Err(unsupported(field, "0".into(), "a positive integer"));
            }
        }
        if !raw.hidden_size.is_multiple_of(raw.num_attention_heads) {
            return Err(unsupported(
                "num_attention_heads",
                raw.num_attention_heads.to_string(),
                &format!("a divisor of hidden_size = {}", raw.hidden_size),
            ));
        }
        if !(raw.layer_norm_eps.is_finite() && raw.layer_norm_eps > 0.0) {
            return Err(unsupported(
                "layer_norm_eps",
                raw.layer_norm_eps.to_string(),
                "a positive finite number",
            ));
        }
        Ok(BertConfig {
            hidden: raw.hidden_size,
            heads: raw.num_attention_heads,
            layers: raw.num_hidden_layers,
            intermediate: raw.intermediate_size,
            vocab: raw.vocab_size,
            layer_norm_eps: raw.layer_norm_eps,
            activation,
            max_positions: raw.max_position_embeddings,
            type_vocab: raw.type_vocab_size,
            head,
            architecture,
        })
    }
}

/// GPT-2's `config.json` as written (`GPT2Config`,
/// transformers/models/gpt2/configuration_gpt2.py), HF's defaults for the fields it may omit.
#[derive(Deserialize)]
struct RawGpt2 {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    n_embd: usize,
    n_head: usize,
    n_layer: usize,
    n_positions: usize,
    n_inner: Option<usize>,
    vocab_size: usize,
    #[serde(default = "default_gpt2_eps")]
    layer_norm_epsilon: f64,
    #[serde(default = "default_gpt2_act")]
    activation_function: String,
    #[serde(default = "yes")]
    scale_attn_weights: bool,
    #[serde(default)]
    scale_attn_by_inverse_layer_idx: bool,
    #[serde(default)]
    add_cross_attention: bool,
    #[serde(default = "yes")]
    tie_word_embeddings: bool,
    bos_token_id: Option<u32>,
    eos_token_id: Option<u32>,
}

fn default_gpt2_eps() -> f64 {
    1e-5
}
fn default_gpt2_act() -> String {
    "gelu_new".into()
}
fn yes() -> bool {
    true
}

/// A validated GPT-2 configuration. Shapes: hidden D = `hidden` (`n_embd`), H heads with
/// D = H * d_h, feed-forward F = `inner` (`n_inner`, 4 D when null), at most `max_positions`
/// tokens (`n_positions`), vocabulary V.
#[derive(Clone, Debug, PartialEq)]
pub struct Gpt2Config {
    pub hidden: usize,
    pub heads: usize,
    pub layers: usize,
    pub inner: usize,
    pub vocab: usize,
    pub max_positions: usize,
    /// LayerNorm's epsilon (`layer_norm_epsilon`, 1e-5 for GPT-2).
    pub layer_norm_eps: f64,
    pub activation: Activation,
    /// Whether the LM head is `wte` (`tie_word_embeddings`, GPT-2's default) when the file has
    /// no `lm_head.weight`.
    pub tie_word_embeddings: bool,
    /// `eos_token_id` (50256, `<|endoftext|>`, for GPT-2).
    pub eos_token: Option<u32>,
    /// `architectures[0]`, or `GPT2LMHeadModel` when the file names none.
    pub architecture: String,
}

impl Gpt2Config {
    /// Reads and validates `path` (a `config.json`).
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let raw: RawGpt2 = read_json(path)?;
        Self::validate(raw, &path.display().to_string())
    }

    /// Parses and validates the text of a `config.json`; errors name `file`.
    pub fn from_json(text: &str, file: &str) -> Result<Self, ModelError> {
        let raw: RawGpt2 = serde_json::from_str(text).map_err(|source| ModelError::Json {
            path: file.into(),
            source,
        })?;
        Self::validate(raw, file)
    }

    /// Per-head width d_h = D / H.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    fn validate(raw: RawGpt2, file: &str) -> Result<Self, ModelError> {
        let unsupported = |field: &str, value: String, supported: &str| ModelError::Unsupported {
            file: file.to_string(),
            field: field.to_string(),
            value,
            supported: supported.to_string(),
        };
        match raw.model_type.as_deref() {
            Some("gpt2") => {}
            Some(other) => return Err(unsupported("model_type", format!("{other:?}"), "\"gpt2\"")),
            None if raw.architectures.iter().all(|a| a.starts_with("GPT2")) => {}
            None => {
                return Err(unsupported(
                    "model_type",
                    "absent".into(),
                    "\"gpt2\", or absent with GPT2* architectures",
                ))
            }
        }
        let architecture = raw
            .architectures
            .first()
            .cloned()
            .unwrap_or_else(|| "GPT2LMHeadModel".into());
        if raw.architectures.len() > 1
            || !["GPT2LMHeadModel", "GPT2Model"].contains(&&*architecture)
        {
            return Err(unsupported(
                "architectures",
                format!("{:?}", raw.architectures),
                "[\"GPT2LMHeadModel\"] or [\"GPT2Model\"]",
            ));
        }
        let activation = match raw.activation_function.as_str() {
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "gelu" => Activation::GeluErf,
            other => {
                return Err(unsupported(
                    "activation_function",
                    format!("{other:?}"),
                    "\"gelu_new\" or \"gelu_pytorch_tanh\" (tanh), \"gelu\" (erf)",
                ))
            }
        };
        let flags = [
            ("scale_attn_weights", raw.scale_attn_weights, true),
            (
                "scale_attn_by_inverse_layer_idx",
                raw.scale_attn_by_inverse_layer_idx,
                false,
            ),
            ("add_cross_attention", raw.add_cross_attention, false),
        ];
        for (field, v, want) in flags {
            if v != want {
                return Err(unsupported(field, v.to_string(), &want.to_string()));
            }
        }
        let inner = raw.n_inner.unwrap_or(4 * raw.n_embd);
        for (field, v) in [
            ("n_embd", raw.n_embd),
            ("n_head", raw.n_head),
            ("n_layer", raw.n_layer),
            ("n_positions", raw.n_positions),
            ("n_inner", inner),
            ("vocab_size", raw.vocab_size),
        ] {
            if v == 0 {
                return Err(unsupported(field, "0".into(), "a positive integer"));
            }
        }
        if !raw.n_embd.is_multiple_of(raw.n_head) {
            return Err(unsupported(
                "n_head",
                raw.n_head.to_string(),
                &format!("a divisor of n_embd = {}", raw.n_embd),
            ));
        }
        if !(raw.layer_norm_epsilon.is_finite() && raw.layer_norm_epsilon > 0.0) {
            return Err(unsupported(
                "layer_norm_epsilon",
                raw.layer_norm_epsilon.to_string(),
                "a positive finite number",
            ));
        }
        if let Some(id) = raw.eos_token_id.or(raw.bos_token_id) {
            if id as usize >= raw.vocab_size {
                return Err(unsupported(
                    "eos_token_id",
                    id.to_string(),
                    &format!("an id below vocab_size = {}", raw.vocab_size),
                ));
            }
        }
        Ok(Gpt2Config {
            hidden: raw.n_embd,
            heads: raw.n_head,
            layers: raw.n_layer,
            inner,
            vocab: raw.vocab_size,
            max_positions: raw.n_positions,
            layer_norm_eps: raw.layer_norm_epsilon,
            activation,
            tie_word_embeddings: raw.tie_word_embeddings,
            eos_token: raw.eos_token_id,
            architecture,
        })
    }
}

/// `model_type` and `architectures` alone: what dispatches a directory to BERT or GPT-2.
#[derive(Deserialize)]
struct Kind {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
}

impl Kind {
    fn is_gpt2(&self) -> bool {
        match self.model_type.as_deref() {
            Some(t) => t == "gpt2",
            None => self.architectures.iter().any(|a| a.starts_with("GPT2")),
        }
    }
}

/// The architecture a `config.json` describes (`model_type`), for commands that take either.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelConfig {
    Bert(BertConfig),
    Gpt2(Gpt2Config),
}

impl ModelConfig {
    /// Whether the `config.json` at `path` says GPT-2 (`model_type` "gpt2", or GPT2*
    /// architectures without a model type), whatever else it holds: false when it is unreadable.
    pub fn says_gpt2(path: &Path) -> bool {
        let Ok(text) = std::fs::read_to_string(path) else {
            return false;
        };
        serde_json::from_str::<Kind>(&text).is_ok_and(|k| k.is_gpt2())
    }

    /// Reads `path` and dispatches on `model_type` (or `architectures` when it is absent).
    /// Errors: as [`BertConfig::from_file`] / [`Gpt2Config::from_file`]; another model type.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let kind: Kind = serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let file = path.display().to_string();
        if kind.is_gpt2() {
            Gpt2Config::from_json(&text, &file).map(ModelConfig::Gpt2)
        } else {
            BertConfig::from_json(&text, &file).map(ModelConfig::Bert)
        }
    }
}
