//! Hugging Face models (DESIGN D8): a model directory as `transformers` and sentence-transformers
//! write it, loaded by its own names and run in plaintext f64 as the reference the encrypted path is
//! measured against.
//!
//! - [`config`]: `config.json` of `BertModel` / `BertForSequenceClassification` and of
//!   `GPT2LMHeadModel`, validated.
//! - [`weights`]: `model.safetensors`, memory-mapped, tensors by their HF names (F32, F16, BF16).
//! - [`tokenizer`]: `tokenizer.json` through the `tokenizers` crate, `vocab.txt` WordPiece, or
//!   GPT-2's byte-level BPE from `vocab.json` + `merges.txt`.
//! - [`sentence`]: sentence-transformers metadata (`modules.json`, `1_Pooling/config.json`), mean
//!   pooling over the attention mask and L2 normalization.
//! - [`bert`]: one struct per HF `modeling_bert.py` module and the exact f64 forward pass.
//! - [`gpt2`]: one struct per HF `modeling_gpt2.py` module, the exact f64 forward pass with a KV
//!   cache, the LM head and greedy decoding.
//! - [`embedder`]: a whole directory: text in, sentence embedding out.
//! - [`generate`]: a BERT or GPT-2 directory with a real architecture's config, names and shapes and
//!   weights drawn at trained scale (`umbra gen-model`).
//! - [`calibration`]: activation ranges observed on sample text ([`sample`] is the built-in
//!   one), stored in `umbra-ranges.json` beside the model, and the check of an input against them.
//!
//! Layers: `models` sits above `nn` (it reuses `nn`'s exact LayerNorm, GELU and `Linear`); nothing
//! below imports it.

pub mod bert;
pub mod bundle;
pub mod calibration;
pub mod config;
pub mod embedder;
pub mod encrypted;
pub mod generate;
pub mod gpt2;
pub mod gpt2_calibration;
pub mod gpt2_encrypted;
pub mod sample;
pub mod sentence;
pub mod tokenizer;
pub mod weights;

pub use bert::BertModel;
pub use calibration::{Observations, Ranges, Violation};
pub use config::{Activation, BertConfig, Gpt2Config, ModelConfig};
pub use embedder::{Embedder, Embedding};
pub use encrypted::EncryptedEncoder;
pub use sentence::{Pooling, SentenceConfig};
pub use tokenizer::{Encoding, Tokenizer};
pub use weights::Weights;

use std::path::{Path, PathBuf};

/// What can go wrong loading or running a model. Every variant names the file, field or tensor.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read (missing, unreadable).
    #[error("{path}: {source}{hint}", path = path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
        /// Extra advice (e.g. the fetch command), empty when there is none.
        hint: String,
    },
    /// A JSON file (config, sentence-transformers metadata) did not parse.
    #[error("{path}: {source}", path = path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A configuration value that Umbra does not implement.
    #[error("{file}: `{field}` = {value} is not supported ({supported})")]
    Unsupported {
        file: String,
        field: String,
        value: String,
        supported: String,
    },
    /// A safetensors file whose header or layout is invalid.
    #[error("{path}: not a valid safetensors file: {reason}", path = path.display())]
    Safetensors { path: PathBuf, reason: String },
    /// A tensor the model needs is not in the weights file.
    #[error("{path}: tensor `{name}` not found{tried}", path = path.display())]
    MissingTensor {
        path: PathBuf,
        name: String,
        /// The other names looked up (with or without a model prefix), as text.
        tried: String,
    },
    /// A tensor with the wrong shape.
    #[error("{path}: tensor `{name}` has shape {got:?}, expected {expected:?}", path = path.display())]
    Shape {
        path: PathBuf,
        name: String,
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    /// A tensor of a dtype other than F32, F16 or BF16.
    #[error("{path}: tensor `{name}` has dtype {dtype}, supported: F32, F16, BF16", path = path.display())]
    Dtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    /// The tokenizer could not be built or failed on an input.
    #[error("tokenizer {path}: {reason}", path = path.display())]
    Tokenizer { path: PathBuf, reason: String },
    /// An input the model cannot take (too many tokens, an id outside the vocabulary, ...).
    #[error("{0}")]
    Input(String),
    /// A calibrated ranges file (`umbra-ranges.json`) that cannot be used: another format or
    /// another model, or a calibration without sentences.
    #[error("{path}: {reason}", path = path.display())]
    Ranges { path: PathBuf, reason: String },
    /// A layer refused its input (shapes that do not match its weights).
    #[error(transparent)]
    Layer(#[from] crate::ckks::CkksError),
}

impl ModelError {
    /// An I/O error on `path`, without advice.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.to_path_buf(),
            source,
            hint: String::new(),
        }
    }
}

/// Reads a JSON file into `T`; errors name the file (and serde names the field).
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| ModelError::Json {
        path: path.to_path_buf(),
        source,
    })
}
