//! A BERT model's `config.json` as Hugging Face `transformers` writes it (`BertConfig`,
//! transformers/models/bert/configuration_bert.py), validated: what Umbra does not implement is a
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
