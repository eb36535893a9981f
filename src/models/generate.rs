//! `umbra gen-model`: a Hugging Face BERT directory with a real architecture's `config.json`, tensor
//! names, shapes and dtype (F32, as `transformers` saves them), and weights drawn at trained scale,
//! for benchmarks where the real weights are not at hand (BERT-base: 110M parameters, 438 MB).
//! Any real HF BERT directory loads the same way; only the accuracy figures need real weights.
//!
//! Names and shapes follow `BertModel` in `transformers/models/bert/modeling_bert.py` (no `bert.`
//! prefix, `nn.Linear` weights stored [out, in]); the uncased WordPiece tokenizer files are copied
//! from a model directory that has them (all-MiniLM-L6-v2 uses BERT's own vocabulary).

use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use super::ModelError;
use crate::math::sampling::Prng;
use crate::nn::block::gaussian;

/// The shape of a BERT architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct BertArch {
    pub hidden: usize,
    pub heads: usize,
    pub layers: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
}

impl BertArch {
    /// `bert-base-uncased`: 12 layers, hidden 768, 12 heads, FFN 3072 (Devlin et al. 2019).
    pub fn bert_base() -> Self {
        BertArch {
            hidden: 768,
            heads: 12,
            layers: 12,
            intermediate: 3072,
            vocab: 30522,
            max_positions: 512,
            type_vocab: 2,
        }
    }

    /// By name: `bert-base`. Errors: another name (the message lists the known ones).
    pub fn by_name(name: &str) -> Result<Self, ModelError> {
        match name {
            "bert-base" => Ok(Self::bert_base()),
            other => Err(ModelError::Input(format!(
                "unknown architecture `{other}` (known: bert-base)"
            ))),
        }
    }

    /// Parameters in all (embeddings, encoder, pooler).
    pub fn parameters(&self) -> usize {
        self.tensors()
            .iter()
            .map(|(_, s, _)| s.iter().product::<usize>())
            .sum()
    }

    /// The `config.json` that `transformers` writes for this shape.
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["BertModel"],
            "attention_probs_dropout_prob": 0.1,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "hidden_size": self.hidden,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate,
            "layer_norm_eps": 1e-12,
            "max_position_embeddings": self.max_positions,
            "model_type": "bert",
            "num_attention_heads": self.heads,
            "num_hidden_layers": self.layers,
            "pad_token_id": 0,
            "position_embedding_type": "absolute",
            "type_vocab_size": self.type_vocab,
            "vocab_size": self.vocab,
            "_umbra_generated": "weights drawn at trained scale by `umbra gen-model`, not trained",
        })
    }

    /// Every tensor: HF name, shape, and how to draw it.
    fn tensors(&self) -> Vec<(String, Vec<usize>, Draw)> {
        let (d, f) = (self.hidden, self.intermediate);
        let mut t = vec![
            (
                "embeddings.word_embeddings.weight".to_string(),
                vec![self.vocab, d],
                Draw::Embedding,
            ),
            (
                "embeddings.position_embeddings.weight".into(),
                vec![self.max_positions, d],
                Draw::Embedding,
            ),
            (
                "embeddings.token_type_embeddings.weight".into(),
                vec![self.type_vocab, d],
                Draw::Embedding,
            ),
            ("embeddings.LayerNorm.weight".into(), vec![d], Draw::Gain),
            ("embeddings.LayerNorm.bias".into(), vec![d], Draw::Bias),
        ];
        let linear = |t: &mut Vec<(String, Vec<usize>, Draw)>,
                      name: String,
                      d_in: usize,
                      d_out: usize,
                      gain: f64| {
            t.push((
                format!("{name}.weight"),
                vec![d_out, d_in],
                Draw::Linear { d_in, gain },
            ));
            t.push((format!("{name}.bias"), vec![d_out], Draw::Bias));
        };
        let norm = |t: &mut Vec<(String, Vec<usize>, Draw)>, name: String| {
            t.push((format!("{name}.weight"), vec![d], Draw::Gain));
            t.push((format!("{name}.bias"), vec![d], Draw::Bias));
        };
        for i in 0..self.layers {
            let l = format!("encoder.layer.{i}");
            // Q and K a little larger than unit gain so that attention is not uniform.
            linear(&mut t, format!("{l}.attention.self.query"), d, d, 1.2);
            linear(&mut t, format!("{l}.attention.self.key"), d, d, 1.2);
            linear(&mut t, format!("{l}.attention.self.value"), d, d, 1.0);
            linear(&mut t, format!("{l}.attention.output.dense"), d, d, 1.0);
            norm(&mut t, format!("{l}.attention.output.LayerNorm"));
            linear(&mut t, format!("{l}.intermediate.dense"), d, f, 1.0);
            linear(&mut t, format!("{l}.output.dense"), f, d, 1.0);
            norm(&mut t, format!("{l}.output.LayerNorm"));
        }
        linear(&mut t, "pooler.dense".into(), d, d, 1.0);
        t
    }
}

