//! Text to token ids: the `tokenizers` crate from `tokenizer.json` (what `transformers`' fast
//! tokenizer loads), or, when a directory has no tokenizer.json, BERT's WordPiece over
//! `vocab.txt` or GPT-2's byte-level BPE over `vocab.json` + `merges.txt`.
//!
//! [`Tokenizer::encode`] honours the file's own truncation and padding (all-MiniLM-L6-v2's
//! tokenizer.json truncates and pads to 128 tokens); [`Tokenizer::encode_to`] gives exactly T
//! tokens instead (truncated to T, keeping [CLS] and [SEP], or padded with [PAD] and mask 0), the
//! fixed token count an encrypted run is packed for.

use super::{read_json, ModelError};
use std::path::{Path, PathBuf};
use tokenizers::models::bpe::BPE;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{PaddingParams, PaddingStrategy, TruncationParams};

/// GPT-2's end-of-text token (id 50256).
pub const GPT2_EOS: &str = "<|endoftext|>";

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
    /// `tokenizer_config.json` says `"do_lower_case": false`), else `vocab.json` + `merges.txt`
    /// (GPT-2's byte-level BPE).
    pub fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return Self::from_file(&json);
        }
        let vocab = dir.join("vocab.txt");
        if !vocab.is_file() {
            let (bpe, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
            if bpe.is_file() && merges.is_file() {
                return Self::from_bpe(&bpe, &merges);
            }
            return Err(ModelError::Tokenizer {
                path: dir.to_path_buf(),
                reason:
                    "no tokenizer.json, vocab.txt, or vocab.json with merges.txt in the directory"
                        .into(),
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

    /// GPT-2's tokenizer from `vocab.json` (token -> id) and `merges.txt` (ranked merges, a
    /// `#version` line first), as `GPT2TokenizerFast` builds it: byte-level pre-tokenizer with
    /// GPT-2's split regex and no added prefix space, byte-level BPE, byte-level decoder; no
    /// special tokens added, no truncation or padding; `<|endoftext|>` is one special token
    /// wherever it appears in a text, as in `transformers`.
    pub fn from_bpe(vocab: &Path, merges: &Path) -> Result<Self, ModelError> {
        let err = |reason: String| ModelError::Tokenizer {
            path: vocab.to_path_buf(),
            reason,
        };
        for p in [vocab, merges] {
            if !p.is_file() {
                return Err(ModelError::io(
                    p,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                ));
            }
        }
        let (v, m) = (vocab.to_string_lossy(), merges.to_string_lossy());
        let model = BPE::from_file(&v, &m)
            .build()
            .map_err(|e| err(format!("with {}: {e}", merges.display())))?;
        let mut inner = tokenizers::Tokenizer::new(model);
        let byte_level = ByteLevel::new(false, true, true);
        inner
            .with_pre_tokenizer(Some(byte_level))
            .with_decoder(Some(byte_level))
            .with_post_processor(Some(byte_level));
        if inner.token_to_id(GPT2_EOS).is_none() {
            return Err(err(format!("the vocabulary has no {GPT2_EOS} token")));
        }
        inner.add_special_tokens(&[tokenizers::AddedToken::from(GPT2_EOS, true)]);
        Ok(Tokenizer {
            inner,
            source: vocab.to_path_buf(),
        })
    }

    /// Ids back to text (special tokens kept): the inverse of [`Tokenizer::encode`] for
    /// byte-level BPE (`decode(encode(t)) == t` on any UTF-8). Errors: an id outside the
    /// vocabulary.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        let size = self.inner.get_vocab_size(true);
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= size) {
            return Err(self.error(format!("id {bad} is outside the vocabulary of {size}")));
        }
        self.inner
            .decode(ids, false)
            .map_err(|e| self.error(e.to_string()))
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
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
