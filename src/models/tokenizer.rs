//! Text to token ids: the `tokenizers` crate from `tokenizer.json` (what `transformers`' fast
//! tokenizer loads), or BERT's WordPiece over `vocab.txt` when a directory has no tokenizer.json.
//!
//! [`Tokenizer::encode`] honours the file's own truncation and padding (all-MiniLM-L6-v2's
//! tokenizer.json truncates and pads to 128 tokens); [`Tokenizer::encode_to`] gives exactly T
//! tokens instead (truncated to T, keeping [CLS] and [SEP], or padded with [PAD] and mask 0), the
//! fixed token count an encrypted run is packed for.

use super::{read_json, ModelError};
use std::path::{Path, PathBuf};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{PaddingParams, PaddingStrategy, TruncationParams};

/// One tokenized text. All vectors have the same length T; padding positions have mask 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoding {
    /// Token ids (into the vocabulary).
    pub ids: Vec<u32>,
    /// Segment ids (`token_type_ids`: 0 for a single sentence).
    pub type_ids: Vec<u32>,
    /// 1 for a real token, 0 for padding.
    pub attention_mask: Vec<u32>,
    /// The token strings ("[CLS]", "hello", "##ing", "[PAD]", ...).
    pub tokens: Vec<String>,
    /// Whether the text was cut to fit.
    pub truncated: bool,
}

impl Encoding {
    /// T, padding included.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Real (unmasked) tokens.
    pub fn real_tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m != 0).count()
    }
}

/// A tokenizer and the file it came from.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    source: PathBuf,
}

/// `tokenizer_config.json`'s one field the vocab.txt fallback needs.
#[derive(serde::Deserialize)]
struct TokenizerConfig {
    #[serde(default = "yes")]
    do_lower_case: bool,
}

fn yes() -> bool {
    true
}

impl Tokenizer {
    /// A model directory's tokenizer: `tokenizer.json`, else `vocab.txt` (lowercased unless
    /// `tokenizer_config.json` says `"do_lower_case": false`).
    pub fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return Self::from_file(&json);
        }
        let vocab = dir.join("vocab.txt");
        if !vocab.is_file() {
            return Err(ModelError::Tokenizer {
                path: dir.to_path_buf(),
                reason: "neither tokenizer.json nor vocab.txt is in the directory".into(),
            });
        }
        let config = dir.join("tokenizer_config.json");
        let lowercase = if config.is_file() {
            read_json::<TokenizerConfig>(&config)?.do_lower_case
        } else {
            true
        };
        Self::from_vocab(&vocab, lowercase)
    }

    /// From a `tokenizer.json`, with its truncation and padding.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        if !path.is_file() {
            return Err(ModelError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Tokenizer {
            inner,
            source: path.to_path_buf(),
        })
    }

    /// BERT's tokenizer from a WordPiece `vocab.txt` (one token per line, id = line number), as
    /// `BertTokenizerFast` builds it: BERT normalizer (clean text, CJK split, `lowercase` with
    /// accents stripped when lowercasing), BERT pre-tokenizer, [CLS] ... [SEP]; no truncation or
    /// padding.
    pub fn from_vocab(path: &Path, lowercase: bool) -> Result<Self, ModelError> {
        let err = |reason: String| ModelError::Tokenizer {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let vocab = WordPiece::read_bytes(text.as_bytes()).map_err(|e| err(e.to_string()))?;
        let id = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| err(format!("the vocabulary has no {t} token")))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        id("[UNK]")?;
        let model = WordPiece::builder()
            .vocab(vocab)
            .unk_token("[UNK]".into())
            .continuing_subword_prefix("##".into())
            .build()
            .map_err(|e| err(e.to_string()))?;
        let mut inner = tokenizers::Tokenizer::new(model);
        inner
            .with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
            .with_pre_tokenizer(Some(BertPreTokenizer))
            .with_post_processor(Some(BertProcessing::new(
                ("[SEP]".into(), sep),
                ("[CLS]".into(), cls),
            )));
        Ok(Tokenizer {
            inner,
            source: path.to_path_buf(),
        })
    }

    /// The file this tokenizer was read from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// `text` with special tokens, truncated and padded as the tokenizer's file says.
    pub fn encode(&self, text: &str) -> Result<Encoding, ModelError> {
        self.run(&self.inner, text)
    }

    /// `text` as exactly `tokens` tokens: truncated to T (special tokens kept, `truncated` set)
    /// or padded on the right with the pad token and mask 0. The file's own truncation and
    /// padding are replaced.
    pub fn encode_to(&self, text: &str, tokens: usize) -> Result<Encoding, ModelError> {
        let mut t = self.inner.clone();
        let pad = self.padding();
        t.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(tokens),
            ..pad
        }));
        t.with_truncation(Some(TruncationParams {
            max_length: tokens,
            ..TruncationParams::default()
        }))
        .map_err(|e| self.error(e.to_string()))?;
        let enc = self.run(&t, text)?;
        if enc.len() != tokens {
            return Err(ModelError::Input(format!(
                "{} tokens do not fit the text's special tokens ({} needed at least)",
                tokens,
                enc.len()
            )));
        }
        Ok(enc)
    }

    /// The fixed token count the file pads to (`"padding": {"strategy": {"Fixed": T}}`; 128 for
    /// all-MiniLM-L6-v2), if it pads to one.
    pub fn fixed_length(&self) -> Option<usize> {
        match self.inner.get_padding()?.strategy {
            PaddingStrategy::Fixed(t) => Some(t),
            PaddingStrategy::BatchLongest => None,
        }
    }

    /// The file's padding parameters, else [PAD] (or id 0) on the right.
    fn padding(&self) -> PaddingParams {
        if let Some(p) = self.inner.get_padding() {
            return p.clone();
        }
        PaddingParams {
            pad_id: self.inner.token_to_id("[PAD]").unwrap_or(0),
            pad_token: "[PAD]".into(),
            ..PaddingParams::default()
        }
    }

    fn run(&self, t: &tokenizers::Tokenizer, text: &str) -> Result<Encoding, ModelError> {
        let e = t
            .encode(text, true)
            .map_err(|e| self.error(e.to_string()))?;
        Ok(Encoding {
            ids: e.get_ids().to_vec(),
            type_ids: e.get_type_ids().to_vec(),
            attention_mask: e.get_attention_mask().to_vec(),
            tokens: e.get_tokens().to_vec(),
            truncated: !e.get_overflowing().is_empty(),
        })
    }

    fn error(&self, reason: String) -> ModelError {
        ModelError::Tokenizer {
            path: self.source.clone(),
            reason,
        }
    }
}