/// How a tensor's values are drawn (the scales of trained BERT-base, as in
/// `nn::block::BlockWeights::random`).
#[derive(Clone, Copy, Debug)]
enum Draw {
    /// N(0, 0.05^2): trained BERT's embedding rows.
    Embedding,
    /// N(0, (gain / sqrt(d_in))^2): unit activations stay unit.
    Linear { d_in: usize, gain: f64 },
    /// 1 + N(0, 0.1^2): LayerNorm gains.
    Gain,
    /// N(0, 0.02^2): biases and LayerNorm shifts.
    Bias,
}

impl Draw {
    fn sample(self, prng: &mut Prng) -> f64 {
        let g = gaussian(prng);
        match self {
            Draw::Embedding => 0.05 * g,
            Draw::Linear { d_in, gain } => gain / (d_in as f64).sqrt() * g,
            Draw::Gain => 1.0 + 0.1 * g,
            Draw::Bias => 0.02 * g,
        }
    }
}

/// Tokenizer files copied from `tokenizer_from` (those present; `vocab.txt` or `tokenizer.json`
/// must be).
const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// Writes `out/config.json`, `out/model.safetensors` and the tokenizer files of `tokenizer_from`.
/// Deterministic in `seed`. Errors: `out` exists and is not an empty directory (nothing is
/// overwritten), no tokenizer in `tokenizer_from`, a vocabulary of another size than the
/// architecture's, I/O.
pub fn generate_bert(
    arch: &BertArch,
    out: &Path,
    tokenizer_from: &Path,
    seed: u64,
) -> Result<(), ModelError> {
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| ModelError::io(out, e))?
            .next()
            .is_some()
    {
        return Err(ModelError::Input(format!(
            "{} exists and is not empty: gen-model writes a new directory",
            out.display()
        )));
    }
    let present: Vec<&str> = TOKENIZER_FILES
        .into_iter()
        .filter(|f| tokenizer_from.join(f).is_file())
        .collect();
    if !present.contains(&"vocab.txt") && !present.contains(&"tokenizer.json") {
        return Err(ModelError::Input(format!(
            "{} has no tokenizer.json or vocab.txt to copy (`models/fetch.sh all-MiniLM-L6-v2` fetches BERT's uncased vocabulary)",
            tokenizer_from.display()
        )));
    }
    if present.contains(&"vocab.txt") {
        let path = tokenizer_from.join("vocab.txt");
        let vocab = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        if vocab.lines().count() != arch.vocab {
            return Err(ModelError::Input(format!(
                "{} has {} entries, the architecture {}",
                path.display(),
                vocab.lines().count(),
                arch.vocab
            )));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| ModelError::io(out, e))?;
    for f in present {
        let (from, to) = (tokenizer_from.join(f), out.join(f));
        std::fs::copy(&from, &to).map_err(|e| ModelError::io(&from, e))?;
    }
    let config = out.join("config.json");
    let text = serde_json::to_string_pretty(&arch.config_json()).expect("a JSON value prints");
    std::fs::write(&config, text).map_err(|e| ModelError::io(&config, e))?;

    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    let mut prng = Prng::from_seed(s);
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = arch
        .tensors()
        .into_iter()
        .map(|(name, shape, draw)| {
            let n: usize = shape.iter().product();
            let bytes: Vec<u8> = (0..n)
                .flat_map(|_| (draw.sample(&mut prng) as f32).to_le_bytes())
                .collect();
            (name, shape, bytes)
        })
        .collect();
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| ModelError::Input(format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let weights = out.join("model.safetensors");
    safetensors::serialize_to_file(views, None, &weights).map_err(|e| ModelError::Safetensors {
        path: weights.clone(),
        reason: e.to_string(),
    })
}
