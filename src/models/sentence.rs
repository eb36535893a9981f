//! sentence-transformers metadata and the pooling it asks for: `modules.json` (the pipeline:
//! Transformer, Pooling, optionally Normalize), `1_Pooling/config.json` (the pooling mode) and
//! `sentence_bert_config.json` (`max_seq_length`). Sources: sentence-transformers
//! `models/Pooling.py` and `models/Normalize.py`.

use super::{read_json, ModelError};
use serde::Deserialize;
use std::path::Path;

/// How token states become one sentence vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the tokens whose attention mask is 1 (all-MiniLM-L6-v2).
    Mean,
    /// The first token's ([CLS]) state.
    Cls,
}

/// A sentence-transformers model's pipeline after the transformer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentenceConfig {
    pub pooling: Pooling,
    /// Whether a `Normalize` module L2-normalizes the pooled vector.
    pub normalize: bool,
    /// `max_seq_length` of sentence_bert_config.json (sentence-transformers truncates there).
    pub max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct Module {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct SbertFile {
    max_seq_length: Option<usize>,
}

const PREFIX: &str = "sentence_transformers.models.";

impl SentenceConfig {
    /// Reads `dir/modules.json` and the files it points to; `Ok(None)` when the directory is a
    /// plain `transformers` model (no modules.json).
    pub fn from_dir(dir: &Path) -> Result<Option<Self>, ModelError> {
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            return Ok(None);
        }
        let modules: Vec<Module> = read_json(&modules_path)?;
        let unsupported = |field: &str, value: String, supported: &str| ModelError::Unsupported {
            file: modules_path.display().to_string(),
            field: field.into(),
            value,
            supported: supported.into(),
        };
        let kinds: Vec<&str> = modules
            .iter()
            .map(|m| m.kind.strip_prefix(PREFIX).unwrap_or(&m.kind))
            .collect();
        let expected = "[Transformer, Pooling] or [Transformer, Pooling, Normalize]";
        let normalize = match kinds.as_slice() {
            ["Transformer", "Pooling"] => false,
            ["Transformer", "Pooling", "Normalize"] => true,
            _ => {
                return Err(unsupported(
                    "type",
                    format!("{:?}", modules.iter().map(|m| &m.kind).collect::<Vec<_>>()),
                    expected,
                ))
            }
        };
        let pooling_path = dir.join(&modules[1].path).join("config.json");
        let p: PoolingFile = read_json(&pooling_path)?;
        let modes = [
            ("pooling_mode_cls_token", p.pooling_mode_cls_token),
            ("pooling_mode_mean_tokens", p.pooling_mode_mean_tokens),
            ("pooling_mode_max_tokens", p.pooling_mode_max_tokens),
            (
                "pooling_mode_mean_sqrt_len_tokens",
                p.pooling_mode_mean_sqrt_len_tokens,
            ),
            (
                "pooling_mode_weightedmean_tokens",
                p.pooling_mode_weightedmean_tokens,
            ),
            ("pooling_mode_lasttoken", p.pooling_mode_lasttoken),
        ];
        let on: Vec<&str> = modes.iter().filter(|m| m.1).map(|m| m.0).collect();
        let pooling = match on.as_slice() {
            ["pooling_mode_mean_tokens"] => Pooling::Mean,
            ["pooling_mode_cls_token"] => Pooling::Cls,
            _ => {
                return Err(ModelError::Unsupported {
                    file: pooling_path.display().to_string(),
                    field: on
                        .first()
                        .copied()
                        .unwrap_or("pooling_mode_mean_tokens")
                        .into(),
                    value: format!("{on:?} set"),
                    supported: "exactly one of pooling_mode_mean_tokens, pooling_mode_cls_token"
                        .into(),
                })
            }
        };
        let sbert = dir.join("sentence_bert_config.json");
        let max_seq_length = if sbert.is_file() {
            read_json::<SbertFile>(&sbert)?.max_seq_length
        } else {
            None
        };
        Ok(Some(SentenceConfig {
            pooling,
            normalize,
            max_seq_length,
        }))
    }
}

/// Pools T x D token states (`hidden[t][d]`) into D values under the attention mask (length T).
/// Mean: sum of the masked rows over their count; Cls: row 0. No real token is an error.
pub fn pool(hidden: &[Vec<f64>], mask: &[u32], pooling: Pooling) -> Result<Vec<f64>, ModelError> {
    if hidden.len() != mask.len() {
        return Err(ModelError::Input(format!(
            "{} token states but an attention mask of {}",
            hidden.len(),
            mask.len()
        )));
    }
    let real: Vec<&Vec<f64>> = hidden
        .iter()
        .zip(mask)
        .filter(|(_, &m)| m != 0)
        .map(|(h, _)| h)
        .collect();
    if real.is_empty() {
        return Err(ModelError::Input(
            "the attention mask has no real token".into(),
        ));
    }
    Ok(match pooling {
        Pooling::Cls => hidden[0].clone(),
        Pooling::Mean => {
            let d = hidden[0].len();
            let mut sum = vec![0.0; d];
            for row in &real {
                for (s, v) in sum.iter_mut().zip(row.iter()) {
                    *s += v;
                }
            }
            let n = real.len() as f64;
            sum.iter().map(|s| s / n).collect()
        }
    })
}

/// `v / max(||v||_2, 1e-12)` (PyTorch `F.normalize`, as sentence-transformers' Normalize).
pub fn l2_normalize(v: &[f64]) -> Vec<f64> {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    v.iter().map(|x| x / norm).collect()
}
