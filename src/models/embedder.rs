//! A model directory end to end in plaintext: text -> tokens -> BERT (exact f64) -> pooled
//! sentence embedding, as sentence-transformers' `SentenceTransformer.encode` computes it.

use super::bert::{BertModel, Probe};
use super::sentence::{l2_normalize, pool, Pooling, SentenceConfig};
use super::{BertConfig, Encoding, ModelError, Tokenizer, Weights};
use std::path::{Path, PathBuf};

/// A loaded model directory.
pub struct Embedder {
    pub dir: PathBuf,
    pub model: BertModel,
    pub tokenizer: Tokenizer,
    /// sentence-transformers' pipeline; for a plain `transformers` directory, mean pooling
    /// without normalization.
    pub sentence: SentenceConfig,
}

/// One text's result.
#[derive(Clone, Debug)]
pub struct Embedding {
    pub encoding: Encoding,
    /// The pooled vector before normalization (D values).
    pub pooled: Vec<f64>,
    /// The model's output: `pooled`, L2-normalized when the model has a Normalize module.
    pub embedding: Vec<f64>,
    /// Classifier logits, when the model has a classification head.
    pub logits: Option<Vec<f64>>,
}

impl Embedder {
    /// Loads `dir`: `config.json`, `model.safetensors`, the tokenizer, and sentence-transformers
    /// metadata when present. A missing file is an error naming it, with the fetch command.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let need = |name: &str| -> Result<PathBuf, ModelError> {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(ModelError::Io {
                    path: p,
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                    hint: format!(
                        " (expected a Hugging Face model directory; `models/fetch.sh \
                         all-MiniLM-L6-v2` fetches all-MiniLM-L6-v2 into models/all-MiniLM-L6-v2, \
                         {} was given)",
                        dir.display()
                    ),
                })
            }
        };
        let config = BertConfig::from_file(&need("config.json")?)?;
        let weights = Weights::open(&need("model.safetensors")?)?;
        let model = BertModel::load(&weights, &config)?;
        let tokenizer = Tokenizer::from_dir(dir)?;
        let sentence = SentenceConfig::from_dir(dir)?.unwrap_or(SentenceConfig {
            pooling: Pooling::Mean,
            normalize: false,
            max_seq_length: None,
        });
        Ok(Embedder {
            dir: dir.to_path_buf(),
            model,
            tokenizer,
            sentence,
        })
    }

    /// Tokenizes `text` (exactly `tokens` tokens when given, else as the tokenizer file says)
    /// and embeds it.
    pub fn embed(&self, text: &str, tokens: Option<usize>) -> Result<Embedding, ModelError> {
        self.embed_encoding(self.encode(text, tokens)?)
    }

    /// Tokenizes `text`: exactly `tokens` tokens when given, else as the tokenizer file says.
    pub fn encode(&self, text: &str, tokens: Option<usize>) -> Result<Encoding, ModelError> {
        match tokens {
            Some(t) => self.tokenizer.encode_to(text, t),
            None => self.tokenizer.encode(text),
        }
    }

    /// Embeds an already tokenized text.
    pub fn embed_encoding(&self, encoding: Encoding) -> Result<Embedding, ModelError> {
        self.embed_encoding_observed(encoding, &mut |_| {})
    }

    /// `embed_encoding`, showing `observe` the model's intermediate values
    /// ([`BertModel::forward_observed`]).
    pub fn embed_encoding_observed(
        &self,
        encoding: Encoding,
        observe: &mut dyn FnMut(Probe),
    ) -> Result<Embedding, ModelError> {
        let h = self.model.forward_observed(
            &encoding.ids,
            &encoding.type_ids,
            &encoding.attention_mask,
            observe,
        )?;
        let pooled = pool(&h, &encoding.attention_mask, self.sentence.pooling)?;
        let embedding = if self.sentence.normalize {
            l2_normalize(&pooled)
        } else {
            pooled.clone()
        };
        let logits = self.model.logits(&h)?;
        Ok(Embedding {
            encoding,
            pooled,
            embedding,
            logits,
        })
    }
}
